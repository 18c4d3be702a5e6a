"""Notebook outputs never land in git: .gitattributes routes every notebook through the nbstripout
filter that `make setup` configures, the filter strips outputs and execution counts but keeps the
cell ids, and the notebooks as committed (git's index, or the files outside a git checkout) have none."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def in_git_checkout() -> bool:
    return shutil.which("git") is not None and subprocess.run(
        ["git", "rev-parse", "--is-inside-work-tree"], cwd=ROOT, capture_output=True).returncode == 0


def committed_text(notebook: Path) -> str:
    """The notebook as git will commit it (the index, where the filter has already run), else the file."""
    if in_git_checkout():
        staged = subprocess.run(["git", "show", f":{notebook.relative_to(ROOT).as_posix()}"], cwd=ROOT,
                                capture_output=True, text=True)
        if staged.returncode == 0:
            return staged.stdout
    return notebook.read_text()


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_has_no_outputs(notebook):
    cells = json.loads(committed_text(notebook))["cells"]
    dirty = [i for i, c in enumerate(cells) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{notebook.name}: code cells {dirty} are committed with outputs or execution counts"


def test_gitattributes_and_make_setup_install_the_filter():
    attributes = (ROOT / ".gitattributes").read_text().split()
    assert "filter=nbstripout" in attributes and attributes[attributes.index("filter=nbstripout") - 1] == "*.ipynb"
    makefile = (ROOT / "Makefile").read_text()
    assert "git config filter.nbstripout.clean" in makefile and "nbstripout --keep-id" in makefile


@pytest.mark.skipif(not shutil.which("git"), reason="needs git")
def test_the_filter_strips_outputs_on_git_add_and_keeps_the_cell_ids(tmp_path):
    pytest.importorskip("nbstripout", reason="nbstripout is a dev dependency (make setup installs it)")
    stripper = f"'{sys.executable}' -m nbstripout --keep-id"            # the Makefile's filter command
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", f"filter.nbstripout.clean={stripper}",
           "-c", "filter.nbstripout.smudge=cat", "-c", "filter.nbstripout.required=true"]
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    shutil.copy(ROOT / ".gitattributes", tmp_path / ".gitattributes")
    notebook = json.loads(NOTEBOOKS[0].read_text())
    code = next(c for c in notebook["cells"] if c["cell_type"] == "code")
    code["execution_count"] = 7
    code["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["12 MB of figures\n"]}]
    (tmp_path / "nb.ipynb").write_text(json.dumps(notebook))
    subprocess.run(git + ["add", "nb.ipynb", ".gitattributes"], cwd=tmp_path, check=True, capture_output=True)
    staged = json.loads(subprocess.run(["git", "show", ":nb.ipynb"], cwd=tmp_path, capture_output=True,
                                       text=True, check=True).stdout)
    staged_code = next(c for c in staged["cells"] if c["cell_type"] == "code")
    assert staged_code["outputs"] == [] and staged_code["execution_count"] is None
    assert [c["id"] for c in staged["cells"]] == [c["id"] for c in notebook["cells"]]
    assert "12 MB of figures" in (tmp_path / "nb.ipynb").read_text()          # the working copy keeps them
