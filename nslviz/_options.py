"""Declared options: what each field of a configuration dataclass accepts, stated once on the field.

    epochs: int = option(5, "positive_int", help="...", group="optimisation")

`check_options(config)` checks every declared field of an instance (its messages name the field
and what was expected); `nslviz.cli.common.add_option_arguments` turns the same declarations into
`--field-name` arguments, with the argument type of the kind (`ARGUMENT_TYPES` there) and the
choices, help and group declared here.

Kinds (`KINDS`):
    "choice"           one of `choices` (a tuple, or a function giving them, as a registry does)
    "flag"             True or False
    "positive_int"     an integer >= 1              "nonnegative_int"  an integer >= 0
    "positive"         a finite number > 0          "nonnegative"      a finite number >= 0
    "fraction"         a number in [0, 1)
    "seed"             an integer from 0 to MAX_SEED
    "path"             a folder path: a non-empty string
    None               checked by the class itself (several fields together, or a structured value)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Iterable

from ._checks import check_choice, check_flags, check_positive, check_seed, is_number

KINDS = ("choice", "flag", "positive_int", "nonnegative_int", "positive", "nonnegative", "fraction", "seed", "path")


@dataclass(frozen=True)
class Option:
    """What one field accepts, and how the command line shows it."""
    kind: str | None
    choices: tuple | Callable[[], Iterable] = ()  # kind "choice": the values, or a function giving them
    label: str | None = None                      # the name messages use ("temperature T"); default the field's
    optional: bool = False                        # None is accepted (a default resolved later)
    help: str | None = None                       # the command line's help text
    group: str | None = None                      # the command line's argument group
    metavar: str | None = None

    def allowed(self) -> tuple:
        """The choices of a "choice" option, a registry's as of now."""
        return tuple(self.choices() if callable(self.choices) else self.choices)


def option(default=dataclasses.MISSING, kind: str | None = None, choices=(), *,
           default_factory=dataclasses.MISSING, **declared) -> dataclasses.Field:
    """A dataclass field with its `Option` in the field's metadata (key "option")."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown option kind {kind!r}; expected one of {', '.join(map(repr, KINDS))}")
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={"option": Option(kind, choices, **declared)})


def declared_options(cls) -> dict[str, Option]:
    """{field name: Option} of a dataclass (or an instance), in field order."""
    return {f.name: f.metadata["option"] for f in dataclasses.fields(cls) if "option" in f.metadata}


def check_option(name: str, declared: Option, value) -> None:
    """`value` is what `declared` accepts, else a ValueError naming the field and what was expected."""
    name = declared.label or name
    kind = declared.kind
    if kind is None or (declared.optional and value is None):
        return
    if kind == "choice":
        check_choice(name, value, declared.allowed())
    elif kind == "flag":
        check_flags(**{name: value})
    elif kind in ("positive_int", "nonnegative_int"):
        check_positive(name, value, integer=True, minimum=1 if kind == "positive_int" else 0)
    elif kind in ("positive", "nonnegative"):
        check_positive(name, value, minimum=None if kind == "positive" else 0)
    elif kind == "fraction":
        if not (is_number(value) and 0 <= value < 1):
            raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    elif kind == "seed":
        check_seed(value, name)
    elif kind == "path":
        if not (isinstance(value, str) and value.strip()):
            raise ValueError(f"{name} must be a folder path (a non-empty string), got {value!r}")


def check_options(config) -> None:
    """Check every declared field of a dataclass instance, in field order."""
    for name, declared in declared_options(config).items():
        check_option(name, declared, getattr(config, name))
