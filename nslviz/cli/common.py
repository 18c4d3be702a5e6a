"""Argument types and output helpers shared by the commands."""
from __future__ import annotations

import argparse
import json
import math

from .._checks import MAX_SEED, cpu_count, seed_error


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
fraction = _number(float, lambda v: 0 <= v < 1, "a number in [0, 1)")


def folder_path(text: str) -> str:
    """An argparse type for a run directory or output folder: any path but an empty one (which
    would write into the current folder or the default runs/ folder without saying so)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder path, got an empty one ''")
    return text


def emit_json(obj: dict) -> None:
    """The `--json` contract: one JSON object, alone on the last line of the output."""
    print(json.dumps(obj, sort_keys=True, default=lambda v: v.item() if hasattr(v, "item") else str(v)),
          flush=True)
