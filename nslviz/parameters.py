"""Notebook parameters as papermill passes them.

`papermill -p NAME VALUE` hands a notebook an int, a float, a bool, None or plain text, never a list
or a dict: `-p temperatures 0.01,0.1` arrives as the text "0.01,0.1". The notebooks read their list
and dict parameters through these two functions, which take the notebook's own value, one number,
or that text ("0.01,0.1", "0.01 0.1", "[0.01, 0.1]", "{'k': [5, 10]}"), and name the parameter when
the value is none of these.

papermill only warns about a NAME the notebook does not have, and then runs the whole notebook with
its defaults. Every notebook's second code cell calls `check_parameters(globals(), ...)`, which stops the
run there, naming the unknown parameter and the notebook's own, and a value of another kind than the
default ("ten" or 2.5 where the default is 3000).

What a value must be is said once, in the words of `nslviz._options` ("positive_int", "seed", ... or a
tuple of choices): by the configuration that cell builds, else by the cell itself, through
`check_parameters(globals(), head_steps="positive_int")` or `parameter_list("seeds", seeds, "seed")`.
So a bad value is named before anything trains, not by a later cell after minutes.
"""
from __future__ import annotations

import ast
import re
from typing import Callable, Iterable

from ._checks import is_integer, is_number
from ._options import KINDS, Option, check_option

_INT_KINDS, _FLOAT_KINDS = ("positive_int", "nonnegative_int", "seed"), ("positive", "nonnegative", "fraction")


def _declared(accepts: str | tuple) -> Option:
    """An `nslviz._options` kind ("positive_int", ...) or a tuple of choices, as an Option."""
    if not isinstance(accepts, tuple) and accepts not in KINDS:
        raise ValueError(f"unknown option kind {accepts!r}; expected one of {', '.join(map(repr, KINDS))} or a tuple")
    return Option("choice", tuple(accepts)) if isinstance(accepts, tuple) else Option(accepts)


def parameter_list(name: str, value, kind: Callable | str | tuple = float) -> list:
    """`value` as a list of `kind` (float, int or str): a list or tuple, a single value, or text.
    `kind` an `nslviz._options` kind of numbers, "path", or a tuple of choices: each item must be one,
    and the list holds at least one ("positive_int": integers >= 1; ("a", "b"): names among these)."""
    check = None
    if isinstance(kind, (str, tuple)):
        check = _declared(kind)
        if check.kind in ("flag", "choice") and not isinstance(kind, tuple):   # no list of these to convert to
            raise ValueError(f"parameter_list takes a kind of numbers, 'path' or a tuple of choices, got {kind!r}")
        kind = int if check.kind in _INT_KINDS else float if check.kind in _FLOAT_KINDS else str
    if isinstance(value, str):
        items = _parse_text(value)
        if not isinstance(items, (list, tuple)):
            items = [items]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    elif value is None:
        items = []
    else:
        items = [value]
    values = [_convert(name, item, kind) for item in items]
    if check is not None:
        if not values:
            raise ValueError(f"{name} must hold at least one value (from papermill: -p {name} a,b,c), got {value!r}")
        for item in values:
            check_option(name, check, item)
    return values


def parameter_dict(name: str, value, keys: Iterable[str]) -> dict:
    """`value` as a dict with exactly `keys` (a dict, or its text as papermill passes it)."""
    keys = tuple(keys)
    parsed = _parse_text(value) if isinstance(value, str) else value
    if not isinstance(parsed, dict):
        raise ValueError(f"{name} must be a dict with the keys {', '.join(keys)}, got {value!r}")
    if set(parsed) != set(keys):
        raise ValueError(f"{name} must have the keys {', '.join(keys)}, got {', '.join(map(str, parsed))}")
    return dict(parsed)


def _parse_text(text: str):
    text = text.strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    # "0.01,0.1" or "vanilla mn": split on commas and spaces, each part a literal or a word
    parts = [part.strip(" '\"") for part in text.strip("[]()").replace(",", " ").split()]
    values = []
    for part in parts:
        try:
            values.append(ast.literal_eval(part))
        except (ValueError, SyntaxError):
            values.append(part)
    return values


def _convert(name: str, item, kind: Callable):
    if kind is int:
        if is_integer(item) or (is_number(item) and float(item).is_integer()):
            return int(item)
    elif kind is float:
        if is_number(item):
            return float(item)
    elif kind is str:
        if isinstance(item, str) and item:
            return item
    else:
        return kind(item)
    expected = {int: "integers", float: "numbers", str: "names"}[kind]
    raise ValueError(f"{name} must be a list of {expected} (from papermill: -p {name} a,b,c), got {item!r} in it")


