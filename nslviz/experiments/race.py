"""The race between the backbone and the induced dictionary (MN sec. 2.3; docs/dictionary-race.md).

The paper trains the backbone θ, the classifier φ, the step α and the dictionary {(k_j, v_j)} together
from random keys. The keys get a useful meta-gradient only once the features z_i they are compared
with hold still and lie near them; while θ moves fast, their gradient is noise, and once θ and φ fit
the training set there is little loss left to carry a signal. Each *arm* changes one thing about that
race, on the official recipe otherwise (AdamW 1e-3, decoupled decay, clipping, S entries, T = 0.2):

    joint             the paper, as coded
    backbone_lr_0.2   the backbone's learning rate × 0.2 (TrainConfig.backbone_lr_scale)
    backbone_lr_0.05  × 0.05
    warmup            the backbone's weights frozen for the first `warmup` iterations (dictionary_warmup)
    data_started      the dictionary starts at S training images' features and labels (dictionary_init="data")

Slowing or pausing the backbone costs accuracy by itself, so every arm that changes the backbone's
training has a vanilla twin with the same change ("vanilla_backbone_lr_0.2", ...); MN is compared
with its twin, seed by seed.

    results = run_race(["digits"], ["joint", "warmup", "vanilla", "vanilla_warmup"], seeds=[0, 1])
    report = race_report(results)          # paired differences with 95 % intervals

The same function runs notebook 09, `python -m nslviz race` and benchmarks/mn_race.py.
"""
from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path

from tqdm.auto import tqdm

from .._checks import check_choice, check_positive
from ..analysis.paired import paired_difference
from ..paths import runs_root
from ..training.config import TrainConfig
from .compare import compare_runs
from ..training.rundir import RunDirectory

# MN arm -> (TrainConfig overrides, the vanilla twin it is compared with); "warmup" stands for the warm-up length
MN_ARMS = {
    "joint": ({}, "vanilla"),
    "backbone_lr_0.2": ({"backbone_lr_scale": 0.2}, "vanilla_backbone_lr_0.2"),
    "backbone_lr_0.05": ({"backbone_lr_scale": 0.05}, "vanilla_backbone_lr_0.05"),
    "warmup": ({"dictionary_warmup": "warmup"}, "vanilla_warmup"),
    "data_started": ({"dictionary_init": "data"}, "vanilla"),
}
VANILLA_ARMS = {
    "vanilla": {},
    "vanilla_backbone_lr_0.2": {"backbone_lr_scale": 0.2},
    "vanilla_backbone_lr_0.05": {"backbone_lr_scale": 0.05},
    "vanilla_warmup": {"dictionary_warmup": "warmup"},
}
ARMS = (*MN_ARMS, *VANILLA_ARMS)
QUICK_ARMS = ("joint", "warmup", "data_started", "vanilla")      # notebook 09's quick mode, of every arm
RACE_DATASETS = ("digits", "synthetic")


def race_config(dataset: str = "digits", *, iterations: int = 800, seed: int = 0, entries: int = 200) -> TrainConfig:
    """The runs every arm starts from: the MN preset (AdamW lr 1e-3, decay 0.075, clipping at 10,
    T = 0.2, α = 0.05) with the 4-layer ConvNet on 16×16 images of an embedded set, batch 32,
    `iterations` steps with the lr ×0.1 at 75 %, S = `entries`, random crops, CPU float32."""
    check_choice("race dataset", dataset, RACE_DATASETS)
    check_positive("iterations", iterations, integer=True, minimum=1)
    return TrainConfig.from_preset(
        "mn", dataset=dataset, backbone="convnet4", method="mn", iterations=iterations, milestones=(0.75,),
        batch_size=32, image_size=16, entries=entries, augment="crop", device="cpu", amp="off", seed=seed,
        checkpoint_every=500)


def _arm(arm: str) -> tuple[str, dict]:
    """(method, TrainConfig overrides) of one arm; "warmup" stands for the warm-up length."""
    check_choice("race arm", arm, ARMS)
    return ("mn", MN_ARMS[arm][0]) if arm in MN_ARMS else ("vanilla", VANILLA_ARMS[arm])


def arm_config(base: TrainConfig, arm: str, *, warmup: int = 200) -> TrainConfig:
    """`base` with one arm's method and changes; "warmup" arms freeze the backbone for `warmup` iterations."""
    method, overrides = _arm(arm)
    overrides = {k: (warmup if v == "warmup" else v) for k, v in overrides.items()}
    return dataclasses.replace(base, method=method, **overrides)


def quick_arms(arms) -> list[str]:
    """Notebook 09's quick mode: QUICK_ARMS in place of every arm (the notebook's default), the arms
    asked when they are fewer."""
    return list(QUICK_ARMS) if set(arms) == set(ARMS) else list(arms)


def check_race_lengths(arms, iterations: int, warmup: int) -> None:
    """ValueError unless iterations >= 1 and, when a warm-up arm is among `arms`, 0 < warmup <
    iterations (the backbone trains after it). run_race checks it; notebook 09 before its first run."""
    check_positive("iterations", iterations, integer=True, minimum=1)
    if any("warmup" in _arm(arm)[1].values() for arm in arms) and not 0 < warmup < iterations:
        raise ValueError(f"warmup must be between 1 and iterations - 1 = {iterations - 1} (the backbone trains "
                         f"after it), got {warmup}")


