"""Intra-op thread control for small workloads."""
from __future__ import annotations

import contextlib

import torch

from ._checks import check_threads


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Run a block with `threads` torch intra-op CPU threads (None: unchanged), then restore the
    setting. Tiny tensors (the spiral, tabular MLPs, unit tests) run fastest on one thread, and on a
    shared CPU several times faster: idle OpenMP threads spin at every barrier."""
    if threads is not None:
        check_threads("threads", threads)
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
