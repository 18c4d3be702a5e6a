"""Where data and runs live, wherever a notebook or command is started from.

data: $NSLVIZ_DATA, else the repository's data/ folder (an editable install or a clone), else ./data.
runs: $NSLVIZ_RUNS, else the repository's runs/ folder, else ./runs.
"""
from __future__ import annotations

import os
from pathlib import Path


def repository_root() -> Path | None:
    """The clone this package was imported from (it has pyproject.toml next to nslviz/), if any."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() and (root / "nslviz").is_dir() else None


def data_root(root: str | os.PathLike | None = None) -> Path:
    if root is not None:
        return Path(root)
    if os.environ.get("NSLVIZ_DATA"):
        return Path(os.environ["NSLVIZ_DATA"])
    repo = repository_root()
    return repo / "data" if repo is not None else Path("data")


def runs_root() -> Path:
    if os.environ.get("NSLVIZ_RUNS"):
        return Path(os.environ["NSLVIZ_RUNS"])
    repo = repository_root()
    return repo / "runs" if repo is not None else Path("runs")
