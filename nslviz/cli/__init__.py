"""The command line: `python -m nslviz <command>`. Each command is one module here with
`add_parser(subparsers)` (which sets `run=` as a default) and wraps one function of the library,
the same one the notebooks call. Add a command by adding its module name to COMMANDS."""

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
