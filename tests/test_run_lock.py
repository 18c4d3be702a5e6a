"""One process per run directory: the advisory lock, with real processes (a second `train` on the
same --run-dir, a holder killed with kill -9), and every command that writes a run directory."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from nslviz.training.config import TrainConfig
from nslviz.training.rundir import (LOCK_NAME, RunDirectoryBusy, RunDirectoryWarning, claimed_run_dir,
                                    locked_run_dir)
from nslviz.experiments.spiral import run_spiral
from nslviz.training.trainer import train
from runs import TINY

# a process that holds a run directory's lock until its standard input closes
HOLDER = ("import sys\nfrom nslviz.training.rundir import locked_run_dir\n"
          "with locked_run_dir(sys.argv[1]):\n    print('held', flush=True)\n    sys.stdin.read()\n")


def _environment():
    root = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}


@pytest.fixture
def holder(tmp_path):
    """Start a process holding the lock of a folder; yields (folder, process)."""
    started = []

    def start(folder: Path):
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=_environment())
        assert proc.stdout.readline().strip() == "held"
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _checksums(folder: Path) -> dict:
    import hashlib
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_the_lock_names_its_holder_is_reentrant_and_is_removed_on_exit(tmp_path):
    run_dir = tmp_path / "run"
    with locked_run_dir(run_dir):
        record = json.loads((run_dir / LOCK_NAME).read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        with locked_run_dir(run_dir):                         # compare_runs holds it while train() takes it
            assert (run_dir / LOCK_NAME).exists()
        assert (run_dir / LOCK_NAME).exists()
    assert not (run_dir / LOCK_NAME).exists()


def test_a_lock_that_wrote_nothing_leaves_no_folders_it_made_behind(tmp_path):
    """A run refused before it wrote anything (its dataset missing, say) leaves no empty run folder,
    nor the empty group folders above it that it made; folders that were there, or hold a file, stay."""
    with locked_run_dir(tmp_path / "group" / "run"):
        assert (tmp_path / "group" / "run" / LOCK_NAME).exists()
    assert sorted(tmp_path.iterdir()) == []
    (tmp_path / "group").mkdir()
    with locked_run_dir(tmp_path / "group" / "run"):
        (tmp_path / "group" / "run" / "config.json").write_text("{}")
    assert (tmp_path / "group" / "run" / "config.json").exists()
    with locked_run_dir(tmp_path / "group" / "other"):
        pass
    assert sorted(p.name for p in (tmp_path / "group").iterdir()) == ["run"]     # "group" was there: it stays


def test_a_second_process_is_refused_naming_the_directory_and_the_holder(tmp_path, holder, capsys):
    """The in-process commands (train --resume included), while a real process holds the run
    directory: refused with exit 2 before anything is written; the holder's files are untouched."""
    from nslviz.__main__ import main
    from nslviz.training.rundir import RunDirectory
    run_dir = tmp_path / "held"
    run = RunDirectory(run_dir)                              # the holder's cut run (its files are not read)
    run.write_config(TrainConfig(**TINY).to_dict())
    run.write_metrics([{"epoch": 1}])
    (run_dir / "checkpoint.pt").write_bytes(b"the holder's checkpoint")
    proc = holder(run_dir)
    before = _checksums(run_dir)                             # the holder's lock file included
    commands = [["train", "--run-dir", str(run_dir), "--resume", "--no-progress"],
                ["train", "--dataset", "digits", "--run-dir", str(run_dir), "--overwrite", "--no-progress"],
                ["spiral", "--steps", "5", "--run-dir", str(run_dir), "--overwrite"],
                ["implicit-reg", "--steps", "5", "--run-dir", str(run_dir), "--overwrite"],
                ["regress", "--quick", "--max-epochs", "1", "--run-dir", str(run_dir), "--overwrite"]]
    for command in commands:
        with pytest.raises(SystemExit) as exit_info:
            main(command)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2, command
        assert f"run directory {str(run_dir.resolve())!r} is in use by pid {proc.pid} on host" in err, err
    with pytest.raises(RunDirectoryBusy, match=f"in use by pid {proc.pid}"):
        train(TrainConfig(**TINY), run_dir, resume=True, progress=False)
    assert _checksums(run_dir) == before                     # nothing written, the holder's lock untouched


def test_compare_runs_holds_each_run_directory(tmp_path, holder):
    from nslviz.experiments.compare import compare_runs
    group = tmp_path / "group"
    proc = holder(group / "vanilla")
    with pytest.raises(RunDirectoryBusy, match=f"in use by pid {proc.pid}"):
        compare_runs({"vanilla": TrainConfig(**TINY, method="vanilla")}, group, progress=False)
    assert sorted(p.name for p in (group / "vanilla").iterdir()) == [LOCK_NAME]


