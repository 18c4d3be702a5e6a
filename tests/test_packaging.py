"""The environment files agree with each other: pyproject's dependencies are pinned in constraints.txt,
the Binder environment installs every runtime dependency at the pinned version (CPU torch), and the
notebooks follow the quick-mode contract."""
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.strip().lstrip("- ").strip()
        if "==" in line and not line.startswith(("#", "-")):
            name, version = line.split("==", 1)
            pins[name.lower().replace("_", "-")] = version.split("+")[0]
    return pins


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_dependency_is_pinned_in_constraints():
    pins = _pins((ROOT / "constraints.txt").read_text().splitlines())
    project = _pyproject()["project"]
    names = [_name(r) for r in project["dependencies"]]
    names += [_name(r) for extra in project["optional-dependencies"].values() for r in extra]
    missing = sorted(n for n in set(names) if n not in pins)
    assert not missing, f"not pinned in constraints.txt: {missing}"
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"


def test_binder_environment_has_cpu_torch_and_every_runtime_dependency_at_the_pinned_version():
    text = (ROOT / "binder" / "environment.yml").read_text()
    assert "torch==2.14.1+cpu" in text and "download.pytorch.org/whl/cpu" in text
    binder, pins = _pins(text.splitlines()), _pins((ROOT / "constraints.txt").read_text().splitlines())
    for requirement in _pyproject()["project"]["dependencies"]:
        name = _name(requirement)
        assert name in binder, f"binder/environment.yml lacks {name}"
        assert binder[name] == pins[name], f"{name}: binder {binder[name]} != constraints {pins[name]}"
    for name, version in binder.items():                               # the indirect pins too
        if name not in ("torch", "torchvision"):
            assert pins.get(name) == version, f"{name}: binder {version} != constraints {pins.get(name)}"
    post_build = (ROOT / "binder" / "postBuild").read_text()
    assert "set -e" in post_build and "pip install --no-deps -e ." in post_build


# the CUDA libraries of the GPU torch wheel installed here (Binder installs the CPU wheel, which needs
# none) and setuptools (conda's Python brings it)
_NOT_FOR_BINDER = ("nvidia-", "cuda-", "triton", "setuptools")
_LINUX_PY311 = {"python_version": "3.11", "python_full_version": "3.11.0", "sys_platform": "linux",
                "platform_system": "Linux", "os_name": "posix", "platform_machine": "x86_64",
                "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="Binder's Python is 3.11: its closure is read from a 3.11 install")
def test_binder_environment_pins_every_package_its_packages_pull_in():
    """The Binder image holds the dependency closure of its packages, each pinned, so that an image built
    later has the same set: the closure is worked out from the installed packages' metadata (the same
    versions, constraints.txt's), on Linux with Python 3.11 as Binder's."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    binder = {canonicalize_name(name) for name in _pins((ROOT / "binder" / "environment.yml").read_text().splitlines())}
    seen, todo = set(), [(name, "") for name in sorted(binder)]      # (package, one of its extras asked for)
    while todo:
        name, extra = todo.pop()
        if (name, extra) in seen or name.startswith(_NOT_FOR_BINDER):
            continue
        seen.add((name, extra))
        for text in metadata.distribution(name).requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({**_LINUX_PY311, "extra": extra}):
                todo += [(canonicalize_name(requirement.name), wanted) for wanted in ("", *requirement.extras)]
    missing = sorted({name for name, _ in seen} - binder)
    assert not missing, f"binder/environment.yml lacks what its packages pull in: {missing}"


def test_top_level_environment_installs_the_package_with_constraints():
    text = (ROOT / "environment.yml").read_text()
    assert "-c constraints.txt" in text and "-e .[dev]" in text


@pytest.mark.parametrize("notebook", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_contract(notebook):
    stored = json.loads(notebook.read_text())
    cells = stored["cells"]
    ids = [c.get("id") for c in cells]
    assert (stored["nbformat"], stored["nbformat_minor"]) >= (4, 5) and all(ids) and len(set(ids)) == len(ids), \
        "every cell needs its own id (nbformat 4.5; papermill warns otherwise)"
    code = [c for c in cells if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "commit with outputs cleared"
    first = code[0]
    assert "parameters" in first["metadata"].get("tags", []), "first code cell must be tagged 'parameters'"
    assert re.search(r"^quick = None", "".join(first["source"]), re.M), "parameters cell must hold quick = None"
    second = "".join(code[1]["source"])
    assert "quick_mode(quick)" in second, "second code cell must resolve quick mode"
    check = second.find("nslviz.check_parameters(globals()")              # papermill -p with an unknown name
    assert 0 <= check < second.index("quick_mode(quick)"), "second code cell must check the parameters first"
    assert all(line.startswith(("import ", "from ")) or not line.strip() for line in second[:check].splitlines()), \
        "only imports may come before the parameter check"
    for i, cell in enumerate(code):
        assert len("".join(cell["source"]).splitlines()) <= 25, f"code cell {i} is longer than 25 lines"
    heading = "".join(cells[0]["source"]).splitlines()[0]
    assert heading.startswith(f"# {notebook.name[:2]} ·"), f"the title {heading!r} does not carry the file's number"
    for line in "".join(first["source"]).splitlines():                  # every parameter says what it is
        assert not re.match(r"^\w+ = ", line) or "#" in line, f"parameter without a comment: {line!r}"


@pytest.mark.parametrize("notebook", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_papermill_sees_every_parameter(notebook):
    # `papermill --help-notebook` lists what papermill's parser finds; it skips a line with a second
    # "=" (e.g. in its comment), and such a parameter disappears from the help
    import ast

    import papermill
    source = "".join(next(c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code")["source"])
    assigned = [t.id for node in ast.parse(source).body if isinstance(node, ast.Assign) for t in node.targets]
    assert assigned and sorted(papermill.inspect_notebook(str(notebook))) == sorted(assigned)


def test_importing_nslviz_loads_no_torch_and_leaves_the_environment_alone():
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    code = ("import os, sys, nslviz; print(os.environ.get('THP_MEM_ALLOC_ENABLE'), 'torch' in sys.modules); "
            "nslviz.NSConv2d; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["None", "False", "True"]             # the layers still load on first use


@pytest.mark.parametrize("preset, expected", [(None, "1"), ("0", "0")])
def test_the_command_line_turns_on_huge_pages_before_torch_loads_unless_the_user_chose(preset, expected):
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if preset is not None:
        env["THP_MEM_ALLOC_ENABLE"] = preset
    code = "import os, sys, nslviz.__main__; print(os.environ['THP_MEM_ALLOC_ENABLE'], 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == [expected, "False"]


def test_a_test_session_removes_the_run_folder_it_made(tmp_path):
    """conftest.py points NSLVIZ_RUNS at a fresh temporary folder; the session must delete it, or
    every `make test` leaves ~80 MB of runs behind (a CI machine once ran out of disk this way)."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider",
                    "tests/test_packaging.py"], cwd=ROOT, env=env, capture_output=True, check=True)
    assert not list(tmp_path.glob("nslviz-test-runs-*"))


