"""Declared options (nslviz._options): one declaration per TrainConfig field, read by the config's
checks and by `python -m nslviz train`'s arguments."""
import argparse
import dataclasses

import pytest

from nslviz._options import KINDS, Option, check_option, declared_options, option
from nslviz.cli.common import ARGUMENT_TYPES
from nslviz.training.config import TrainConfig


def _train_parser() -> argparse.ArgumentParser:
    from nslviz.__main__ import build_parser
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices["train"]


def test_every_kind_has_a_command_line_type():
    assert set(ARGUMENT_TYPES) | {"choice"} == set(KINDS)


def test_every_field_is_declared_and_is_an_argument_in_its_group():
    declared = declared_options(TrainConfig)
    assert list(declared) == [f.name for f in dataclasses.fields(TrainConfig)]
    from nslviz.cli.train import SPECIAL_ARGUMENTS
    parser = _train_parser()
    groups = {action.dest: group.title for group in parser._action_groups for action in group._group_actions}
    assert {name: groups.get(name) for name in declared} == {name: o.group for name, o in declared.items()}
    for name, declared_option in declared.items():
        action = next(a for a in parser._actions if a.dest == name)
        assert action.option_strings == [f"--{name.replace('_', '-')}"]
        if name in SPECIAL_ARGUMENTS:
            assert action.type is SPECIAL_ARGUMENTS[name]["type"]
        elif declared_option.kind == "choice" and not callable(declared_option.choices):
            assert tuple(action.choices) == declared_option.allowed()
        elif declared_option.kind not in ("choice", None):
            assert action.type is ARGUMENT_TYPES[declared_option.kind]


def test_the_command_line_reaches_every_field_it_did_not_before():
    from nslviz.cli.train import config_from_args
    from nslviz.__main__ import build_parser
    args = build_parser().parse_args(["train", "--lr-decay", "0.5", "--decay-everything", "true"])
    config = config_from_args(args)
    assert (config.lr_decay, config.decay_everything) == (0.5, True)


@pytest.mark.parametrize("kind, value, message", [
    ("choice", "c", "unknown x 'c'; expected one of 'a', 'b'"),
    ("flag", "yes", "x must be True or False, got 'yes'"),
    ("positive_int", 0, "x must be >= 1, got 0"),
    ("positive_int", 1.5, "x must be an integer, got 1.5"),
    ("nonnegative_int", -1, "x must be >= 0, got -1"),
    ("positive", 0.0, "x must be > 0, got 0.0"),
    ("positive", float("inf"), "x must be finite, got inf"),
    ("nonnegative", -0.5, "x must be >= 0, got -0.5"),
    ("fraction", 1.0, r"x must be in \[0, 1\), got 1.0"),
    ("seed", -1, "x must be an integer from 0 to 2147483647, got -1"),
    ("path", "", r"x must be a folder path \(a non-empty string\), got ''"),
])
def test_each_kind_names_the_field_and_what_it_expects(kind, value, message):
    declared = Option(kind, choices=("a", "b"))
    with pytest.raises(ValueError, match=f"^{message}$"):
        check_option("x", declared, value)


def test_optional_fields_take_none_and_labels_name_the_field():
    check_option("x", Option("positive_int", optional=True), None)
    with pytest.raises(ValueError, match="entries S must be an integer, got None"):
        check_option("x", Option("positive_int", label="entries S"), None)
    with pytest.raises(ValueError, match="unknown option kind 'number'"):
        option(1, "number")


def _typed(action, text: str):
    """A value of the help text as the argument would parse it."""
    if text == "none" and action.dest == "clip_value":
        return None
    return action.type(text) if action.type is not None else text


