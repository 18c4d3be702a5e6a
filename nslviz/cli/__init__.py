"""The command line: `python -m nslviz <command>`. Each command is one module here with
`add_parser(subparsers)` (which sets `run=` as a default) and wraps one function of the library,
the same one the notebooks call. Add a command by adding its module name to COMMANDS (and, if the
module adds a second command, that command to OTHER_COMMANDS)."""

COMMANDS = [
    "spiral",
    "export_notebook",
    "train",
    "compare",
    "implicit_reg",
    "residual_ode",
    "higher_order",
    "neighbors",
    "regress",
    "heads",
    "race",
    "few_shot",
    "estimators",
    "check_data",
    "site",
]
OTHER_COMMANDS = {"knn-toy": "regress"}   # commands added by another command's module


def command_module(command: str) -> str | None:
    """The module of COMMANDS that adds `command` (`export-notebook`: export_notebook), None if none does."""
    module = OTHER_COMMANDS.get(command, command.replace("-", "_"))
    return module if module in COMMANDS else None
