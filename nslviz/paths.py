"""Where data and runs live, wherever a notebook or command is started from.

data: $NSLVIZ_DATA, else the repository's data/ folder (an editable install or a clone), else ./data.
runs: $NSLVIZ_RUNS, else the repository's runs/ folder, else ./runs.
A folder given to a notebook (run_dir): `from_root`.
"""
from __future__ import annotations

import os
from pathlib import Path


def repository_root() -> Path | None:
    """The clone this package was imported from (it has pyproject.toml next to nslviz/), if any."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() and (root / "nslviz").is_dir() else None


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The dataset folder: `root` when given, else as the module docstring says."""
    if root is not None:
        return Path(root)
    if os.environ.get("NSLVIZ_DATA"):
        return Path(os.environ["NSLVIZ_DATA"])
    repo = repository_root()
    return repo / "data" if repo is not None else Path("data")


def runs_root() -> Path:
    """The folder of the default run directories (runs/<name>), as the module docstring says."""
    if os.environ.get("NSLVIZ_RUNS"):
        return Path(os.environ["NSLVIZ_RUNS"])
    repo = repository_root()
    return repo / "runs" if repo is not None else Path("runs")


def from_root(path: str | os.PathLike | None) -> Path | None:
    """A folder given to a notebook (its `run_dir`): a relative path is taken from the repository's root,
    where runs/ is, so JupyterLab (which runs a notebook in notebooks/), papermill and export-notebook
    started from the root all name the same folder; outside a clone, from the working folder. None
    and "" (the notebook's default folder) give None."""
    if path is None or not str(path).strip():
        return None
    if not isinstance(path, (str, os.PathLike)):         # papermill's -p run_dir 2024 arrives as the number
        raise ValueError(f"run_dir must be a folder path (text), got {path!r}; papermill turns -p run_dir {path} "
                         f"into a number, -r run_dir {path} passes the text")
    path, repo = Path(path).expanduser(), repository_root()
    return path if path.is_absolute() or repo is None else repo / path
