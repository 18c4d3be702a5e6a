"""A module's training mode for the length of a block."""
from __future__ import annotations

import contextlib

import torch.nn as nn


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Run a block with `model` in eval mode (BatchNorm's running statistics, no dropout), then give it
    back the training mode it had, also when the block fails."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
