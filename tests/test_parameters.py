"""List and dict notebook parameters as `papermill -p` passes them (text), as the notebooks use them."""
import numpy as np
import pytest

from nslviz import parameter_dict, parameter_list


@pytest.mark.parametrize("value,kind,expected", [
    ([0.01, 0.1], float, [0.01, 0.1]),
    ("0.01,0.1", float, [0.01, 0.1]),                 # papermill -p temperatures 0.01,0.1
    ("[0.01, 0.1]", float, [0.01, 0.1]),
    ("0.01 0.1", float, [0.01, 0.1]),
    (0.3, float, [0.3]),                               # one number: a one-item grid
    ("5", int, [5]),
    ((np.int64(1), np.int64(2)), int, [1, 2]),
    ("vanilla,mn", str, ["vanilla", "mn"]),
    ("['vanilla', 'mn']", str, ["vanilla", "mn"]),
    ("dynamic_dns", str, ["dynamic_dns"]),             # not split into letters
    ("", str, []), (None, str, []),
])
def test_lists_from_papermill_text_or_python_values(value, kind, expected):
    assert parameter_list("p", value, kind) == expected


@pytest.mark.parametrize("value,kind,match", [
    ("0.1,abc", float, r"temperatures must be a list of numbers \(from papermill: -p temperatures a,b,c\), got 'abc'"),
    ([1.5], int, "temperatures must be a list of integers"),
    ([True], float, "temperatures must be a list of numbers"),
    ([1], str, "temperatures must be a list of names"),
])
def test_bad_items_name_the_parameter(value, kind, match):
    with pytest.raises(ValueError, match=match):
        parameter_list("temperatures", value, kind)


@pytest.mark.parametrize("value,kind,expected", [
    ("0,3", "seed", [0, 3]), (3, "seed", [3]),               # papermill -p seeds 3: one seed
    ("10,100", "positive_int", [10, 100]), ("0,5", "nonnegative_int", [0, 5]), ("0.1,1", "positive", [0.1, 1.0]),
    ("joint,vanilla", ("joint", "vanilla", "warmup"), ["joint", "vanilla"]),
])
def test_lists_of_declared_values(value, kind, expected):
    assert parameter_list("p", value, kind) == expected


@pytest.mark.parametrize("value,kind,match", [
    ("10,-3", "positive_int", "sweep_entries must be >= 1, got -3"),
    ("0.1,-2", "positive", r"sweep_entries must be > 0, got -2.0"),
    ("1.5", "positive_int", "sweep_entries must be a list of integers .* got 1.5 in it"),
    ("-1", "seed", "sweep_entries must be an integer from 0 to 2147483647, got -1"),
    ("jiont", ("joint", "vanilla"), "unknown sweep_entries 'jiont'; expected one of 'joint', 'vanilla'"),
    ("", "positive_int", r"sweep_entries must hold at least one value \(from papermill: -p sweep_entries a,b,c\), got ''"),
    ([], ("joint",), "sweep_entries must hold at least one value"),
    ("1", "positiv_int", "unknown option kind 'positiv_int'"),
    ("True", "flag", "parameter_list takes a kind of numbers, 'path' or a tuple of choices, got 'flag'"),
    ("a", "choice", "parameter_list takes a kind of numbers, 'path' or a tuple of choices, got 'choice'"),
])
def test_a_bad_item_of_a_declared_list_is_named_with_what_was_expected(value, kind, match):
    with pytest.raises(ValueError, match=match):
        parameter_list("sweep_entries", value, kind)


def test_dicts_from_papermill_text_need_every_key():
    keys = ("k", "layers")
    assert parameter_dict("grid", "{'k': [5, 10], 'layers': [2]}", keys) == {"k": [5, 10], "layers": [2]}
    assert parameter_dict("grid", {"k": [1], "layers": [2]}, keys) == {"k": [1], "layers": [2]}
    with pytest.raises(ValueError, match="grid must have the keys k, layers, got k"):
        parameter_dict("grid", "{'k': [5]}", keys)
    with pytest.raises(ValueError, match="grid must be a dict with the keys k, layers, got 'k=5'"):
        parameter_dict("grid", "k=5", keys)


def test_a_relative_run_dir_given_to_a_notebook_is_taken_from_the_repository_root(tmp_path, monkeypatch):
    """JupyterLab runs a notebook in notebooks/, papermill and export-notebook from where they are
    started: a relative run_dir names one folder under the repository root for all of them."""
    import json
    from pathlib import Path

    from nslviz.paths import from_root, repository_root
    root = repository_root()
    monkeypatch.chdir(tmp_path)
    assert from_root("runs/g") == root / "runs/g" and from_root(None) is None and from_root(" ") is None
    assert from_root(tmp_path / "g") == tmp_path / "g"
    with pytest.raises(ValueError, match="run_dir must be a folder path .text., got 2024; papermill turns "
                                         "-p run_dir 2024 into a number, -r run_dir 2024 passes the text"):
        from_root(2024)                                                     # not a TypeError from pathlib
    for name in ("03_cifar", "04_imagenet", "05_learned_neighbors", "07_nsl_cifar", "09_why_the_dictionary_learns"):
        cells = json.loads((Path(root) / "notebooks" / f"{name}.ipynb").read_text())["cells"]
        code = "".join(line for cell in cells if cell["cell_type"] == "code" for line in cell["source"])
        assert "nslviz.paths.from_root(run_dir)" in code, name                # every use of run_dir goes through it
        assert code.count("run_dir)") == code.count("from_root(run_dir)"), name
