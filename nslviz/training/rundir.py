"""Run directories: runs/<name>/{config.json, metrics.jsonl, summary.json, checkpoint.pt, best.pt}.

Every write is atomic (write to a temporary file in the same folder, fsync, rename), so a run
killed at any moment leaves either the old file or the new one, never a torn one.

One process at a time: a command that writes a run directory holds its lock file `.lock` (the
holder's pid, host, start time and command line) from before its first write until it ends; a
second process is refused with the holder named (see `locked_run_dir`, docs/run-directories.md).

A fresh start sets the files of a run already there aside in `.previous/` and deletes them once its
first epoch-end checkpoint is written; if it fails before (an error, Ctrl-C), they are put back.

A file that cannot be read (empty, truncated, not what nslviz writes) is an error naming the file,
saying that the other files were left as they are and how to go on (`DamagedRunFile`).

`load_run(run_dir)` reads a run back for analysis: (model with its best weights, config, data).
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import socket
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Iterator

import torch

from .._checks import check_choice
from .._io import (_json_default, _os_reason, atomic_torch_save, atomic_write_json,  # noqa: F401 (re-exported)
                   atomic_write_text)
from .config import TrainConfig, build_model
from .data import load_data

try:
    import fcntl
except ImportError:                                # Windows: the lock falls back to the holder's pid
    fcntl = None

LOCK_NAME = ".lock"
PREVIOUS_NAME = ".previous"              # the run that a fresh start replaces, until its first epoch ends
MOVING_NAME = ".previous.moving"         # files on their way to or from .previous/, put back at the next start
DROPPED_NAME = ".previous.dropped"       # .previous/ being deleted; deleted at the next start if a kill cut it
CHECKPOINT_KEYS = ("config", "model", "optimizer", "scheduler", "state")


class RunDirectoryError(ValueError):
    """A run directory cannot be used as asked: busy, damaged, holding another run, or a run that
    cannot be resumed with these settings. The CLI exits 2 with the message alone (no usage)."""


class RunDirectoryBusy(RunDirectoryError):
    """Another process holds the run directory (the CLI exits 2 with this message)."""


class DamagedRunFile(RunDirectoryError):
    """A file of a run directory that cannot be read; the message names it and how to go on."""


class RunDirectoryWarning(UserWarning):
    """Something in a run directory was repaired: a torn last metrics row, a stale lock."""


RESTART = "start the run again with --overwrite (overwrite=True)"


class RunDirectory:
    """The files of one run. `metrics.jsonl` is rewritten atomically on every append (it is small),
    so a kill never leaves a half-written line; a torn last line that another writer left (an
    append cut by a kill) is dropped with a warning when the rows are read."""

    def __init__(self, path, *, create: bool = True):
        self.path = Path(path)
        if create:
            self.path.mkdir(parents=True, exist_ok=True)

    config_path = property(lambda self: self.path / "config.json")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    summary_path = property(lambda self: self.path / "summary.json")
    checkpoint_path = property(lambda self: self.path / "checkpoint.pt")
    best_path = property(lambda self: self.path / "best.pt")
    previous_path = property(lambda self: self.path / PREVIOUS_NAME)
    run_files = property(lambda self: (self.config_path, self.metrics_path, self.summary_path, self.checkpoint_path,
                                       self.best_path))

    def has_results_without_checkpoint(self) -> bool:
        """best.pt or metrics rows but no checkpoint.pt (deleted, or a run of a version that wrote its first
        checkpoint after epoch 1), which cannot be resumed and must not be replaced by accident."""
        return not self.checkpoint_path.exists() and (
            self.best_path.exists() or (self.metrics_path.exists() and self.metrics_path.stat().st_size > 0))

    def remove_stale_temporaries(self) -> None:
        """Temporary files of a write that a kill interrupted (`.<name>.*.tmp`); call it only while no
        write is in flight (a run's start)."""
        for path in self.path.glob(".*.tmp"):
            path.unlink(missing_ok=True)

    def remove_previous_run(self) -> None:
        """Delete what an earlier run left here (summary, checkpoints) before a one-shot experiment
        writes its files (`write_run`), so that no file of the old run is read as the new one's."""
        for path in (self.summary_path, self.best_path, self.checkpoint_path):
            path.unlink(missing_ok=True)

    def set_previous_run_aside(self) -> None:
        """Before a fresh start: move the files of the run here into `.previous/`, where they stay until
        the new run's first epoch-end checkpoint (`drop_previous_run`), or go back if it fails before
        (`put_previous_run_back`). They go through `.previous.moving/`, renamed whole, so a kill leaves
        no half-filled `.previous/`. A `.previous/` already here was left by a replacing run killed
        before its first epoch ended: it stays the run to put back, and that run's files are deleted."""
        if self.previous_path.exists():
            for path in self.run_files:
                path.unlink(missing_ok=True)
            return
        present = [path for path in self.run_files if path.exists()]
        if present:
            moving = self.path / MOVING_NAME
            moving.mkdir(exist_ok=True)
            for path in present:
                os.replace(path, moving / path.name)
            os.replace(moving, self.previous_path)

    def put_previous_run_back(self) -> bool:
        """The files set aside in `.previous/` back in place of the new run's; False if none were."""
        if not self.previous_path.exists():
            return False
        for path in self.run_files:
            path.unlink(missing_ok=True)
        os.replace(self.previous_path, self.path / MOVING_NAME)
        self.finish_interrupted_move()
        return True

    def finish_interrupted_move(self) -> None:
        """Put the files of `.previous.moving/` (a move to or from `.previous/` that a kill cut short)
        back in place and delete a `.previous.dropped/` a kill left half-deleted; call it only while no
        run writes here (a start, under the lock)."""
        moving = self.path / MOVING_NAME
        if moving.is_dir():
            for path in moving.iterdir():
                os.replace(path, self.path / path.name)
            moving.rmdir()
        shutil.rmtree(self.path / DROPPED_NAME, ignore_errors=True)

    def drop_previous_run(self) -> None:
        """Delete the run set aside in `.previous/`, once the new run has an epoch-end checkpoint: renamed
        first, so that a kill in the deletion leaves no half-deleted `.previous/` to put back."""
        if self.previous_path.exists():
            os.replace(self.previous_path, self.path / DROPPED_NAME)
        shutil.rmtree(self.path / DROPPED_NAME, ignore_errors=True)

    def write_config(self, config: dict) -> None:
        atomic_write_json(self.config_path, config)

    def write_summary(self, summary: dict) -> None:
        atomic_write_json(self.summary_path, summary)

    def read_metrics(self) -> list[dict]:
        """The rows of metrics.jsonl. A last line that is not a JSON object (an append cut by a kill)
        is dropped with a RunDirectoryWarning; an unreadable line before it is a DamagedRunFile."""
        if not self.metrics_path.exists():
            return []
        lines = [(number, line) for number, line in enumerate(self.metrics_path.read_text().splitlines(), 1)
                 if line.strip()]
        rows = []
        for position, (number, line) in enumerate(lines):
            row = _json_object(line)
            if row is not None:
                rows.append(row)
            elif position == len(lines) - 1:
                warnings.warn(f"{str(self.metrics_path)!r}: dropped its torn last line (line {number}, "
                              f"{len(line)} characters: a write cut off by a kill); the {len(rows)} rows "
                              f"before it are kept", RunDirectoryWarning, stacklevel=2)
            else:
                raise damaged_file(self.metrics_path, f"line {number} of {len(lines)} is not a JSON object",
                                   f"mend line {number} (each line is one epoch's JSON object) or delete it, which "
                                   f"loses that epoch's row but not the run: the checkpoint is apart; or {RESTART}")
        return rows

    def write_metrics(self, rows: list[dict]) -> None:
        text = "".join(json.dumps(row, sort_keys=True, default=_json_default) + "\n" for row in rows)
        atomic_write_text(self.metrics_path, text)

    def append_metrics(self, row: dict) -> None:
        self.write_metrics(self.read_metrics() + [row])

    def save_checkpoint(self, state: dict) -> None:
        atomic_torch_save(self.checkpoint_path, state)

    def load_checkpoint(self, map_location="cpu", *, advice: str = RESTART) -> dict | None:
        """checkpoint.pt (None when there is none); a damaged one is a DamagedRunFile ending in `advice`."""
        if not self.checkpoint_path.exists():
            return None
        checkpoint = load_torch_file(self.checkpoint_path, advice, map_location=map_location, weights_only=False)
        missing = [key for key in CHECKPOINT_KEYS if not isinstance(checkpoint, Mapping) or key not in checkpoint]
        if missing:
            raise damaged_file(self.checkpoint_path, f"a torch file without the checkpoint's {', '.join(missing)}",
                               advice)
        return checkpoint

    def load_best(self, map_location="cpu", *, advice: str | None = None) -> dict:
        """best.pt: the state dict of the best-on-validation weights; a damaged one is a DamagedRunFile."""
        advice = advice or (f"train the run again with the options its config.json lists (python -m nslviz train "
                            f"--run-dir {self.path} --overwrite and those options), "
                            f"or use the last epoch's weights in checkpoint.pt (load_run(run_dir, which='last'))")
        state = load_torch_file(self.best_path, advice, map_location=map_location, weights_only=True)
        if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise damaged_file(self.best_path, "a torch file that is not a state dict of tensors", advice)
        return state

    def read_config(self) -> dict | None:
        """config.json (None when there is none); unreadable: a DamagedRunFile."""
        return self._read_json(self.config_path)

    def read_summary(self) -> dict | None:
        """summary.json (None when there is none); unreadable: a DamagedRunFile."""
        return self._read_json(self.summary_path)

    def _read_json(self, path: Path) -> dict | None:
        if not path.exists():
            return None
        value = _json_object(path.read_text())
        if value is None:
            raise damaged_file(path, "not a JSON object", RESTART)
        return value


def _json_object(text: str) -> dict | None:
    """`text` as a JSON object, or None when it is not one (torn, empty, another value)."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def damaged_file(path: Path, reason: str, advice: str) -> DamagedRunFile:
    """The error for an unreadable run file: which file, why, that the others are untouched, what to do."""
    path = Path(path)
    others = sorted(p.name for p in path.parent.iterdir() if p.is_file() and p != path and not p.name.startswith("."))
    kept = (f"the other files there ({', '.join(others)}) are left as they are" if others
            else "no other file of the run is there")
    return DamagedRunFile(f"{str(path)!r} is damaged ({reason}); {kept}. To go on: {advice}")


def load_torch_file(path: Path, advice: str, *, map_location="cpu", weights_only: bool = True):
    """torch.load(path), with an empty, truncated or foreign file raised as a DamagedRunFile (torch's
    own errors name no file, and the weights-only one advises weights_only=False, which would not help)."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise damaged_file(path, "empty, 0 bytes: a write that never finished", advice)
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except Exception as error:                    # RuntimeError, UnpicklingError, EOFError, OSError, KeyError, ...
        raise damaged_file(path, f"{size} bytes that torch cannot read: truncated, overwritten or not a torch "
                                 f"file; {type(error).__name__}", advice) from None


def check_run_dir_is_usable(run_path, what: str = "run directory") -> None:
    """A run directory (or another output folder, `what`) must be a folder, or a path where one can
    be made and written, before any work starts (so that no result is computed and then lost)."""
    if run_path is None or not str(run_path).strip():
        raise ValueError(f"{what} is an empty path {str(run_path or '')!r}; expected a folder such as runs/digits-mn")
    run_path = Path(run_path)
    if run_path.exists() and not run_path.is_dir():
        raise ValueError(f"{what} {str(run_path)!r} is a file, not a folder; choose another {what}")
    existing = next(path for path in (run_path.absolute(), *run_path.absolute().parents) if path.exists())
    if not existing.is_dir():
        raise ValueError(f"{what} {str(run_path)!r} cannot be made: {str(existing)!r} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {str(run_path)!r} cannot be written: no write permission in {str(existing)!r}")


def check_run_dir_is_free(run_path, *, resumable: bool = False) -> None:
    """Raise if `run_path` holds a finished run (summary.json) or a started one (checkpoint.pt, or
    best.pt and metrics of a run whose checkpoint is gone, or only a run set aside in .previous/, which
    only --overwrite replaces)."""
    run = RunDirectory(run_path, create=False)
    try:
        summary = run.read_summary()
    except DamagedRunFile:
        summary = {}                                       # unreadable, but a finished run's file all the same
    if summary is not None:
        accuracy = summary.get("test_acc")
        held = f"a finished run (test acc {accuracy:.4f})" if isinstance(accuracy, (int, float)) else \
            "a finished run (summary.json)"
        resumable = False                                  # nothing is left to continue
    elif run.checkpoint_path.exists():
        held = "a started run (checkpoint.pt)"
    elif run.has_results_without_checkpoint():
        held = "an unfinished run (best.pt or metrics.jsonl, and no checkpoint.pt to resume it from)"
        resumable = False
    elif run.previous_path.exists():                       # set aside by a replacing run killed before it wrote
        held = f"a run set aside in {PREVIOUS_NAME}/ by a replacing run that was killed"
        resumable = False
    else:
        return
    resume = "resume it (resume=True, CLI --resume), " if resumable else ""
    raise RunDirectoryError(f"{str(run_path)!r} already holds {held}; {resume}replace it (overwrite=True, CLI "
                            f"--overwrite) or choose another run directory")


@contextlib.contextmanager
def claimed_run_dir(run_path, *, overwrite: bool = False, resumable: bool = False,
                    lock: bool = True, one_shot: bool = False) -> Iterator[Path | None]:
    """Hold `run_path` for the work that writes it: it can be made and written, this process holds
    its lock (`locked_run_dir`; `lock=False` for the DDP ranks that do not write), and it holds no
    other run unless `overwrite` (a resumed run passes overwrite=True: it continues what is there).
    A `one_shot` experiment (spiral, regress, implicit-reg: `write_run`, no checkpoints) never
    replaces a training run's weights, even with `overwrite`. Checked before any work, so that no
    result is computed and then lost. None: nothing to hold."""
    if run_path is None:
        yield None
        return
    check_run_dir_is_usable(run_path)
    with locked_run_dir(run_path) if lock else contextlib.nullcontext():
        run = RunDirectory(run_path, create=False)
        if one_shot and (run.checkpoint_path.exists() or run.best_path.exists()):
            raise RunDirectoryError(f"{str(run_path)!r} holds a training run (checkpoint.pt or best.pt), which this "
                                    f"command does not replace, even with overwrite; choose another run directory")
        if not overwrite:
            check_run_dir_is_free(run_path, resumable=resumable)
        yield Path(run_path)


# ---------------------------------------------------------------------------------------------
# the lock: one process per run directory

_HELD: dict[Path, list] = {}                   # resolved run directory -> [RunLock, depth] of this process


@contextlib.contextmanager
def locked_run_dir(run_path) -> Iterator[Path]:
    """Hold the advisory lock of `run_path` (made if needed) while the block runs.

    The lock is the file `<run_path>/.lock`, holding this process's pid, host, start time and
    command line, taken with flock (released by the kernel when the process dies, even by kill -9)
    and deleted on exit. Another process holding it: RunDirectoryBusy naming the directory and the
    holder. A lock file left by a process that has ended (kill -9, a power cut) on this host is
    taken over with a RunDirectoryWarning; one of another host (a shared file system) is only
    named, as this host cannot tell whether its process still runs. Re-entrant within a process
    (compare_runs holds the lock of a run while train() takes it again). Taking it first finishes a move
    to or from `.previous/` that a kill cut short (`RunDirectory.finish_interrupted_move`)."""
    key = Path(run_path).resolve()
    first = key not in _HELD
    if first:
        _HELD[key] = [RunLock(key).acquire(), 0]
    _HELD[key][1] += 1
    try:                                          # released however the block ends, the repair below included
        if first:
            RunDirectory(key, create=False).finish_interrupted_move()   # a move to or from .previous/ a kill cut
        yield Path(run_path)
    finally:
        _HELD[key][1] -= 1
        if _HELD[key][1] == 0:
            _HELD.pop(key)[0].release()


def command_line() -> str:
    """This process's command line as it was typed: `python -m nslviz train ...` rather than the path
    of nslviz/__main__.py that Python puts in sys.argv[0] for `-m`."""
    argv = list(sys.argv)
    if argv and Path(argv[0]).name == "__main__.py" and Path(argv[0]).parent.name == "nslviz":
        argv[:1] = ["python", "-m", "nslviz"]
    return " ".join(argv)


def _holder_record() -> dict:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return {"pid": os.getpid(), "host": socket.gethostname(), "since": now, "command": command_line()}


def _describe_holder(record: dict | None) -> str:
    if not record:
        return "another process (its lock file names none)"
    return (f"pid {record.get('pid')} on host {record.get('host')!r} (since {record.get('since')}: "
            f"{record.get('command') or 'no command line recorded'})")


def _process_is_running(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0 or os.name == "nt":   # Windows: os.kill(pid, 0) is not a probe
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:                                   # alive, another user's
        return True
    return True


class RunLock:
    """The lock file of one run directory; see `locked_run_dir`."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.fd: int | None = None
        self.made: list[Path] = []                            # folders acquire made, deepest first

    def acquire(self) -> "RunLock":
        self.made = [folder for folder in (self.folder, *self.folder.parents) if not folder.exists()]
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            blocking = next((f for f in (self.folder, *self.folder.parents) if f.exists() and not f.is_dir()), None)
            if blocking is not None:                          # a path the user chose runs through a file
                raise RunDirectoryError(f"cannot make run directory {str(self.folder)!r}: {str(blocking)!r} is a "
                                        f"file, not a folder; choose another folder") from None
            raise OSError(f"cannot make run directory {str(self.folder)!r}: {_os_reason(error)}") from None
        while self.fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            exclusive = self._flock(fd)
            if exclusive is False:                            # a live process holds it
                holder = _json_object(os.pread(fd, 65536, 0).decode(errors="replace"))
                os.close(fd)
                raise self._busy(holder)
            try:                                              # its holder may have deleted it before our flock
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            self.fd = fd
            previous = _json_object(os.pread(fd, 65536, 0).decode(errors="replace"))
            if previous:
                self._take_over(previous, checked_by_flock=exclusive is True)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, (json.dumps(_holder_record(), sort_keys=True) + "\n").encode(), 0)
        os.fsync(self.fd)
        return self

    @staticmethod
    def _flock(fd: int) -> bool | None:
        """True: this process now holds the flock; False: another does; None: no flock here."""
        if fcntl is None:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError:                                       # a file system without flock
            return None
        return True

    def _take_over(self, previous: dict, *, checked_by_flock: bool) -> None:
        """A lock file is there but not held: take it if its process is gone, else refuse."""
        same_host = previous.get("host") == socket.gethostname()
        gone = same_host and (checked_by_flock or not _process_is_running(previous.get("pid")))
        if not gone:
            self._close()                                     # the file stays: it is the other holder's
            raise self._busy(previous, other_host=not same_host)
        warnings.warn(f"run directory {str(self.folder)!r}: took over the lock left by "
                      f"{_describe_holder(previous)}, a process that is no longer running", RunDirectoryWarning,
                      stacklevel=4)

    def _busy(self, holder: dict | None, *, other_host: bool = False) -> RunDirectoryBusy:
        if other_host:
            remedy = (f"this host cannot check whether that process still runs; if it has ended, delete "
                      f"{str(self.path)!r}, else wait for it or choose another run directory")
        else:
            remedy = "wait for it to end, or choose another run directory"
        return RunDirectoryBusy(f"run directory {str(self.folder)!r} is in use by {_describe_holder(holder)}; "
                                f"{remedy}")

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.path)                              # while still holding it: no one locks a dead file
        except FileNotFoundError:
            pass
        finally:
            self._close()
        for folder in self.made:                              # a run that wrote nothing (its data was missing,
            try:                                              # say) leaves no empty folders behind
                folder.rmdir()
            except OSError:                                   # not empty: something was written there
                break

    def _close(self) -> None:
        os.close(self.fd)                                     # releases the flock
        self.fd = None


def write_run(run_path, config: dict, metrics: list[dict], summary: dict) -> None:
    """The files of a one-shot experiment (spiral, regress, implicit-reg), replacing any earlier run's."""
    run = RunDirectory(run_path)
    run.remove_previous_run()
    run.write_config(config)
    run.write_metrics(metrics)
    run.write_summary(summary)


def load_run(run_dir: str | Path, which: str = "best", device: str = "cpu"):
    """(model, config, data) of a finished or running run directory, for analysis notebooks (a run
    that has not finished is said with a RunDirectoryWarning: its weights are those so far).
    which: "best" (best.pt) or "last" (checkpoint.pt); device: where the model goes ("auto": CUDA
    when present), the weights being read on the CPU whatever device saved them."""
    from .distributed import resolve_device
    check_choice("which", which, ("best", "last"))
    device = resolve_device(device)             # a device this machine lacks is named, not a damaged file
    run = RunDirectory(run_dir, create=False)
    stored = run.read_config()
    if stored is None:
        raise ValueError(f"{str(run_dir)!r} is not a run directory (no config.json); expected the run_dir of a train() call")
    try:
        config = TrainConfig.from_dict(stored)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{str(run_dir)!r} does not hold a train run: its config.json is not a TrainConfig "
                         f"({error}); expected the run_dir of a train() call") from None
    path = run.best_path if which == "best" else run.checkpoint_path
    if not path.exists():
        raise ValueError(f"no {path.name} in {str(run_dir)!r} yet; expected a run that finished at least one epoch")
    state = run.load_best(map_location="cpu") if which == "best" else run.load_checkpoint(map_location="cpu")["model"]
    if not run.summary_path.exists():
        so_far = "the best epoch's so far" if which == "best" else "the last checkpoint's"
        warnings.warn(f"the run in {str(run_dir)!r} has not finished (no summary.json): its weights are {so_far}",
                      RunDirectoryWarning, stacklevel=2)
    data = load_data(config)
    model = build_model(config, data.num_classes, data.channels, data.image_size)
    model.load_state_dict(state)
    return model.to(device).eval(), config, data
