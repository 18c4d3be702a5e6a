"""Image experiments as the notebooks (03, 04, 07) and the CLI run them: several methods, same settings.

`compare_methods(config, ["vanilla", "mn"])` trains one run per method into runs/<group>/<method>
(resuming any run that was cut off, skipping any that already finished) and returns their summaries.
`quick_config(config)` is what quick mode (`NSLVIZ_QUICK=1`, `make test`, Binder) turns a paper run
into: the embedded `digits` set, a small backbone, a few epochs, CPU.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..paths import runs_root
from .config import TrainConfig
from .rundir import RunDirectory
from .trainer import default_run_name, train

QUICK_BACKBONES = {"resnet56_64": "convnet4_64", "resnet29_64": "convnet4_64", "densenet40_64": "convnet4_64",
                   "convnet4_64": "convnet4_64", "cnn10": "cnn9"}


def quick_config(config: TrainConfig, *, epochs: int = 4) -> TrainConfig:
    """The same experiment, small enough for a laptop CPU in well under a minute: digits (1,797 real
    handwritten 8x8 digits bundled with scikit-learn) upsampled to 16x16 (32x32 for the 64-pixel
    backbones, whose stride-2 stem brings them to 16x16 as well), a small backbone, a few epochs,
    S = 100, CPU."""
    backbone = QUICK_BACKBONES.get(config.backbone, "cnn9" if config.backbone.startswith("cnn") else "convnet4")
    return dataclasses.replace(
        config, dataset="digits", backbone=backbone, epochs=min(config.epochs, epochs), batch_size=64,
        entries=100, device="cpu", amp="off", compile=False, augment="crop", train_limit=None,
        eval_limit=None, image_size=32 if backbone.endswith("_64") else 16, checkpoint_every=1000,
        val_size=None, download=False)


def run_group_dir(config: TrainConfig, group: str | None = None) -> Path:
    return runs_root() / (group or default_run_name(config).replace(f"-{config.method}-", "-compare-"))


def compare_methods(config: TrainConfig, methods: list[str], *, group_dir: str | Path | None = None,
                    progress: bool = True) -> dict[str, dict]:
    """Train `config` once per method (vanilla, mn, mn_ifilm, ...) into group_dir/<method>; a run that
    already finished is read back, one that was cut off is resumed. Returns {method: summary}."""
    group_dir = Path(group_dir) if group_dir is not None else run_group_dir(config)
    summaries = {}
    for method in dict.fromkeys(methods):
        run_config = dataclasses.replace(config, method=method)
        run_dir = group_dir / method
        existing = RunDirectory(run_dir, create=False)
        summary = existing.read_summary() if existing.summary_path.exists() else None
        if summary is not None and _same_run(existing, run_config):
            summaries[method] = summary
            continue
        resume = existing.checkpoint_path.exists() and _same_run(existing, run_config)
        summaries[method] = train(run_config, run_dir, resume=resume, progress=progress)
    return summaries


def _same_run(run: RunDirectory, config: TrainConfig) -> bool:
    """Does the run directory hold this experiment (ignoring settings that do not change results)?"""
    import json

    from .trainer import RESUMABLE_CHANGES
    if not run.config_path.exists():
        return False
    stored = TrainConfig.from_dict(json.loads(run.config_path.read_text())).to_dict()
    wanted = config.to_dict()
    return all(stored[k] == wanted[k] or k in RESUMABLE_CHANGES or wanted[k] is None for k in wanted)
