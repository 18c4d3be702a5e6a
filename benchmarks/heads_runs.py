"""Is it the layer or the joint training? MN's head alone on fixed features, over several seeds, on CPU
(nslviz.experiments.heads). Prints one JSON object:

    python benchmarks/heads_runs.py --seeds 0 1 2 3 4 5 6 7 8 9 --steps 3000 --threads 1

"clusters": for 6 clusters a class and for 1 (4 classes in R^16, `run_clusters`), vanilla's cosine
classifier and MN's head with the paper's randomly initialised dictionary, trained on the same batches.
"digits": for every seed, the CLI's vanilla command (`python -m nslviz train --dataset digits --backbone
convnet4 --method vanilla --epochs 5 --seed S`); the two heads trained again on that run's frozen backbone
(`experiments.heads.frozen_feature_heads`, batch 32 as the command's); and three MN runs of the same
command: from scratch (`digits_joint_mn`, the CLI's MN command), from the vanilla run's backbone trained
on (`--init-backbone`), and on it frozen (`--init-backbone --freeze-backbone true`), each with its own
dictionary's state (`dictionary_state` on the test set) and against the vanilla run of the same seed.
Every figure is test accuracy; "vs_vanilla" is MN's paired difference to vanilla (the vanilla head
trained beside it, or for the MN runs the vanilla run of the same seed; points, mean over seeds with a
95 % confidence interval) and the seeds on which MN is above / level with / below it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
from pathlib import Path

import torch

from nslviz.analysis.finetuning import dictionary_state
from nslviz.experiments.heads import frozen_feature_heads
from nslviz.training.config import TrainConfig
from nslviz.experiments.heads import run_clusters
from nslviz.training.rundir import load_run
from nslviz.training.trainer import train
from _results import compare, save_result  # noqa: E402  (benchmarks/_results.py)

HEAD_FIGURES = ("vanilla_acc", "mn_acc", "mn_acc_before_finetune", "attended_value_acc", "attention_entropy", "step_size")


def collect(results: list[dict]) -> dict:
    """Per-seed lists, their means and MN against the vanilla head, from `HeadsResult.summary()`s."""
    per_seed = {name: [r[name] for r in results] for name in HEAD_FIGURES}
    return {"per_seed": per_seed, "mean": {k: round(statistics.mean(v), 4) for k, v in per_seed.items()},
            "vs_vanilla": compare(per_seed["mn_acc"], per_seed["vanilla_acc"]),
            "mean_seconds": round(statistics.mean(r["seconds"] for r in results), 1)}


MN_RUNS = {"digits_joint_mn": {},                                          # the CLI's command
           "digits_mn_on_vanilla_backbone": {"init_backbone": True},       # two stages, trained jointly on
           "digits_mn_on_frozen_vanilla_backbone": {"init_backbone": True, "freeze_backbone": True}}
MN_FIGURES = ("test_acc", "test_acc_before_finetune", "attended_value_acc", "attention_entropy", "step_size")


def digits_runs(seeds: list[int], epochs: int, steps: int) -> dict:
    """For every seed: the CLI's vanilla run; the two heads on its frozen backbone; and three MN runs
    of the same length: from scratch, from the vanilla backbone trained on, and on it frozen."""
    vanilla, frozen = [], []
    mn = {label: {name: [] for name in MN_FIGURES} for label in MN_RUNS}
    with tempfile.TemporaryDirectory() as runs:
        for seed in seeds:
            base = TrainConfig(dataset="digits", backbone="convnet4", epochs=epochs, seed=seed)
            vanilla_dir = Path(runs) / f"vanilla-{seed}"
            vanilla.append(train(dataclasses.replace(base, method="vanilla"), vanilla_dir, progress=False)["test_acc"])
            batch_size = json.loads((vanilla_dir / "config.json").read_text())["batch_size"]     # resolved
            frozen.append(frozen_feature_heads(vanilla_dir, steps=steps, batch_size=batch_size, seed=seed).summary())
            for label, options in MN_RUNS.items():
                config = dataclasses.replace(base, method="mn", freeze_backbone=options.get("freeze_backbone", False),
                                             init_backbone=str(vanilla_dir) if options.get("init_backbone") else None)
                summary = train(config, Path(runs) / f"{label}-{seed}", progress=False)
                model, _, data = load_run(Path(runs) / f"{label}-{seed}")
                state = dictionary_state(model, data.test)
                figures = {"test_acc": summary["test_acc"], "test_acc_before_finetune": summary["test_acc_before_finetune"],
                           "attended_value_acc": state["attended_value_acc"],
                           "attention_entropy": state["attention_entropy"], "step_size": state["step_size"]}
                for name in MN_FIGURES:
                    mn[label][name].append(figures[name])
            print("digits", seed, "vanilla", round(vanilla[-1], 4), "heads on the frozen backbone",
                  {k: round(v, 4) for k, v in frozen[-1].items() if k in HEAD_FIGURES},
                  {label: round(v["attended_value_acc"][-1], 4) for label, v in mn.items()}, flush=True)
    result = {"digits_vanilla_test_acc": vanilla,
              "digits_frozen_vanilla_backbone": {**collect(frozen), "epochs": epochs, "batch_size": frozen[0]["batch_size"]}}
    for label, figures in mn.items():
        result[label] = {"per_seed": figures, "mean": {k: round(statistics.mean(v), 4) for k, v in figures.items()},
                         "vs_vanilla": compare(figures["test_acc"], vanilla)}
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=3000, help="optimiser steps of the heads")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of every digits run (vanilla and the three MN runs)")
    parser.add_argument("--skip-digits", action="store_true", help="only the clusters")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads of the digits runs")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/heads_cpu.json")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    result = {"benchmark": "heads", "seeds": args.seeds, "steps": args.steps, "clusters": {}}
    for per_class in (6, 1):
        summaries = [run_clusters(clusters_per_class=per_class, steps=args.steps, seed=seed).summary()
                     for seed in args.seeds]
        result["clusters"][f"{per_class}_per_class"] = {**collect(summaries), "setting": {
            k: summaries[0][k] for k in ("classes", "clusters_per_class", "dim", "noise", "train_size", "test_size",
                                         "entries", "batch_size")}}
        print("clusters", per_class, result["clusters"][f"{per_class}_per_class"]["mean"], flush=True)
    if not args.skip_digits:
        result.update(digits_runs(args.seeds, args.epochs, args.steps))
    result["threads"] = torch.get_num_threads()
    return save_result(result, "heads_cpu", args.out)


if __name__ == "__main__":
    main()