def test_the_help_says_where_every_value_comes_from_and_says_it_truly():
    """train --help gives every field's default (or what a missing value means) and the presets that set
    another; the values it prints parse back to the ones the config and the presets use."""
    import re
    from nslviz.training.config import PRESET_FIELDS
    parser = _train_parser()
    no_default = {"init_backbone", "iterations"}          # absent means "none" (a fresh backbone, --epochs)
    for f in dataclasses.fields(TrainConfig):
        action = next(a for a in parser._actions if a.dest == f.name)
        text = " ".join((action.help or "").split())
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if f.name not in no_default:
            assert "default" in text, (f.name, text)
        said = re.search(r"default: ([^;)\s]+)", text)
        if default is not None and "default" not in (declared_options(TrainConfig)[f.name].help or ""):
            value = said.group(1)                          # the generated "default: X"
            assert value == "{}" if f.name == "nsl_options" else _typed(action, value) == default, (f.name, text)
        for preset, fields in PRESET_FIELDS.items():
            if f.name in fields and fields[f.name] != default:
                shown = re.search(rf"\b{preset} ([^\s,;)]+(?:,[\d.]+)*)", text.split("--preset", 1)[1])
                assert shown, (f.name, preset, text)
                value = _typed(action, shown.group(1))
                assert value == pytest.approx(fields[f.name], abs=1e-3) if f.name == "milestones" \
                    else value == fields[f.name], (f.name, preset, text)


def test_every_command_s_help_gives_the_defaults_it_has():
    """One formatter for every command: an option with a default says it (after its help, or as its help),
    a docstring description keeps its lines (its example commands), a one-line description is wrapped."""
    from nslviz.__main__ import build_parser
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in subparsers.choices.items():
        for action in command._actions:
            has_default = action.option_strings and action.nargs != 0 and action.default not in (None, argparse.SUPPRESS, [])
            if has_default:
                assert action.help and "default" in action.help, (name, action.dest, action.help)
            assert "default: )" not in (action.help or "") and "default: ;" not in (action.help or "")
            assert action.help, (name, action.dest)                          # every option says what it does
        command.format_help()                                    # a stray % would fail argparse here
    text = lambda command: " ".join(subparsers.choices[command].format_help().split())      # noqa: E731
    assert "--steps STEPS meta-training iterations (default: 3000)" in text("spiral")
    assert "--folds FOLDS default: 5" in text("regress")
    assert "(default: 0.1 0.3 1)" in text("regress")                                    # a list, as it is typed
    assert "\n    python -m nslviz train --run-dir runs/d --resume" in subparsers.choices["train"].format_help()


def test_the_hand_written_defaults_in_train_s_help_are_those_of_the_code():
    """Defaults that depend on the optimizer or the dataset are written out in the fields' help; they must
    say what OPTIMIZER_DEFAULTS, DEFAULT_ENTRIES and DEFAULT_BATCH_SIZE hold."""
    from nslviz.cli.common import shown_value
    from nslviz.training.config import DEFAULT_BATCH_SIZE, DEFAULT_ENTRIES, OPTIMIZER_DEFAULTS
    helps = {name: " ".join(o.help.split()) for name, o in declared_options(TrainConfig).items() if o.help}
    names = {"adamw": "AdamW", "sgd": "SGD", "adam": "Adam"}
    milestones = ", ".join(f"{names[k]} {shown_value(v['milestones'])}" for k, v in OPTIMIZER_DEFAULTS.items())
    assert f"(default: {milestones})" in helps["milestones"]
    for optimizer, written in {"adamw": "AdamW 0.075", "sgd": "SGD 2e-4", "adam": "Adam 5e-4"}.items():
        assert written in helps["weight_decay"]
        assert float(written.split()[1]) == OPTIMIZER_DEFAULTS[optimizer]["weight_decay"]
    assert "AdamW and Adam 1e-3, SGD 0.1" in helps["lr"]
    assert OPTIMIZER_DEFAULTS["adamw"]["lr"] == OPTIMIZER_DEFAULTS["adam"]["lr"] == 1e-3
    assert OPTIMIZER_DEFAULTS["sgd"]["lr"] == 0.1
    assert f"default: 128, {DEFAULT_BATCH_SIZE['digits']} on digits" in helps["batch_size"]
    assert set(DEFAULT_BATCH_SIZE) == {"digits"}
    assert {DEFAULT_ENTRIES[d] for d in ("cifar10", "cinic10")} == {5000}
    assert {DEFAULT_ENTRIES[d] for d in ("cifar100", "tiny-imagenet", "imagenet64")} == {10000}
    assert {DEFAULT_ENTRIES[d] for d in ("digits", "synthetic")} == {200}
    assert "(default: 5000; 10000 on CIFAR-100, Tiny-ImageNet and ImageNet 64x64; 200 on digits and synthetic)" \
        in helps["entries"]


