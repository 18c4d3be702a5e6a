"""Shared pieces of the training tests: the tiny digits run and an in-process interruption."""
import pytest

from nslviz.training.config import TrainConfig
from nslviz.training.trainer import train

# digits at 16x16: 192 training images = 6 batches of 32 an epoch, 12 iterations in 2 epochs
TINY = dict(dataset="digits", backbone="convnet4", epochs=2, batch_size=32, train_limit=192, eval_limit=96,
            entries=40, checkpoint_every=4, device="cpu", augment="crop", image_size=16)


# summary fields that differ between two runs with the same numbers
VOLATILE = {"seconds", "setup_seconds", "run_dir"}


def stable(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in VOLATILE}


def finished_run(tmp_path_factory, name: str, **changes):
    """(run_dir, summary) of the TINY run with `changes`, trained once in a fresh temporary folder (for
    module-scoped fixtures)."""
    run_dir = tmp_path_factory.mktemp(name) / "run"
    return run_dir, train(TrainConfig(**{**TINY, **changes}), run_dir, progress=False)


class Killed(Exception):
    pass


def interrupt_at(config, run_dir, iteration: int) -> None:
    """Train until optimiser step `iteration` is done, then stop as a kill would: the work after the
    last checkpoint is lost, and a `resume=True` run must redo it."""
    def stop(i):
        if i == iteration:
            raise Killed

    with pytest.raises(Killed):
        train(config, run_dir, progress=False, on_iteration=stop)
