"""Atomic writes: a temporary file in the same folder, fsync, rename, fsync of the folder. A process
killed at any moment leaves either the old file or the new one, never a torn one. The lowest layer of
the package (datasets cache with it, run directories and exports write with it)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def _atomic_write(path: Path, write) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:                      # say what was being written, not a bare "[Errno 17] File exists"
        raise OSError(f"cannot write {str(path)!r}: {_os_reason(error)}") from None
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


def _os_reason(error: OSError) -> str:
    """The reason of an OSError in words, with the path it concerns when that is another one."""
    reason = error.strerror or str(error)
    return f"{reason} ({error.filename})" if error.filename else reason


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
