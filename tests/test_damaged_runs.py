"""Damaged files in a run directory: each is named, with what to do, and no other file changes
(checksums). A torn last metrics line (a writer killed mid-line, real processes) is dropped on
resume; a missing config.json is restored from the checkpoint."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nslviz.training.config import TrainConfig
from nslviz.training.rundir import DamagedRunFile, RunDirectory, RunDirectoryWarning
from nslviz.training.trainer import train
from runs import TINY, interrupt_at, stable


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An uninterrupted tiny run and the same run cut after its first epoch (checkpoint at iteration 6,
    one metrics row, best.pt)."""
    root = tmp_path_factory.mktemp("runs")
    summary = train(TrainConfig(**TINY), root / "reference", progress=False)
    interrupt_at(TrainConfig(**TINY), root / "cut", 7)
    return root, summary


@pytest.fixture
def cut(runs, tmp_path):
    """A fresh copy of the cut run."""
    return Path(shutil.copytree(runs[0] / "cut", tmp_path / "cut"))


def _checksums(folder: Path, leave_out=()) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if p.is_file() and p.name not in leave_out}


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    path.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "garbage": os.urandom(3000)}[how])


def _main_exit(capsys, *argv) -> tuple[int, str]:
    from nslviz.__main__ import main
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("how", ["empty", "truncated", "garbage"])
def test_a_damaged_checkpoint_on_resume_is_named_with_what_to_do(cut, how, capsys):
    _damage(cut / "checkpoint.pt", how)
    before = _checksums(cut)
    code, err = _main_exit(capsys, "train", "--run-dir", str(cut), "--resume", "--no-progress")
    assert code == 2 and "Traceback" not in err
    assert f"{str(cut / 'checkpoint.pt')!r} is damaged" in err
    assert "the other files there (best.pt, config.json, metrics.jsonl) are left as they are" in err
    assert "--overwrite" in err and "cannot continue from it exactly" in err and "--init-backbone" in err
    assert "weights_only" not in err
    assert _checksums(cut) == before


def test_a_damaged_checkpoint_of_a_finished_run_says_its_results_stand(runs, tmp_path, capsys):
    """--resume of a finished run only tests it again; its checkpoint damaged, the advice is to keep the
    results, not to start again with --overwrite, which would delete them."""
    finished = Path(shutil.copytree(runs[0] / "reference", tmp_path / "finished"))
    _damage(finished / "checkpoint.pt", "truncated")
    before = _checksums(finished)
    code, err = _main_exit(capsys, "train", "--run-dir", str(finished), "--resume", "--no-progress")
    assert code == 2 and f"{str(finished / 'checkpoint.pt')!r} is damaged" in err
    assert "the run has finished, and summary.json and best.pt still hold its results" in err
    assert "nothing is left to train or resume, so keep them" in err and "start the run again" not in err
    assert _checksums(finished) == before


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")   # torch's note on the damaged bytes tested
@pytest.mark.parametrize("command", [["heads", "--steps", "2", "--run-dir"], ["neighbors", "--run-dir"],
                                     ["train", "--epochs", "1", "--no-progress", "--init-backbone"]])
def test_a_damaged_best_checkpoint_is_named_by_every_command_that_reads_it(cut, command, capsys, tmp_path):
    _damage(cut / "best.pt", "garbage")
    before = _checksums(cut)
    extra = ["--run-dir", str(tmp_path / "new")] if command[0] == "train" else []
    code, err = _main_exit(capsys, *command, str(cut), *extra)
    assert code == 2 and "Traceback" not in err
    assert f"{str(cut / 'best.pt')!r} is damaged" in err and "weights_only" not in err
    assert "left as they are" in err and "--overwrite" in err
    assert _checksums(cut) == before


def test_a_damaged_best_checkpoint_stops_a_resume_before_it_trains(cut):
    _damage(cut / "best.pt", "truncated")
    before = _checksums(cut)
    with pytest.raises(DamagedRunFile, match="best.pt' is damaged .* the best epoch's weights, which the run tests"):
        train(TrainConfig(**TINY), cut, resume=True, progress=False)
    assert _checksums(cut) == before