def test_the_lock_of_a_killed_holder_is_taken_over_with_a_message(tmp_path, holder):
    run_dir = tmp_path / "stale"
    proc = holder(run_dir)
    os.kill(proc.pid, signal.SIGKILL)                         # no chance to remove its lock file
    proc.wait()
    assert json.loads((run_dir / LOCK_NAME).read_text())["pid"] == proc.pid
    with pytest.warns(RunDirectoryWarning, match=f"took over the lock left by pid {proc.pid} on host"):
        run_spiral(steps=5, frames=2, grid_size=5, run_dir=run_dir)
    assert (run_dir / "summary.json").exists() and not (run_dir / LOCK_NAME).exists()


def test_a_held_lock_is_refused_even_when_its_record_names_a_dead_process(tmp_path, holder):
    """flock, not the recorded pid, decides while the holder lives: a holder in another pid namespace
    (a container) records a pid that means nothing here, and its run directory must still be refused."""
    run_dir = tmp_path / "held"
    proc = holder(run_dir)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record = {**json.loads((run_dir / LOCK_NAME).read_text()), "pid": int(gone.stdout)}   # a pid no longer running
    (run_dir / LOCK_NAME).write_text(json.dumps(record) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RunDirectoryWarning)                 # no "took over"
        with pytest.raises(RunDirectoryBusy, match=f"in use by pid {record['pid']} on host"):
            with locked_run_dir(run_dir):
                pass
    assert proc.poll() is None and json.loads((run_dir / LOCK_NAME).read_text()) == record


def test_a_lock_of_another_host_is_named_not_taken(tmp_path):
    run_dir = tmp_path / "shared"
    run_dir.mkdir()
    (run_dir / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere", "since": "then", "command": "x"}))
    with pytest.raises(RunDirectoryBusy, match="in use by pid 1 on host 'elsewhere'.*if it has ended, delete"):
        with claimed_run_dir(run_dir):
            pass
    assert json.loads((run_dir / LOCK_NAME).read_text())["host"] == "elsewhere"     # left as it was


@pytest.mark.slow
def test_two_train_processes_started_on_one_run_dir(tmp_path):
    """Two real `train` processes, different seeds, one --run-dir: the second exits 2 naming the
    directory and the first, which trains on alone (no interleaved rows, its own config)."""
    run_dir = tmp_path / "shared"
    args = [sys.executable, "-m", "nslviz", "train", "--dataset", "digits", "--backbone", "convnet4",
            "--batch-size", "32", "--train-limit", "192", "--eval-limit", "96", "--entries", "40", "--device", "cpu",
            "--image-size", "16", "--no-progress", "--run-dir", str(run_dir)]
    first = subprocess.Popen(args + ["--epochs", "40", "--seed", "1"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, env=_environment())
    try:
        deadline = time.time() + 300
        while not (run_dir / LOCK_NAME).exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, first.stderr.read()
        second = subprocess.run(args + ["--epochs", "2", "--seed", "2"], capture_output=True, text=True,
                                env=_environment(), timeout=600)
        assert first.poll() is None, "the first run ended before the second one asked for the directory"
        assert second.returncode == 2, second.stderr
        assert f"run directory {str(run_dir.resolve())!r} is in use by pid {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        metrics = run_dir / "metrics.jsonl"
        while first.poll() is None and time.time() < deadline + 600 and \
                (not metrics.exists() or len(metrics.read_text().splitlines()) < 2):
            time.sleep(0.1)                                        # the first run goes on: two epochs
        assert first.poll() is None, first.stderr.read()
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert json.loads((run_dir / "config.json").read_text())["seed"] == 1
    epochs = [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, len(epochs) + 1))               # one run's rows, in order



def test_the_lock_records_the_command_as_typed(monkeypatch):
    """`python -m nslviz` puts the path of nslviz/__main__.py in sys.argv[0]; the lock says what was typed."""
    import nslviz
    from nslviz.training.rundir import command_line
    main_path = str(Path(nslviz.__file__).parent / "__main__.py")
    monkeypatch.setattr(sys, "argv", [main_path, "train", "--run-dir", "runs/d"])
    assert command_line() == "python -m nslviz train --run-dir runs/d"
    monkeypatch.setattr(sys, "argv", ["notebook.py", "--x"])
    assert command_line() == "notebook.py --x"