def test_parallel_units_of_work_keep_notebooks_that_share_runs_together():
    """`make test` runs pytest-xdist workers on whole files; notebooks 03, 04, 05 and 07 and the tests
    that read their runs must stay in one unit (one worker, in order), every other file is its own unit."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
    root_conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(root_conftest)
    unit = root_conftest.unit_of_work
    shared = {unit(f"notebooks/{name}::Cell 1") for name in ("03_cifar.ipynb", "04_imagenet.ipynb",
                                                             "05_learned_neighbors.ipynb", "07_nsl_cifar.ipynb")}
    marked = {str(path.relative_to(ROOT)) for path in (ROOT / "tests").glob("test_*.py")
              if re.search(r"^(pytestmark = |@)pytest\.mark\.after_notebooks", path.read_text(), re.M)}
    assert marked == set(root_conftest.AFTER_NOTEBOOKS_FILES)
    shared |= {unit(f"{path}::test_x") for path in marked}
    assert shared == {"notebooks/shared-runs"}
    assert unit("notebooks/08_nsl_implicit_regularization.ipynb::Cell 2") == \
        "notebooks/08_nsl_implicit_regularization.ipynb"
    assert unit("tests/test_nsl.py::test_a[1]") == "tests/test_nsl.py"


def test_make_names_a_python_that_differs_from_the_virtual_environments(tmp_path):
    """`make test PYTHON=python3.12` with a .venv made by Python 3.11 used to install into the old
    .venv silently; it now stops, naming both versions and what to do."""
    if not (ROOT / ".venv" / "bin" / "python").exists():
        pytest.skip("needs the repository's .venv (make setup)")
    fake = tmp_path / "python9"
    fake.write_text("#!/bin/sh\necho 9.1\n")
    fake.chmod(0o755)
    done = subprocess.run(["make", "-s", "-C", str(ROOT), "check-python", f"PYTHON={fake}"], capture_output=True, text=True)
    assert done.returncode == 2 and f"PYTHON={fake} is Python 9.1" in done.stderr and "rm -rf .venv" in done.stderr
    old = tmp_path / "python3.10"                  # too old for nslviz: rebuilding .venv with it would fail
    old.write_text('#!/bin/sh\ncase "$*" in *"(3, 11)"*) exit 1;; *) echo 3.10;; esac\n')
    old.chmod(0o755)
    done = subprocess.run(["make", "-s", "-C", str(ROOT), "check-python", f"PYTHON={old}"], capture_output=True, text=True)
    assert done.returncode == 2 and "needs Python 3.11 or newer" in done.stderr and "rm -rf" not in done.stderr
    same = subprocess.run(["make", "-s", "-C", str(ROOT), "check-python", f"PYTHON={ROOT / '.venv' / 'bin' / 'python'}"],
                          capture_output=True, text=True)
    assert same.returncode == 0, same.stderr


def test_the_declared_license_is_the_license_file():
    """pyproject.toml's license is the text in LICENSE, which setuptools puts in every build."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    assert (ROOT / "LICENSE").read_text().splitlines()[0] == f"{declared} License"


def test_make_clean_removes_what_the_commands_regenerate_and_keeps_the_training_runs(tmp_path):
    """`make clean` deletes the demo's pages, the site and pytest's cache; runs/, where training runs
    (hours on a GPU, resumable) live, is kept and named."""
    (tmp_path / "Makefile").write_text((ROOT / "Makefile").read_text())
    for folder in ("out", "site", ".pytest_cache", "runs/cifar10-resnet29-mn"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "file").write_text("x")
    done = subprocess.run(["make", "-s", "-C", str(tmp_path), "clean"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Makefile", "runs"]
    assert (tmp_path / "runs/cifar10-resnet29-mn/file").read_text() == "x" and "runs/ kept" in done.stdout


def test_a_virtual_environment_linked_in_as_dotvenv_is_ignored(tmp_path):
    """`.venv/` in .gitignore matched only a folder: a .venv linked in from another checkout showed as
    untracked, one `git add -A` from a commit."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text((ROOT / ".gitignore").read_text())
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / ".venv").symlink_to(tmp_path / "elsewhere")
    done = subprocess.run(["git", "-C", str(tmp_path), "check-ignore", "-q", ".venv"])
    assert done.returncode == 0
