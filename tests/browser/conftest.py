"""Fixtures of the browser tests: a headless Chromium (Playwright on the system's Chromium, see
nslviz/browser.py), a JupyterLab server in quick mode on a free localhost port with a token, serving
a copy of the notebooks (so that the autosave of a run never writes outputs into the repository).
Every wait is bounded; the server is stopped at the end."""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from nslviz import browser

REPO = Path(__file__).resolve().parents[2]
SERVER_START_S = 120


@pytest.fixture(scope="session")
def chromium_context():
    reason = browser.missing_browser()
    if reason:
        pytest.skip(f"no browser to drive: {reason}")
    with browser.chromium(width=1400, height=1000) as context:
        context.set_default_timeout(60_000)
        yield context


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory):
    """A JupyterLab server in quick mode: yields (base URL, token, folder it serves)."""
    home = tmp_path_factory.mktemp("lab")
    served = home / "notebooks"
    shutil.copytree(REPO / "notebooks", served)
    settings = home / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # no news or update checks (they would reach the network and open a notification over the page)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
    # start the notebook's own kernel (python3) without asking: a fresh profile otherwise opens a
    # "Select Kernel" dialog over the notebook and Run All waits behind it
    notebook_settings = settings.parent / "notebook-extension"
    notebook_settings.mkdir()
    (notebook_settings / "tracker.jupyterlab-settings").write_text('{"autoStartDefaultKernel": true}')
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ, NSLVIZ_QUICK="1", PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(home / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
               NSLVIZ_RUNS=str(home / "runs"))
    log = open(home / "server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={served}",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--allow-root"],                                  # CI runs as root in a container
        cwd=served, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited with {server.returncode}: {(home / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer within {SERVER_START_S} s")
                time.sleep(1)
        yield base, token, served
    finally:
        stop(server)
        log.close()


def stop(server: subprocess.Popen) -> None:
    """Stop the server and the kernels it started (its process group), by force after 30 s."""
    for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:                         # already gone
            pass
        try:
            server.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue
