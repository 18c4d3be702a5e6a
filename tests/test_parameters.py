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


def test_dicts_from_papermill_text_need_every_key():
    keys = ("k", "layers")
    assert parameter_dict("grid", "{'k': [5, 10], 'layers': [2]}", keys) == {"k": [5, 10], "layers": [2]}
    assert parameter_dict("grid", {"k": [1], "layers": [2]}, keys) == {"k": [1], "layers": [2]}
    with pytest.raises(ValueError, match="grid must have the keys k, layers, got k"):
        parameter_dict("grid", "{'k': [5]}", keys)
    with pytest.raises(ValueError, match="grid must be a dict with the keys k, layers, got 'k=5'"):
        parameter_dict("grid", "k=5", keys)
