"""python -m nslviz <command> [options]; `python -m nslviz <command> --help` for each command."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

# Transparent huge pages for torch's large CPU allocations: the dynamic NSL convolutions allocate
# K-times-larger intermediates at every step, and without THP their first-touch page faults cost about a
# third of a stage-1 CNN-9 layer's time (benchmarks/bench_nsl.py). torch reads the variable once, when it
# is first imported, which no command has done yet (`import nslviz` loads no torch); set
# THP_MEM_ALLOC_ENABLE=0 to opt out.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from .cli import COMMANDS, command_module  # noqa: E402  (after the variable, as every import that may load torch)
from .cli.common import explain_defaults  # noqa: E402


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Every command's parser, or, given a command's name, only that command's: each command's module
    imports what it runs, and a command then starts without the others' imports (scipy.stats,
    scikit-learn and pandas, among others: about two seconds). An unknown name builds them all, so
    that the error lists them."""
    module = command_module(command) if command else None
    parser = argparse.ArgumentParser(prog="python -m nslviz",
                                     description="Meta-Neighborhoods and Neural Similarity Learning experiments.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in [module] if module else COMMANDS:
        importlib.import_module(f"nslviz.cli.{name}").add_parser(subparsers)
    for subparser in subparsers.choices.values():      # one way of showing descriptions and defaults
        explain_defaults(subparser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    _slow_progress_bars_in_logs()
    command = next((word for word in argv if command_module(word)), None) or \
        next((word for word in argv if not word.startswith("-")), None)     # none: argparse names the bad word
    parser = build_parser(command)
    before = argv[:argv.index(command)] if command in argv else []
    if before and not {"-h", "--help"} & set(before):   # `--json spiral`: the command's options come after it
        parser.exit(2, f"python -m nslviz {command}: error: {' '.join(before)} comes before the command; options go "
                       f"after it: python -m nslviz {command} {' '.join(before)} ...\n")
    args, unknown = parser.parse_known_args(argv)
    if unknown:                                         # named by the command's own usage, not the top level's
        args.subparser.error(f"unrecognized arguments: {' '.join(unknown)}")
    from ._threads import match_threads_to_cpus                            # after parsing: --help loads no torch
    from .training.distributed import launched_rank, launched_world_size
    match_threads_to_cpus()                                               # a container's CPU quota, not the host's cores
    from .datasets.images import DatasetError
    from .training.rundir import RunDirectoryError
    with warnings.catch_warnings():                     # the command's own way of showing them, for its run only
        _show_run_directory_warnings_as_lines(args.subparser.prog)
        try:
            return int(args.run(args) or 0)
        except (RunDirectoryError, FileNotFoundError, DatasetError) as error:   # a run directory busy, damaged,
            # holding another run or not resumable; a missing, incomplete or damaged dataset (where it was
            # looked for, what is wrong, how to get it): the message alone, no usage; exit code 2
            args.subparser.exit(2, f"{args.subparser.prog}: error: {_message(error)}\n")
        except ValueError as error:                     # a bad value: the usage, then the error; exit code 2
            if launched_world_size() > 1 and launched_rank() > 0:   # torchrun: rank 0 prints the usage, the
                # others the error in one line (it may be theirs alone: data that rank 0 wrote, say)
                args.subparser.exit(2, f"{args.subparser.prog}: error (rank {launched_rank()}): {_message(error)}\n")
            args.subparser.error(_message(error))
        except (ConnectionError, FloatingPointError, OSError) as error:   # a failed download, a diverged run,
            # a disk that is full or a folder that cannot be written: exit 1
            print(f"{args.subparser.prog}: error: {_message(error)}", file=sys.stderr)
            return 1
    return 2


def _message(error: BaseException) -> str:
    """The error's message and its notes (a replacing run that failed says that the previous run was kept)."""
    return " ".join([str(error), *getattr(error, "__notes__", ())])


LOG_PROGRESS_INTERVAL = 30   # seconds between two redraws of a progress bar written to a file or a pipe


def _slow_progress_bars_in_logs() -> None:
    """A command whose stderr is not a terminal (`> log 2>&1`, nohup, a batch job) redraws its progress
    bars at most every LOG_PROGRESS_INTERVAL seconds, where a terminal gets ten redraws a second: a
    day's training would otherwise write a million of them into the log. Each epoch's end still redraws
    its bar with the loss and the validation accuracy, so the log keeps one line an epoch. tqdm reads
    its TQDM_* defaults when it is first imported, which no command has done yet; a TQDM_MININTERVAL
    already set is kept. (A command called in a process that has imported tqdm is left as it is.)"""
    stderr = sys.stderr
    if "tqdm" not in sys.modules and not (stderr is not None and stderr.isatty()):
        os.environ.setdefault("TQDM_MININTERVAL", str(LOG_PROGRESS_INTERVAL))


def _show_run_directory_warnings_as_lines(prog: str) -> None:
    """A repaired run directory (a torn metrics line dropped, a stale lock taken over) is said in one
    line, `<command>: warning: ...`, not with the warning's source location; other warnings as usual."""
    from .training.rundir import RunDirectoryWarning
    show = warnings.showwarning

    def show_warning(message, category, *args, **kwargs):
        if issubclass(category, RunDirectoryWarning):
            print(f"{prog}: warning: {message}", file=sys.stderr, flush=True)
        else:
            show(message, category, *args, **kwargs)

    warnings.showwarning = show_warning


if __name__ == "__main__":
    sys.exit(main())
