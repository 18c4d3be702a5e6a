"""`python -m nslviz ...` in this process: the same parser, exit code and output as the command,
without the few seconds a new interpreter spends importing torch. Tests of the process itself (its
exit code after a kill, its last JSON line) still start one."""
from __future__ import annotations

import contextlib
import io
import subprocess

from nslviz.__main__ import main


def run_in_process(*args: str) -> subprocess.CompletedProcess:
    """`main(args)` with stdout and stderr captured; argparse's exits become the return code."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    return subprocess.CompletedProcess(["python", "-m", "nslviz", *args], code, out.getvalue(), err.getvalue())
