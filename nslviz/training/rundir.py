"""Run directories: runs/<name>/{config.json, metrics.jsonl, summary.json, checkpoint.pt}.

Every write is atomic (write to a temporary file in the same folder, fsync, rename), so a run
killed at any moment leaves either the old file or the new one, never a torn one.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def _atomic_write(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)                 # mkstemp makes 0600; give the file the usual permissions
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_folder(path.parent)                # the rename itself survives a power cut
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:                               # e.g. a platform without folder descriptors
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_json(path, obj: Any) -> None:
    data = (json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n").encode()
    _atomic_write(Path(path), lambda handle: handle.write(data))


def atomic_write_text(path, text: str) -> None:
    data = text.encode("utf-8")
    _atomic_write(Path(path), lambda handle: handle.write(data))


def atomic_torch_save(path, obj: Any) -> None:
    _atomic_write(Path(path), lambda handle: torch.save(obj, handle))


def _json_default(value):
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


class RunDirectory:
    """The files of one run. `metrics.jsonl` is rewritten atomically on every append (it is small),
    so a kill never leaves a half-written line."""

    def __init__(self, path, *, create: bool = True):
        self.path = Path(path)
        if create:
            self.path.mkdir(parents=True, exist_ok=True)

    config_path = property(lambda self: self.path / "config.json")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    summary_path = property(lambda self: self.path / "summary.json")
    checkpoint_path = property(lambda self: self.path / "checkpoint.pt")
    best_path = property(lambda self: self.path / "best.pt")

    def remove_stale_temporaries(self) -> None:
        """Temporary files of a write that a kill interrupted (`.<name>.*.tmp`); call it only while no
        write is in flight (a run's start)."""
        for path in self.path.glob(".*.tmp"):
            path.unlink(missing_ok=True)

    def remove_previous_run(self) -> None:
        """Delete what an earlier run left here (summary, checkpoints), before a fresh start replaces
        it, so that no file of the old run is read as the new one's."""
        for path in (self.summary_path, self.best_path, self.checkpoint_path):
            path.unlink(missing_ok=True)

    def write_config(self, config: dict) -> None:
        atomic_write_json(self.config_path, config)

    def write_summary(self, summary: dict) -> None:
        atomic_write_json(self.summary_path, summary)

    def read_metrics(self) -> list[dict]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def write_metrics(self, rows: list[dict]) -> None:
        text = "".join(json.dumps(row, sort_keys=True, default=_json_default) + "\n" for row in rows)
        _atomic_write(self.metrics_path, lambda handle: handle.write(text.encode()))

    def append_metrics(self, row: dict) -> None:
        self.write_metrics(self.read_metrics() + [row])

    def save_checkpoint(self, state: dict) -> None:
        atomic_torch_save(self.checkpoint_path, state)

    def load_checkpoint(self, map_location="cpu") -> dict | None:
        if not self.checkpoint_path.exists():
            return None
        return torch.load(self.checkpoint_path, map_location=map_location, weights_only=False)

    def read_summary(self) -> dict | None:
        return json.loads(self.summary_path.read_text()) if self.summary_path.exists() else None


def check_run_dir_is_usable(run_path) -> None:
    """A run directory must be a folder, or a path where one can be made and written, before any
    work starts (so that no result is computed and then lost)."""
    run_path = Path(run_path)
    if run_path.exists() and not run_path.is_dir():
        raise ValueError(f"run directory {str(run_path)!r} is a file, not a folder; choose another run directory")
    existing = next(path for path in (run_path.absolute(), *run_path.absolute().parents) if path.exists())
    if not existing.is_dir():
        raise ValueError(f"run directory {str(run_path)!r} cannot be made: {str(existing)!r} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"run directory {str(run_path)!r} cannot be written: no write permission in {str(existing)!r}")


def check_run_dir_is_free(run_path, *, resumable: bool = False) -> None:
    """Raise if `run_path` holds a finished run (summary.json) or a started one (checkpoint.pt)."""
    run = RunDirectory(run_path, create=False)
    summary = run.read_summary()
    if summary is not None:
        accuracy = summary.get("test_acc")
        held = f"a finished run (test acc {accuracy:.4f})" if isinstance(accuracy, (int, float)) else \
            "a finished run (summary.json)"
    elif run.checkpoint_path.exists():
        held = "a started run (checkpoint.pt)"
    else:
        return
    resume = "resume it (resume=True, CLI --resume), " if resumable else ""
    raise ValueError(f"{str(run_path)!r} already holds {held}; {resume}replace it (overwrite=True, CLI "
                     f"--overwrite) or choose another run directory")


def claim_run_dir(run_path, *, overwrite: bool = False, resumable: bool = False) -> None:
    """Before any work: `run_path` can be made and written, and holds no other run unless `overwrite`
    (a resumed run passes overwrite=True: it continues what is there)."""
    check_run_dir_is_usable(run_path)
    if not overwrite:
        check_run_dir_is_free(run_path, resumable=resumable)


def write_run(run_path, config: dict, metrics: list[dict], summary: dict) -> None:
    """The files of a one-shot experiment (spiral, regress, implicit-reg), replacing any earlier run's."""
    run = RunDirectory(run_path)
    run.remove_previous_run()
    run.write_config(config)
    run.write_metrics(metrics)
    run.write_summary(summary)