@pytest.mark.parametrize("how", ["missing", "garbage"])
def test_resume_without_a_readable_config_uses_the_checkpoints_copy(cut, runs, how, capsys):
    from nslviz.__main__ import main
    original = (cut / "config.json").read_text()
    if how == "missing":
        (cut / "config.json").unlink()
    else:
        (cut / "config.json").write_text('{"dataset": "dig')
    assert main(["train", "--run-dir", str(cut), "--resume", "--no-progress"]) == 0
    err = capsys.readouterr().err
    problem = "does not exist" if how == "missing" else "is damaged"
    assert f"warning: {str(cut / 'config.json')!r} {problem}; resuming with the copy of the configuration in " \
           f"checkpoint.pt" in err
    assert json.loads((cut / "config.json").read_text()) == json.loads(original)
    assert stable(json.loads((cut / "summary.json").read_text())) == stable(runs[1])


def test_resume_without_config_or_checkpoint_says_why_not(cut, capsys):
    (cut / "config.json").unlink()
    (cut / "checkpoint.pt").unlink()
    code, err = _main_exit(capsys, "train", "--run-dir", str(cut), "--resume", "--no-progress")
    assert code == 2 and "does not exist and there is no checkpoint.pt with a copy of the configuration" in err


def test_a_damaged_summary_or_metrics_line_is_named(cut):
    run = RunDirectory(cut, create=False)
    rows = (cut / "metrics.jsonl").read_text()
    (cut / "metrics.jsonl").write_text("{not json\n" + rows)
    with pytest.raises(DamagedRunFile, match=r"metrics.jsonl' is damaged \(line 1 of 2 is not a JSON object\).*To go "
                                             r"on: mend line 1 .* or delete it, which loses that epoch's row but not "
                                             r"the run"):
        run.read_metrics()
    (cut / "metrics.jsonl").write_text(rows)                                  # deleted: the cut run resumes
    assert train(TrainConfig(**TINY), cut, resume=True, progress=False)["epochs"] == TINY["epochs"]
    (cut / "metrics.jsonl").write_text("{not json\n" + rows)
    (cut / "summary.json").write_text("")
    with pytest.raises(DamagedRunFile, match=r"summary.json' is damaged \(not a JSON object\)"):
        run.read_summary()
    with pytest.raises(ValueError, match="already holds a finished run"):      # still a finished run's file
        train(TrainConfig(**TINY), cut, progress=False)


# a writer that appends half a metrics row, then waits to be killed
APPENDER = ("import os, sys, time\nfd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)\n"
            "os.write(fd, b'{\"epoch\": 2, \"iteration\": 12, \"train_lo')\nos.fsync(fd)\n"
            "print('written', flush=True)\ntime.sleep(600)\n")


def test_a_row_torn_by_a_killed_writer_is_dropped_on_resume_with_a_warning(cut, runs):
    """Real processes: a writer killed with kill -9 in the middle of a metrics line, then a real
    `train --resume`: the torn line is dropped with a warning, the rows before it are kept, and the
    run ends with the numbers and rows of the uninterrupted run."""
    metrics = cut / "metrics.jsonl"
    first_row = metrics.read_text()
    with subprocess.Popen([sys.executable, "-c", APPENDER, str(metrics)], stdout=subprocess.PIPE, text=True) as writer:
        assert writer.stdout.readline().strip() == "written"
        os.kill(writer.pid, signal.SIGKILL)
    assert metrics.read_text().endswith('"train_lo')                   # torn: no closing brace, no newline
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-m", "nslviz", "train", "--run-dir", str(cut), "--resume", "--no-progress",
                          "--json"], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    assert f"train: warning: {str(metrics)!r}: dropped its torn last line (line 2" in out.stderr
    assert metrics.read_text().startswith(first_row)                   # nothing already written is lost
    assert metrics.read_text() == (runs[0] / "reference" / "metrics.jsonl").read_text()
    assert stable(json.loads(out.stdout.strip().splitlines()[-1])) == stable(runs[1])


def test_reading_metrics_drops_only_a_torn_last_line(tmp_path):
    run = RunDirectory(tmp_path)
    run.write_metrics([{"epoch": 1}, {"epoch": 2}])
    with open(run.metrics_path, "a") as handle:
        handle.write('{"epoch": 3, "val')
    with pytest.warns(RunDirectoryWarning, match=r"dropped its torn last line \(line 3, 17 characters"):
        assert run.read_metrics() == [{"epoch": 1}, {"epoch": 2}]
