"""Argument types and output helpers shared by the commands."""
from __future__ import annotations

import argparse
import dataclasses
import json
import math

from .._checks import MAX_SEED, cpu_count, seed_error
from .._options import declared_options
from ..parameters import truth_value


def _number(parse, accept, expected: str):
    """An argparse type: `parse` the text, keep it if `accept(value)`, else say what was expected."""
    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    convert.__name__ = expected.replace(" ", "_")      # argparse names the type in some messages
    return convert


def integer_at_least(minimum: int):
    """An argparse type for integers >= `minimum`."""
    return _number(int, lambda v: v >= minimum, f"an integer >= {minimum}")


positive_int = _number(int, lambda v: v >= 1, "a positive integer")
seed_value = _number(int, lambda v: seed_error("seed", v) is None, f"an integer from 0 to {MAX_SEED}")
thread_count = _number(int, lambda v: 1 <= v <= cpu_count(), f"an integer from 1 to {cpu_count()} (the CPUs of this machine)")
nonnegative_int = integer_at_least(0)
positive_float = _number(float, lambda v: math.isfinite(v) and v > 0, "a positive number")
nonnegative_float = _number(float, lambda v: math.isfinite(v) and v >= 0, "a number >= 0")
fraction = _number(float, lambda v: 0 <= v < 1, "a number in [0, 1)")


def boolean(text: str) -> bool:
    """An argparse type for a switch: true/false, yes/no, on/off or 1/0."""
    value = truth_value(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value


def add_progress_argument(parser) -> None:
    """--no-progress: a command that runs for more than a few seconds shows tqdm bars on stderr, its
    --json object on stdout unaffected; this turns them off (a log file, a notebook)."""
    parser.add_argument("--no-progress", action="store_true", default=False,
                        help="no progress bars (they go to stderr, apart from the --json output)")


def option_flag(name: str) -> str:
    """The command-line option of a config field: "dictionary_init" -> "--dictionary-init"."""
    return f"--{name.replace('_', '-')}"


def refuse_given(args, names, switch: str, verb: str, why: str) -> None:
    """A ValueError naming the options among `names` given in `args` (a parser whose defaults are
    left out of the namespace) although `switch` sets them itself; see `refuse_chosen`."""
    refuse_chosen([name for name in names if name in vars(args)], switch, verb, why)


def refuse_chosen(given, switch: str, verb: str, why: str) -> None:
    """A ValueError naming the options `given` (field names) although `switch` sets them itself:
    "--quick chooses --dataset itself (why); leave it out, or leave out --quick"."""
    given = [option_flag(name) for name in given]
    if given:
        raise ValueError(f"{switch} {verb.format(', '.join(given))} itself ({why}); leave "
                         f"{'them' if len(given) > 1 else 'it'} out, or leave out {switch}")


def folder_path(text: str) -> str:
    """An argparse type for a run directory or output folder: any path but an empty one (which
    would write into the current folder or the default runs/ folder without saying so)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder path, got an empty one ''")
    return text


# The argparse type of each kind of declared option (nslviz._options.KINDS); "choice" options take
# argparse's `choices` instead, or plain text when the choices come from a registry
ARGUMENT_TYPES = {"flag": boolean, "positive_int": positive_int, "nonnegative_int": nonnegative_int,
                  "positive": positive_float, "nonnegative": nonnegative_float, "fraction": fraction,
                  "seed": seed_value, "path": folder_path}


def shown_value(value) -> str:
    """A value as it is typed on the command line: true/false, 0.5,0.75, none, a JSON object."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return ",".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value)
    if value is None:
        return "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


class HelpFormatter(argparse.HelpFormatter):
    """Every command's --help: a description with line breaks is kept as written (a docstring), one
    without is wrapped."""

    def _fill_text(self, text, width, indent):
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def _noted(text: str | None, note: str) -> str | None:
    """A help `text` with `note` after it: inside the brackets that end the text when they hold its
    default ("(default: 10; --preset nsl none)"), else in brackets of its own; `note` alone without text.
    argparse %-formats the help: a % in the note is escaped."""
    note = note.replace("%", "%%")
    if not note or not text:
        return text or note or None
    last = text.rsplit("(", 1)[-1]
    return f"{text[:-1]}; {note})" if last.startswith("default") and last.endswith(")") else f"{text} ({note})"


def help_with_default(action: argparse.Action) -> str | None:
    """An option's help followed by its default, unless the help already says it or there is none to
    say (None, a switch, an option left out of the namespace when not given)."""
    text, default = action.help, action.default
    if (text == argparse.SUPPRESS or "default" in (text or "") or action.nargs == 0 or not action.option_strings
            or default is None or default is argparse.SUPPRESS or default in ([], (), {}, "")):
        return text
    shown = " ".join(map(shown_value, default)) if isinstance(default, (list, tuple)) else shown_value(default)
    return _noted(text, f"default: {shown}")


def explain_defaults(parser: argparse.ArgumentParser) -> None:
    """Give every option of `parser` its default in its help (help_with_default), and HelpFormatter."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        action.help = help_with_default(action)


def default_help(name: str, declared, default, presets: dict[str, dict]) -> str:
    """Where a field's value comes from when its option is left out: its default (unless its help
    already says it, or it has none) and the presets that set another value."""
    parts = [] if default is None or "default" in (declared.help or "") else [f"default: {shown_value(default)}"]
    others = [f"{preset} {shown_value(fields[name])}" for preset, fields in presets.items()
              if name in fields and fields[name] != default]
    if others:
        parts.append(f"--preset {', '.join(others)}")
    return "; ".join(parts)


def add_option_arguments(groups: dict, config_class, special: dict[str, dict] | None = None,
                         presets: dict[str, dict] | None = None) -> None:
    """A `--field-name` argument for every declared field of `config_class` (nslviz._options), in the
    argument group its declaration names (`groups`: {title: argparse argument group}), with its help
    and where its value comes from when it is left out (its default; `presets`: {preset: {field:
    value}} the values recipes set instead); `special` gives the add_argument keywords of the fields
    whose command-line form differs from their kind's (a JSON object, 'none')."""
    special, presets = special or {}, presets or {}
    defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                for f in dataclasses.fields(config_class)}
    for name, declared in declared_options(config_class).items():
        if name in special:
            form = special[name]
        elif declared.kind == "choice":
            form = {} if callable(declared.choices) else {"choices": declared.allowed()}
        elif declared.kind is None:                     # checked by the class: the text as given
            form = {}
        else:
            form = {"type": ARGUMENT_TYPES[declared.kind]}
        labels = {"help": _noted(declared.help, default_help(name, declared, defaults[name], presets)),
                  "metavar": declared.metavar}
        groups[declared.group].add_argument(option_flag(name),
                                            **{k: v for k, v in labels.items() if v is not None}, **form)


def validation_text(summary: dict) -> str:
    """'best val 0.9861, epoch 4' from a train summary; 'no validation split, last epoch 4' when the run
    had none (val_size 0: its val_acc is None)."""
    if summary["val_acc"] is None:
        return f"no validation split, last epoch {summary['best_epoch']}"
    return f"best val {summary['val_acc']:.4f}, epoch {summary['best_epoch']}"


def emit_json(obj: dict) -> None:
    """The `--json` contract: one JSON object, alone on the last line of the output."""
    print(json.dumps(obj, sort_keys=True, default=lambda v: v.item() if hasattr(v, "item") else str(v)),
          flush=True)