def run_race(datasets=RACE_DATASETS, arms=ARMS, seeds=range(5), *, iterations: int = 800, warmup: int = 200,
             root: str | Path | None = None, progress: bool = True,
             overwrite: bool = False) -> dict[str, dict[str, list[dict]]]:
    """Train every (dataset, seed, arm) into root/<dataset>/seed<k>/<arm> (default root: runs/mn-race);
    a finished run is read back, a cut one resumed, one with other settings refused unless `overwrite`
    (compare_runs). Returns
    {dataset: {arm: [summary of each seed, in `seeds` order]}}."""
    root = Path(root) if root is not None else runs_root() / "mn-race"
    seeds, arms, datasets = (list(dict.fromkeys(values)) for values in (seeds, arms, datasets))
    for name, values in (("seeds", seeds), ("arms", arms), ("datasets", datasets)):
        if not values:
            raise ValueError(f"the race needs at least one of its {name}, got none")
    check_race_lengths(arms, iterations, warmup)
    results = {dataset: {arm: [] for arm in arms} for dataset in datasets}
    jobs = [(dataset, seed) for dataset in datasets for seed in seeds]
    for dataset, seed in tqdm(jobs, desc="race: dataset x seed", disable=not progress):
        base = race_config(dataset, iterations=iterations, seed=seed)
        configs = {arm: arm_config(base, arm, warmup=warmup) for arm in arms}
        group = root / dataset / f"seed{seed}"
        summaries = compare_runs(configs, group, progress=progress, overwrite=overwrite,
                                 elsewhere="another root (notebook 09's run_dir, CLI --root)")
        for arm in arms:        # the folder it is in now (a summary records where it was written)
            results[dataset][arm].append({**summaries[arm], "run_dir": str(group / arm)})
    return results


def race_traces(summaries: list[dict]) -> list[list[dict]]:
    """The metrics.jsonl rows of each run (one list per seed) of one arm, read from its run directory."""
    return [RunDirectory(summary["run_dir"], create=False).read_metrics() for summary in summaries]


def race_report(results: dict[str, dict[str, list[dict]]]) -> dict:
    """Per dataset and arm: the mean test accuracy (%), and for MN arms the paired differences over seeds
    (points, mean and 95 % interval): MN − its vanilla twin, after − before finetuning; the attended
    values' accuracy (per seed, and its mean with a 95 % interval) and the last epoch's step size α and
    keys'/values' signal-to-noise, as means."""
    report = {}
    for dataset, arms in results.items():
        report[dataset] = {}
        for arm, summaries in arms.items():
            accuracy = [s["test_acc"] for s in summaries]
            entry = {"seeds": [s["seed"] for s in summaries], "test_acc": [round(a, 4) for a in accuracy],
                     "mean_test_acc": round(100 * statistics.mean(accuracy), 2)}
            if arm in MN_ARMS:
                before = [s["test_acc_before_finetune"] for s in summaries]
                attended = [s["test_attended_value_acc"] for s in summaries]
                last = [trace[-1] for trace in race_traces(summaries)]
                entry.update(
                    mean_test_acc_before_finetune=round(100 * statistics.mean(before), 2),
                    after_minus_before=paired_difference(accuracy, before),
                    attended_value_acc=round(100 * statistics.mean(attended), 2),
                    attended_value_acc_per_seed=[round(a, 4) for a in attended],
                    attended_value_acc_ci95=_interval(attended),
                    final_step_size=round(statistics.mean(row["step_size"] for row in last), 4),
                    final_keys_snr=_mean_of(last, "keys_snr"), final_values_snr=_mean_of(last, "values_snr"))
                twin = MN_ARMS[arm][1]
                if twin in arms:
                    entry["vanilla_twin"] = twin
                    entry["minus_vanilla_twin"] = paired_difference(accuracy, [s["test_acc"] for s in arms[twin]])
            report[dataset][arm] = entry
    return report


def _interval(values: list[float]) -> list[float] | None:
    """95 % Student-t interval of the mean accuracy, in points, within [0, 100] (an accuracy's mean lies
    there, so the cut interval still covers it; with two seeds t = 12.7 would reach far past both ends)."""
    if len(values) < 2:
        return None
    low, high = paired_difference(values, [0.0] * len(values))["ci95_points"]
    return [max(low, 0.0), min(high, 100.0)]


def _mean_of(rows: list[dict], key: str) -> float | None:
    present = [row[key] for row in rows if key in row]
    return round(statistics.mean(present), 4) if present else None


def measured_race(path: str | Path | None = None) -> dict | None:
    """The measured race of benchmarks/results/mn_race_cpu.json (every arm, paired seeds, both sets), as
    benchmarks/mn_race.py wrote it; None where the file is absent (an installed package, no clone)."""
    import json

    from ..paths import repository_root
    if path is None:
        root = repository_root()
        if root is None:
            return None
        path = root / "benchmarks" / "results" / "mn_race_cpu.json"
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None