def test_unread_settings_names_what_no_run_reads():
    from nslviz.training.config import READ_BY, TrainConfig, unread_settings
    vanilla, mn = TrainConfig(method="vanilla"), TrainConfig(method="mn")
    assert unread_settings([vanilla], ["entries", "alpha", "lr", "seed"]) == {
        "entries": "methods mn, mn_ifilm and vanilla_extra", "alpha": "methods mn and mn_ifilm"}
    assert unread_settings([vanilla, mn], ["entries", "alpha"]) == {}
    assert unread_settings([TrainConfig(method="mn_ifilm", backbone="densenet40")], ["transition_ifilm"]) == {}
    assert list(unread_settings([mn], ["transition_ifilm", "ifilm_entries"])) == ["transition_ifilm", "ifilm_entries"]
    assert unread_settings([TrainConfig(optimizer="sgd", method="maxl")], ["momentum", "maxl_hierarchy"]) == {}
    assert list(unread_settings([TrainConfig(epochs=2, iterations=10)], ["epochs", "iterations"])) == ["epochs"]
    assert set(READ_BY) <= {f for f in TrainConfig.__dataclass_fields__}       # every rule names a real field


def _options(parser: argparse.ArgumentParser) -> dict:
    return {action.dest: (action.option_strings, action.default, action.choices, action.help)
            for action in parser._actions}


def test_a_command_built_alone_is_the_command_built_with_all_the_others():
    """`python -m nslviz train ...` builds only train's parser (its start-up skips the other commands'
    imports): every command, so built, has the same options, defaults, choices and help as in the
    full parser, and the name of a command that is not one builds them all (the error lists them)."""
    from nslviz.__main__ import build_parser
    from nslviz.cli import COMMANDS, command_module

    def choices(parser):
        return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices

    everything = choices(build_parser())
    assert {command_module(name) for name in everything} == set(COMMANDS)
    for name, full in everything.items():
        alone = choices(build_parser(name))
        assert set(alone) <= set(everything) and name in alone
        assert _options(alone[name]) == _options(full) and alone[name].description == full.description
        assert full.get_default("run").__module__ == f"nslviz.cli.{command_module(name)}"
    assert set(choices(build_parser("trian"))) == set(everything)
    assert command_module("trian") is None


@pytest.mark.slow
def test_a_command_starts_without_the_other_commands_imports():
    """The spiral command's process imports neither scikit-learn nor pandas (the estimators' and the
    tables' commands do); the top-level help, which lists every command, does."""
    import subprocess
    import sys
    probe = ("import sys, contextlib, io; from nslviz.__main__ import main\n"
             "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()): main(sys.argv[1:])\n"
             "print(sorted({'sklearn', 'pandas'} & set(sys.modules)))")
    alone = subprocess.run([sys.executable, "-c", probe, "spiral", "--help"], capture_output=True, text=True, timeout=120)
    every = subprocess.run([sys.executable, "-c", probe, "--help"], capture_output=True, text=True, timeout=120)
    assert alone.stdout.strip().splitlines()[-1] == "[]", alone.stdout + alone.stderr
    assert every.stdout.strip().splitlines()[-1] == "['pandas', 'sklearn']", every.stdout + every.stderr


def test_the_mn_defaults_are_the_official_recipe():
    """Every MN image run reads these; a changed default changes them all without a word (the values of
    the official code, docs/official-code.md: AdamW lr 1e-3, weight decay 0.075, T = 0.2, α = 0.05,
    half the entries dropped in training, 10 iFiLM entries, one second-order inner step)."""
    config = TrainConfig()
    assert {name: getattr(config, name) for name in ("optimizer", "lr", "weight_decay", "temperature", "alpha",
                                                    "entry_dropout", "ifilm_entries", "inner_steps", "first_order")} == {
        "optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.075, "temperature": 0.2, "alpha": 0.05,
        "entry_dropout": 0.5, "ifilm_entries": 10, "inner_steps": 1, "first_order": False}