# papermill writes the parameters it is given into a new cell after the `parameters` cell, tagged
# `injected-parameters`, whose first line is this comment
INJECTED_HEADER = "# Parameters"


def check_parameters(namespace: dict, **accepts: str | tuple) -> None:
    """Raise ValueError if papermill injected a parameter that the notebook's `parameters` cell does
    not set, or a value of another kind than the parameter's default; then if a parameter named in
    `accepts` holds a value other than its `nslviz._options` kind (head_steps="positive_int").
    `namespace`: the notebook's globals(), whose `In` (IPython's list of executed cells) holds the
    injected cell and, just before it, the parameters cell (none in Jupyter, or papermill without -p)."""
    _check_injected(namespace)
    for name, kind in accepts.items():
        check_option(name, _declared(kind), namespace[name])


def _check_injected(namespace: dict) -> None:
    history = namespace.get("In") or []
    for index in range(len(history) - 1, 0, -1):
        if history[index].splitlines()[:1] == [INJECTED_HEADER]:
            known = _assigned_names(history[index - 1])
            unknown = [name for name in _assigned_names(history[index]) if name not in known]
            if unknown:
                raise ValueError(f"this notebook has no parameter {', '.join(map(repr, unknown))} (given with "
                                 f"papermill -p); its parameters are {', '.join(known)}")
            defaults = _literal_defaults(history[index - 1])
            for name in _assigned_names(history[index]):
                if name in defaults and name in namespace:
                    namespace[name] = _as_default_kind(name, namespace.get(name), defaults[name])
            return


def truth_value(text: str) -> bool | None:
    """true/false, yes/no, on/off or 1/0 (any case, spaces around) as a bool; None for any other text."""
    lowered = text.strip().lower()
    return True if lowered in ("1", "true", "yes", "on") else False if lowered in ("0", "false", "no", "off") else None


def _as_default_kind(name: str, value, default):
    """A value papermill gave as text where the notebook's default is a bool or a number: "false" is
    False (papermill itself converts only True and False); a word where a number belongs is an error.
    A number where the default is a bool or an integer: 1 and 0 are True and False, 3.0 is 3, and any
    other is an error (2.5 steps would fail later inside torch, or run with a bool that is not one);
    so is True or False where the default is a number (range(True) is one step)."""
    if isinstance(default, bool) and is_number(value):
        if value in (0, 1):
            return bool(value)
        raise ValueError(f"parameter {name} must be true or false (the notebook's default is {default}), got {value!r}")
    if is_integer(default) and is_number(value) and not is_integer(value):
        if float(value).is_integer():
            return int(value)
        raise ValueError(f"parameter {name} must be an integer (the notebook's default is {default}), got {value!r}")
    if not isinstance(value, str) and not (isinstance(value, bool) and is_number(default)):
        return value
    if isinstance(default, bool):
        if truth_value(value) is not None:
            return truth_value(value)
        raise ValueError(f"parameter {name} must be true or false (the notebook's default is {default}), got {value!r}")
    if isinstance(default, (int, float)):
        kind = "an integer" if isinstance(default, int) else "a number"
        raise ValueError(f"parameter {name} must be {kind} (the notebook's default is {default}), got {value!r}")
    return value


def _literal_defaults(source: str) -> dict:
    """The parameters cell's `name = <literal>` values (those ast.literal_eval reads)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    defaults = {}
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1 and isinstance(statement.targets[0], ast.Name):
            try:
                defaults[statement.targets[0].id] = ast.literal_eval(statement.value)
            except (ValueError, SyntaxError, TypeError):
                pass
    return defaults


def _assigned_names(source: str) -> list[str]:
    """The names a cell assigns at its top level, in order (`name = ...`, `name: type = ...`)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:                            # IPython magics left in the text: read the lines instead
        return list(dict.fromkeys(re.findall(r"^(\w+)\s*(?::[^=]*)?=(?!=)", source, flags=re.MULTILINE)))
    names = []
    for statement in tree.body:
        targets = statement.targets if isinstance(statement, ast.Assign) else \
            [statement.target] if isinstance(statement, ast.AnnAssign) else []
        for target in targets:
            names += [node.id for node in ast.walk(target) if isinstance(node, ast.Name)]
    return list(dict.fromkeys(names))
