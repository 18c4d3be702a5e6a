"""Write RESULTS.md: every measured table of benchmarks/results/*.json next to the papers' numbers,
each with the command that produced it.

    python benchmarks/make_results.py            # (re)write RESULTS.md  (= make results)
    python benchmarks/make_results.py --check    # exit 1 if RESULTS.md is not what the JSON files give

How a results file becomes a section: its JSON's "benchmark" field names a renderer registered with
`@renders("name")` below (a function from the loaded JSON to markdown lines). A file whose benchmark
has no renderer is still listed, with its scalar fields, so a new benchmark shows up the day its JSON
is committed; give it a renderer of a few lines to get a proper table. The command comes from the
JSON ("command", or "commands" for several) and otherwise from KNOWN_COMMANDS, for files written
before the benchmarks recorded their command line.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
RESULTS_MD = ROOT / "RESULTS.md"
sys.path.insert(0, str(ROOT))  # the paper numbers come from the package in this checkout

_SEEDS_0_9 = "--seeds 0 1 2 3 4 5 6 7 8 9"
_DIGITS_MN = "python benchmarks/digits_runs.py --family mn --threads 1"
# Commands of the files written before the benchmarks stored their own (benchmarks/_results.py now
# records the command line in every new file).
KNOWN_COMMANDS: dict[str, str] = {
    "augment_cpu": "python benchmarks/bench_augment.py",
    "backbones_cpu": "python benchmarks/bench_backbones.py --threads 1",
    "digits_mn_1500_epochs_cpu": f"{_DIGITS_MN} --epochs 1500 --methods mn --seeds 0 "
                                 "--out benchmarks/results/digits_mn_1500_epochs_cpu.json",
    "digits_mn_cli_cpu": f"{_DIGITS_MN} --recipe cli --epochs 5 --seeds $(seq 0 19)",
    "digits_mn_cli_data_init_cpu": f"{_DIGITS_MN} --recipe cli --epochs 5 --dictionary-init data --alpha 0.5 "
                                   f"--methods vanilla mn mn_ifilm {_SEEDS_0_9} "
                                   "--out benchmarks/results/digits_mn_cli_data_init_cpu.json",
    "digits_mn_cpu": f"{_DIGITS_MN} --epochs 30 {_SEEDS_0_9}",
    "digits_mn_data_init_cpu": f"{_DIGITS_MN} --epochs 30 --dictionary-init data --alpha 0.5 --methods mn mn_ifilm "
                               f"{_SEEDS_0_9} --out benchmarks/results/digits_mn_data_init_cpu.json",
    "digits_mn_long_cpu": f"{_DIGITS_MN} --epochs 200 --methods vanilla mn mn_ifilm --seeds 0 1 2 3 "
                          "--out benchmarks/results/digits_mn_long_cpu.json",
    "digits_mn_long_data_init_cpu": f"{_DIGITS_MN} --epochs 200 --dictionary-init data --alpha 0.5 "
                                    "--methods mn mn_ifilm --seeds 0 1 2 3 "
                                    "--out benchmarks/results/digits_mn_long_data_init_cpu.json",
    "digits_nsl_cpu": "python benchmarks/digits_runs.py --family nsl --seeds 0 1 2 --threads 1",
    "heads_cpu": f"python benchmarks/heads_runs.py {_SEEDS_0_9} --steps 3000 --threads 1",
    "inner_loop_cpu": "python benchmarks/bench_inner_loop.py",
    "nsl_cpu": "THP_MEM_ALLOC_ENABLE=1 python benchmarks/bench_nsl.py --threads 1",
    "nsl_cpu_no_thp": "THP_MEM_ALLOC_ENABLE=0 python benchmarks/bench_nsl.py --threads 1 "
                      "--out benchmarks/results/nsl_cpu_no_thp.json",
    "regression_cpu": "python benchmarks/bench_regression.py",
    "spiral_cpu": "python benchmarks/bench_spiral.py",
    "train_cpu": "python benchmarks/bench_train.py --repeats 9",
    "train_cpu_run2": "python benchmarks/bench_train.py --repeats 9 --out benchmarks/results/train_cpu_run2.json",
    "train_cpu_run3": "python benchmarks/bench_train.py --repeats 9 --out benchmarks/results/train_cpu_run3.json",
}

Renderer = Callable[[dict], list[str]]
RENDERERS: dict[str, Renderer] = {}
TITLES: dict[str, str] = {}
SUBTITLES: dict[str, Callable[[dict], str]] = {}


def renders(benchmark: str, title: str, subtitle: Callable[[dict], str] | None = None) -> Callable[[Renderer], Renderer]:
    """Register the decorated function as the section body of every results file whose "benchmark" is
    `benchmark`; `subtitle(result)` tells files of the same benchmark apart in the index."""
    def register(function: Renderer) -> Renderer:
        RENDERERS[benchmark] = function
        TITLES[benchmark] = title
        if subtitle is not None:
            SUBTITLES[benchmark] = subtitle
        return function
    return register


def describe(result: dict, stem: str) -> str:
    """The index entry of a results file: its benchmark's title, and what sets it apart."""
    benchmark = result.get("benchmark", stem)
    text = TITLES.get(benchmark, f"`{benchmark}` (no renderer yet: its scalar fields are listed)")
    return text + (f": {SUBTITLES[benchmark](result)}" if benchmark in SUBTITLES else "")


# ----------------------------------------------------------------------------------------------
# formatting
# ----------------------------------------------------------------------------------------------

def table(header: list[str], rows: list[list]) -> list[str]:
    """A markdown table; None cells print as an empty cell."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if c is None else str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def pct(x: float | None, digits: int = 1) -> str | None:
    return None if x is None else f"{100 * x:.{digits}f} %"


def num(x, digits: int = 3) -> str:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return json.dumps(x, ensure_ascii=False)
    if isinstance(x, int):
        return f"{x:,}"
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
        return f"{x:.3g}"
    return f"{x:.{digits}g}" if abs(x) < 1 else f"{x:.{digits}f}".rstrip("0").rstrip(".")


def paired(comparison: dict | None) -> str | None:
    """"+0.04 [−0.21, +0.30], 6/6/8" from benchmarks/_results.compare's output."""
    if not comparison:
        return None
    text = ""
    if "mean_difference_points" in comparison:
        text = f"{comparison['mean_difference_points']:+.2f}"
        if comparison.get("ci95_points"):
            low, high = comparison["ci95_points"]
            text += f" [{low:+.2f}, {high:+.2f}]"
        text += ", "
    return text + f"{comparison['above']}/{comparison['level']}/{comparison['below']}"


def command_of(stem: str, result: dict) -> list[str]:
    if isinstance(result.get("commands"), dict):
        return [f"{name}: `{command}`" for name, command in result["commands"].items()]
    command = result.get("command") or KNOWN_COMMANDS.get(stem)
    return [f"`{command}`"] if command else ["(not recorded)"]


# ----------------------------------------------------------------------------------------------
# the papers' numbers
# ----------------------------------------------------------------------------------------------

def paper_mnist_row() -> dict[str, float]:
    from nslviz.paper import mn_table1_row
    return mn_table1_row("convnet4", "mnist")


def base_method(name: str) -> str:
    """mn_ifilm_fixed_values -> mn_ifilm: the paper column of a method with a suffix."""
    for method in ("vanilla_ifilm", "vanilla_extra", "vanilla", "mn_ifilm", "mn"):
        if name == method or name.startswith(method + "_"):
            return method
    return name


# The length a Table 1 row's command gives where the paper has none (notebook 04's default)
MN_GIVEN_LENGTHS = {"imagenet64": " --epochs 40"}


def mean_and_std(mean: float, std: float) -> str:
    """"0.6088 ± 0.0050": both to the decimals of the more precise, as the paper prints them (MN Table 2)."""
    decimals = max(len(repr(x).partition(".")[2]) for x in (mean, std))
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def paper_sections() -> list[str]:
    from nslviz import paper
    lines = ["## The papers' numbers (`nslviz.paper`)", "",
             "Reported on GPUs in the papers; none of these runs has been made with this repository yet "
             "(docs/not-reproduced.md). Each row says the command that would run it.", ""]
    lines += ["### MN Table 1: test accuracy (%), mean of 3 runs", ""]
    lines += table(["backbone", "dataset", *paper.MN_METHOD_COLUMNS, "command (per method M)"],
                   [[b, d, *(f"{a:.2f}" for a in row), f"`python -m nslviz train --preset mn --dataset {d} --backbone {b} "
                                                       f"--method M{MN_GIVEN_LENGTHS.get(d, '')}`"]
                    for (b, d), row in paper.MN_TABLE1.items()])
    lines += ["The MAXL column has its own recipe: `--preset maxl` in place of `--preset mn --method M` "
              "(docs/maxl.md). The paper gives no length for ImageNet 64×64; its row trains notebook 04's 40 "
              "epochs.", "", "### MN Table 3: vanilla baselines, MAXL and MN's inner steps, test accuracy (%)", ""]
    lines += table(["backbone", "dataset", *paper.MN_TABLE3_COLUMNS],
                   [[b, d, *(f"{a:.2f}" for a in row)] for (b, d), row in paper.MN_TABLE3.items()])
    lines += ["Each column is one command, `python -m nslviz train --dataset D --backbone B` and:", ""]
    lines += table(["column", "options"], [[c, f"`{o}`"] for c, o in paper.MN_TABLE3_OPTIONS.items()])
    lines += ["The official SGD baseline's length is known on CIFAR-10/100 only (120k iterations); on the other "
              "rows the two SGD columns ask for one (`--iterations N`), and the paper does not give it.", ""]
    lines += ["### MN Appendix A.4 (Fig. 8): S and T, CIFAR-100, ResNet-29", "",
              "The paper draws these as a figure: accuracy rises with S (at T = 0.2), and 1/T between 3 and 7 is "
              "best (at S = 10000); a learned T falls and the model overfits. One command per axis (docs/cli.md):", "",
              "```",
              "python -m nslviz compare --preset mn --dataset cifar100 --backbone resnet29 --methods mn "
              "--sweep entries 1000 2000 5000 10000",
              "python -m nslviz compare --preset mn --dataset cifar100 --backbone resnet29 --methods mn --entries 10000 "
              "--sweep temperature 0.1 0.14 0.2 0.33 1",
              "python -m nslviz train --preset mn --dataset cifar100 --backbone resnet29 --method mn --entries 10000 "
              "--learn-temperature true",
              "```", "", "Not run yet.", ""]
    lines += ["### MN Table 2: regression test MSE, 5-fold CV", ""]
    lines += table(["dataset", "n", "d", "kNN", "MLP", "MN", "command"],
                   [[name, f"{row['n']:,}", row["d"],
                     *(mean_and_std(*row[k]) for k in ("knn", "vanilla", "mn")),
                     f"`python -m nslviz regress --dataset {name} --json`"] for name, row in paper.MN_TABLE2.items()])
    lines += ["### MN Appendix A.9: sub-category discovery, CIFAR-100 (kNN accuracy %)", ""]
    lines += table(["model", "20 coarse labels", "100 fine labels"],
                   [[m, v["coarse"], v["fine"]] for m, v in paper.MN_SUBCATEGORY_DISCOVERY.items()])
    lines += ["Command: notebook 05, or `python -m nslviz neighbors --run-dir RUN --vanilla-run-dir RUN` on "
              "DenseNet40 runs trained with `--label-kind coarse`.", ""]
    lines += ["### NSL Table 4: CIFAR error (%) of the CNN-9 family", ""]
    variants = sorted({v for v, _ in paper.NSL_TABLE4}, key=list(dict.fromkeys(v for v, _ in paper.NSL_TABLE4)).index)
    lines += table(["variant", "CIFAR-10", "CIFAR-100", "command"],
                   [[v, paper.NSL_TABLE4[v, "cifar10"], paper.NSL_TABLE4[v, "cifar100"],
                     "`python -m nslviz train --preset nsl --dataset cifar10 --backbone "
                     + ("cnn9_plus`" if v == "cnn++" else "cnn9`" if v == "cnn" else f"cnn9 --nsl {v}`")]
                    for v in variants])
    lines += ["CIFAR-100: the same commands with `--dataset cifar100`.", "", "### NSL Table 5: ImageNet error (%) of CNN-10", ""]
    lines += table(["variant", "top-1", "top-5", "parameters"],
                   [[v, t1, t5, p] for v, (t1, t5, p) in paper.NSL_TABLE5.items()])
    lines += ["Command: `python -m nslviz compare --preset nsl --dataset imagenet --backbone cnn10 --variants cnn "
              "cnn++ dynamic_dns`: ImageNet-2012 at 224 px read from its JPEG folders, SGD 0.1, "
              "lr ÷10 at 200k, 375k and 550k of 600k iterations, top-1 and top-5 on the 50,000 validation images; "
              "the networks have 8.90M / 9.68M / 9.26M parameters (the table's 9.61M for dynamic DNS is a 64-unit "
              "predictor, `--nsl-options '{\"predictor_hidden\": 64}'`). `--dataset imagenet64` trains them on "
              "downsampled ImageNet 64×64 instead (3.00M / 3.78M / 3.36M parameters). Not run yet.", ""]
    lines += ["### NSL Table 6: Mini-ImageNet 5-way 5-shot (`python -m nslviz few-shot`, docs/few-shot.md)", ""]
    lines += table(["method", "backbone", "accuracy", "± (as printed)"],
                   [[m, b, f"{a:.2f} %", f"± {i:.2f}"] for m, (b, a, i) in paper.NSL_TABLE6.items()])
    known = {"MN_METHOD_COLUMNS", "MN_TABLE1", "MN_TABLE2", "MN_TABLE3", "MN_TABLE3_COLUMNS", "MN_TABLE3_OPTIONS",
             "NSL_TABLE4", "NSL_TABLE5", "NSL_TABLE6", "NSL_TABLE6_ROWS", "MN_SUBCATEGORY_DISCOVERY"}
    for name in sorted(n for n in vars(paper) if n.isupper() and n not in known):    # tables added later
        lines += [f"### `nslviz.paper.{name}`", "", "```", json.dumps(_string_keys(getattr(paper, name)), default=str,
                                                                       ensure_ascii=False, indent=1), "```", ""]
    return lines


def _string_keys(value):
    """JSON-ready: tuple keys (dataset, method) as "dataset / method"."""
    if isinstance(value, dict):
        return {" / ".join(k) if isinstance(k, tuple) else k: _string_keys(v) for k, v in value.items()}
    return value


# ----------------------------------------------------------------------------------------------
# one renderer per benchmark
# ----------------------------------------------------------------------------------------------

@renders("spiral_default", "MN spiral toy (MN §4.1, Fig. 3)")
def _spiral(r: dict) -> list[str]:
    run = r["runs"][0]
    return table(["model", "test accuracy", "median seconds"],
                 [[f"MN (S = {run['entries']}, T = {run['temperature']}, {run['steps']} steps)",
                   pct(r["mn_test_acc"]), r["median_seconds"]],
                  ["the same linear classifier without neighbors", pct(r["linear_test_acc"]), None]]) + [
        f"{r['threads']} threads. The paper's result is qualitative (Fig. 3).", ""]


@renders("inner_loop", "MN's batched inner loop against a per-example autograd loop")
def _inner_loop(r: dict) -> list[str]:
    return table(["batch", "d", "C", "S", "steps", "closed form (s)", "per-example (s)", "speed-up",
                  "ratio of medians"],
                 [[r["batch"], r["feature_dim"], r["classes"], r["entries"], r["inner_steps"], r["fast_seconds"],
                   r["per_example_reference_seconds"], f"{r['speedup']}×", f"{r.get('speedup_of_medians', '')}×"]]) + [
        f"Forward + backward, {r['threads']} threads, {r['device']}.", ""]


def _earlier_ifilm(r: dict) -> str:
    """Files measured while iFiLM's products were written with einsum (before plain matrix products)."""
    return "; iFiLM's products as einsum (the earlier code)" if r.get("ifilm_products") == "einsum" else ""


@renders("train_step_and_inference", "MN training and inference cost against vanilla (paper A.7: about 2× at inference)",
         lambda r: f"{r['device']}, {r['backbone']}, {r['classes']} classes" + _earlier_ifilm(r))
def _train(r: dict) -> list[str]:
    rows = [[m, v["train_step_seconds"], v["inference_seconds"], f"{v['parameters']:,}",
             *((f"{r['ratios'][m]['train_step_vs_vanilla']}×", f"{r['ratios'][m]['inference_vs_vanilla']}×")
               if m in r["ratios"] else ("1×", "1×"))] for m, v in r["methods"].items()]
    return table(["method", "training step (s)", "inference (s)", "parameters", "training vs vanilla",
                  "inference vs vanilla"], rows) + [
        f"{r['backbone']}, batch {r['batch']}, S = {r['entries']}, C = {r['classes']}, {r['device']} "
        f"({r.get('device_name', '')}), {r['threads']} threads, {r['repeats']} interleaved rounds, "
        f"THP_MEM_ALLOC_ENABLE={r.get('THP_MEM_ALLOC_ENABLE', 'unset')}.", ""]


@renders("backbones_ifilm", "iFiLM's cost per backbone",
         lambda r: r.get("device", "cpu") + (", torch.compile" if r.get("compiled") else "") + _earlier_ifilm(r))
def _backbones(r: dict) -> list[str]:
    return table(["backbone", "images/s without iFiLM", "images/s with iFiLM \"all\"", "time ratio"],
                 [[b, v["none_images_per_s"], v["all_images_per_s"], f"{v['all_over_none_time']}×"]
                  for b, v in r["backbones"].items()]) + [
        f"{r['mode']}, batch {r['batch']}, {r['image_size']}×{r['image_size']}, {r.get('device', 'cpu')}"
        + (", bf16 autocast" if r.get("amp_bf16") else "") + (", channels_last" if r.get("channels_last") else "")
        + (", torch.compile" if r.get("compiled") else ", eager") + f", {r['threads']} thread(s).", ""]


@renders("augment", "Batched augmentation against a per-image torchvision pipeline")
def _augment(r: dict) -> list[str]:
    return table(["policy", "nslviz images/s", "torchvision per image, images/s", "speed-up"],
                 [[name, r[name]["nslviz_images_per_s"], r[name]["torchvision_per_image_images_per_s"],
                   f"{r[name]['speedup']}×"] for name in ("paper", "crop_flip") if name in r]) + [
        f"Batch {r['batch']}, {r['threads']} thread(s), {r['device']}. \"paper\" = crop, flip, AutoAugment, Cutout.", ""]


@renders("threads", "Torch threads against the CPUs a process may use")
def _threads(r: dict) -> list[str]:
    cpus = r["available_cpus"]
    return table(["intra-op threads", "ms per training step", "time against threads = CPUs"],
                 [[f"{n}" + (" (= the CPUs)" if int(n) == cpus else ""), r["step_ms"][n], f"{r['slowdown'][n]}×"]
                  for n in r["step_ms"]]) + [
        f"Adam steps of {r['backbone']} on a batch of {r['batch']} images at {r['image_size']}×{r['image_size']}, "
        f"{cpus} CPUs ({r['device_name']}), median of {r['rounds']} interleaved rounds. Torch sizes its thread "
        "pool by the cores it sees; in a container with a CPU quota (Binder, Docker `--cpus`) those are the "
        "host's, so notebooks and commands lower it to the quota (`nslviz._threads.match_threads_to_cpus`). "
        "Here the extra threads share the cores; under a quota they share the quota's time.", ""] + _shared(r)


@renders("few_shot_episode_batch", "Few-shot test episodes adapted together (notebook 10's quick mode)")
def _few_shot_episode_batch(r: dict) -> list[str]:
    from nslviz.experiments.few_shot import FewShotConfig
    base, quick, full = str(r["baseline_episode_batch"]), str(r["quick_episode_batch"]), str(FewShotConfig.episode_batch)
    return table(["episodes adapted together", "seconds for the four runs", "time against " + base],
                 [[b + (" (quick mode)" if b == quick else " (full mode)" if b == full else ""), num(t),
                   f"{r['time_over_baseline'][b]}×"] for b, t in r["median_seconds"].items()]) + [
        f"Notebook 10's runs ({', '.join(r['runs'])}) adapted on {r['episodes']} test episodes of "
        f"{r['finetune_epochs']} finetuning epochs each, after one pretraining; median of interleaved rounds, "
        f"{r['environment']['threads']} thread(s), {r['environment']['device_name']}. Every episode's accuracy is "
        f"the same at every batch size: {'yes' if r['same_accuracies'] else 'no'}. On this CPU the smaller batches "
        "are the faster; a GPU wants the large one.", ""]


def _shared(r: dict) -> list[str]:
    """bench_threads' processes that share the CPUs at once, if it ran them."""
    shared = r.get("shared")
    if not shared:
        return []
    alone = shared["step_ms"]["1 process, default waiting"]
    return table(["processes at once, OpenMP waiting", "ms per step (each process)", "against one process alone"],
                 [[setting, ms, f"{ms / alone:.2f}×"] for setting, ms in shared["step_ms"].items()]) + [
        f"Each process runs {shared['threads_each']} threads (= the CPUs). Spinning threads cost a process that "
        "shares the CPUs a little beyond its fair share; sleeping ones (OMP_WAIT_POLICY=PASSIVE) cost one alone "
        "more, so nslviz leaves OpenMP's default.", ""]


@renders("reader", "Reading ImageNet-2012 from its JPEG files")
def _reader(r: dict) -> list[str]:
    cpus = r["available_cpus"]
    return table(["decoding processes", "training images/s", "against the training process decoding"],
                 [[("0 (the training process)" if n == "0" else n), r["stream_images_per_s"][n],
                   f"{r['stream_speedup'][n]}×"] for n in r["stream_images_per_s"]]) + [
        f"Training batches of {r['batch']} (decode, {r['size']}×{r['size']} crop of the central {r['patch']}×"
        f"{r['patch']} patch, flip) from {r['images']} JPEGs of {r['image_size'].replace('x', '×')} cut from "
        f"scikit-learn's photographs, {cpus} CPUs ({r['device_name']}), median of {r['rounds']} interleaved "
        "rounds. One image's patch (JPEG draft decoding at a reduced scale, one resize) against a full-size "
        "decode, resize and crop: " + "; ".join(
            f"{name.replace('x', '×')} {times['draft']} against {times['plain']} ms ({r['plain_over_draft'][name]}× "
            "faster)" for name, times in r["patch_ms"].items())
        + (". `check-data`'s decode at 1/8 scale: " + "; ".join(
            f"{name.replace('x', '×')} {times['check']} ms" for name, times in r["patch_ms"].items())
           if "check" in next(iter(r["patch_ms"].values())) else "")
        + f". So one decoding process reads about {1000 / r['patch_ms'][r['image_size']]['draft']:.0f} images of "
        f"{r['image_size'].replace('x', '×')} a second, and a GPU that trains at N images a second needs about N "
        "divided by that of them (`--workers`). In the table the decoding processes share the CPUs with the one "
        "that crops, flips and converts the batches, as a GPU run's do not.", ""]


@renders("nsl_forward_backward", "NSL layer cost against nn.Conv2d of the same shape",
         lambda r: f"THP_MEM_ALLOC_ENABLE={r.get('THP_MEM_ALLOC_ENABLE', 'unset')}")
def _nsl(r: dict) -> list[str]:
    variants = list(dict.fromkeys(v for s in r["shapes"] for v in s["ratio"]))
    rows = [[f"{s['in_channels']}→{s['out_channels']} at {s['size']}², stride {s['stride']}", s["conv_ms"],
             *(f"{s['ratio'][v]}×" if v in s["ratio"] else "—" for v in variants)] for s in r["shapes"]]
    return table(["shape", "conv (ms)", *variants], rows) + [
        f"Forward + backward, batch {r['batch']}, minimum over {r['repeats']} repeats, {r.get('threads')} thread(s), "
        f"THP_MEM_ALLOC_ENABLE={r.get('THP_MEM_ALLOC_ENABLE', 'unset')}. `dns_taps` is the dynamic-DNS convolution "
        "given M (at stride 2 it takes the patches path, `dns_patches`); `dynamic_*` include the predictor.", ""]


@renders("regression_step", "MN regression step: closed form against torch.func")
def _regression(r: dict) -> list[str]:
    return table(["batch", "S", "features", "MLP", "closed form (s)", "torch.func (s)", "speed-up",
                  "cost over a plain MLP step"],
                 [[r["batch"], r["entries"], r["features"], f"{r['layers']} × {r['width']}", r["closed_form_seconds"],
                   r["torch_func_seconds"], f"{r['speedup_over_torch_func']}×", f"{r['cost_over_vanilla_mlp']}×"]])


@renders("feature_heads", "The tabular classifier's last layer: linear against the image models' cosine head")
def _feature_heads(r: dict) -> list[str]:
    names = {"plain": "the MLP alone", "linear": "MN, linear last layer (MetaNeighborsClassifier)",
             "cosine": "MN, the image models' cosine head"}
    return table(["model", "training step (s)", "time / the MLP's"],
                 [[names.get(m, m), s, f"{r['ratio_to_plain'][m]}×"] for m, s in r["step_seconds"].items()]) + [
        f"Batch {r['batch']}, {r['features']} inputs, trunk 2 × {r['width']}, {r['classes']} classes, "
        f"S = {r['entries']}, {r['threads']} thread(s), {r.get('device_name', 'cpu')}, load average "
        f"{r.get('load_average')}; median of {r['repeats']} steps, the models taking turns. The cosine head "
        f"costs {r['cosine_over_linear']}× the linear last layer.", ""]


def _digits_subtitle(r: dict) -> str:
    options = r.get("mn_options") or {}
    init = ", dictionary started at training images" if options.get("dictionary_init") == "data" else ""
    values = ", fixed and soft values" if any("fixed" in m for m in r["mean_test_acc"]) else ""
    return f"{r.get('epochs')} epochs, {len(r['seeds'])} seed(s){init}{values}"


@renders("digits_mn", "MN Table 1's methods on `digits`", _digits_subtitle)
def _digits_mn(r: dict) -> list[str]:
    mn = any(m.startswith("mn") for m in r["mean_test_acc"])          # S and the MN options matter to MN only
    setting = (f"{r.get('backbone')}, {r.get('image_size')}×{r.get('image_size')}, batch {r.get('batch_size')}, "
               + (f"S = {r.get('entries')}, " if mn else "")
               + f"{r.get('epochs')} epochs ({r.get('recipe')} recipe"
               + (f": {r['optimizer']}" if r.get("optimizer") else "") + f"), {len(r['seeds'])} seed(s)")
    options = r.get("mn_options") or {}
    if options and mn:
        setting += ", MN options " + ", ".join(f"{k} = {v}" for k, v in options.items())
    if "maxl" in r.get("mean_seconds", {}):                           # MAXL's look-ahead step: its cost matters
        setting += "; mean seconds per run " + ", ".join(f"{m} {v}" for m, v in r["mean_seconds"].items())
    paper_row = paper_mnist_row()
    before = r.get("mean_test_acc_before_finetune") or {}
    last = r.get("mean_test_acc_last_epoch") or {}
    rows = [[m, pct(acc) + (f" ± {100 * r['std_test_acc'][m]:.1f}" if m in r.get("std_test_acc", {}) else ""),
             pct(before.get(m)), pct(last.get(m)), paired((r.get("vs_vanilla") or {}).get(m)) if m != "vanilla" else None,
             paper_row.get(base_method(m))]
            for m, acc in r["mean_test_acc"].items()]
    lines = table(["method", "test accuracy (best on validation)", "before finetuning", "last epoch",
                   "paired − vanilla, points [95 % CI], seeds above/level/below", "paper, MNIST (MN Table 1)"], rows)
    lines += [setting + (f"; {r['cpu']}" if r.get("cpu") else "") + (f"; {r['note']}" if r.get("note") else "") + ".", ""]
    if r.get("dictionary_state"):
        keys = ["attention_entropy", "log_entries", "attended_value_acc", "value_confidence", "step_size",
                "logit_change", "changed_predictions"]
        lines += ["The dictionary's state on the test set (mean over seeds): attention entropy against log S, "
                  "accuracy of the attended values Σ_j ω_ij v_j alone, their confidence, the learned step size, "
                  "how far the step moves the logits and the share of predictions it changes.", ""]
        lines += table(["method", *keys], [[m, *(num(s.get(k)) for k in keys)] for m, s in r["dictionary_state"].items()])
    return lines


def _digits_nsl_subtitle(r: dict) -> str:
    """The variants where a run trained other rows than Table 4's, then the epochs and seeds."""
    from nslviz.experiments.compare import NSL_TABLES
    variants = list(r["mean_test_acc"])
    return ("" if set(variants) == set(NSL_TABLES["4"]) else f"{', '.join(variants)}; ") + _digits_subtitle(r)


@renders("digits_nsl", "NSL variants on `digits`", _digits_nsl_subtitle)
def _digits_nsl(r: dict) -> list[str]:
    from nslviz.paper import nsl_table_row
    paper = nsl_table_row("4")
    for number in ("1", "2", "3"):                  # a row Table 4 lacks, from the table that has it
        paper.update({v: f"{acc} (Table {number})" for v, acc in nsl_table_row(number).items() if v not in paper})
    rows = [[v, f"{pct(acc)} ± {100 * r['std_test_acc'][v]:.1f}",
             paired((r.get("vs_vanilla") or {}).get(v)) if v != "cnn" else None, f"{r['parameters'][v]:,}",
             r["mean_seconds"][v], paper.get(v)] for v, acc in r["mean_test_acc"].items()]
    return table(["variant", "test accuracy", "paired − cnn, points [95 % CI], seeds above/level/below", "parameters",
                  "seconds a run", "paper, CIFAR-10 accuracy (NSL Table 4, else the table named)"], rows) + [
        f"{r['backbone']} at {r['image_size']}×{r['image_size']}, {r['epochs']} epochs, {len(r['seeds'])} seeds, "
        f"{r['threads']} thread(s){_gain_text(r)}" + (f"; {r['note']}" if r.get("note") else "") + ".", ""]


def _gain_text(r: dict) -> str:
    """", the predictors' output BatchNorm scale γ starting at 0" where a run changed the official start, 1."""
    gain = r.get("predictor_gain_init")
    return "" if gain in (None, 1) else f", the predictors' output BatchNorm scale γ starting at {gain:g}"


def _gratings_subtitle(r: dict) -> str:
    return (f"{', '.join(r['mean_test_acc'])}; {r['epochs']} epochs, the predictors' learning rate × "
            f"{r['predictor_lr_scale']:g}" + _gain_text(r))


@renders("synthetic_nsl", "NSL variants on the generated gratings", _gratings_subtitle)
def _synthetic_nsl(r: dict) -> list[str]:
    """Each seed's accuracy is shown (to 0.05 points, a test image of 2,000): on these runs the spread
    over seeds is the result."""
    rows = [[v, pct(acc), " / ".join(pct(a, 2) for a in r["test_acc"][v]),
             paired((r.get("vs_vanilla") or {}).get(v)) if v != "cnn" else None, f"{r['parameters'][v]:,}",
             r["mean_seconds"][v]] for v, acc in r["mean_test_acc"].items()]
    return table(["variant", "mean test accuracy", f"seeds {', '.join(map(str, r['seeds']))}",
                  "paired − cnn, points [95 % CI], seeds above/level/below", "parameters", "seconds a run"], rows) + [
        f"{r['backbone']} at {r['image_size']}×{r['image_size']}, 5,000 generated oriented gratings (10 classes), "
        f"batch {r['batch_size']}, {r['epochs']} epochs, {r['optimizer']}, the dynamic predictors' learning rate × "
        f"{r['predictor_lr_scale']:g}{_gain_text(r)}, {r['threads']} thread(s); best-on-validation weights tested on "
        f"2,000 images"
        + (f"; {r['note']}" if r.get("note") else "") + ".", ""]


@renders("heads", "The MN head alone on fixed features, and on digits' backbone")
def _heads(r: dict) -> list[str]:
    rows = []
    for name, block in r.get("clusters", {}).items():
        m, setting = block["mean"], block["setting"]
        rows.append([f"heads alone: {setting['classes']} classes of {setting['clusters_per_class']} cluster(s) each "
                     f"in R^{setting['dim']}", pct(m["vanilla_acc"], 2), pct(m["mn_acc"], 2),
                     pct(m["mn_acc_before_finetune"], 2),
                     pct(m["attended_value_acc"], 2), paired(block["vs_vanilla"])])
    labelled = {"digits_frozen_vanilla_backbone": "heads alone: the frozen backbone of the vanilla digits run",
                "digits_joint_mn": "trainer, digits: MN from scratch",
                "digits_mn_on_frozen_vanilla_backbone": "trainer: MN on the vanilla run's backbone, frozen",
                "digits_mn_on_vanilla_backbone": "trainer: MN on the vanilla run's backbone, trained on"}
    vanilla = r.get("digits_vanilla_test_acc")
    for key, label in labelled.items():
        if key in r:
            m = r[key]["mean"]
            rows.append([label, pct(m.get("vanilla_acc", sum(vanilla) / len(vanilla) if vanilla else None), 2),
                         pct(m.get("mn_acc", m.get("test_acc")), 2),
                         pct(m.get("mn_acc_before_finetune", m.get("test_acc_before_finetune")), 2),
                         pct(m["attended_value_acc"], 2), paired(r[key]["vs_vanilla"])])
    return table(["features", "vanilla", "MN", "MN's classifier before finetuning", "dictionary alone (attended values)",
                  "paired MN − vanilla, points [95 % CI], seeds above/level/below"], rows) + [
        f"{len(r['seeds'])} seeds, {r['steps']} steps for the heads; test accuracy.", ""]


@renders("mn_race", "MN: the race between the backbone and the dictionary (docs/dictionary-race.md)",
         lambda r: "measured on " + _cpu(r))
def _mn_race(r: dict) -> list[str]:
    lines = []
    per_seed = any("attended_value_acc_per_seed" in entry for arms in r["report"].values() for entry in arms.values())
    for dataset, arms in r["report"].items():
        rows = []
        for arm, entry in arms.items():
            rows.append([arm, f"{entry['mean_test_acc']:.2f} %",
                         None if "mean_test_acc_before_finetune" not in entry else f"{entry['mean_test_acc_before_finetune']:.2f} %",
                         paired(entry.get("after_minus_before")), paired(entry.get("minus_vanilla_twin")),
                         _attended(entry),
                         None if "final_step_size" not in entry else num(entry["final_step_size"]),
                         None if entry.get("final_keys_snr") is None else num(entry["final_keys_snr"])])
        lines += [f"**{dataset}**", ""] + table(
            ["arm", "test accuracy", "before finetuning", "after − before, points [95 % CI], seeds above/level/below",
             "MN − vanilla twin, points [95 % CI], seeds above/level/below",
             "attended values alone" + (" (seeds: lowest – highest)" if per_seed else ""), "final α",
             "final keys' |m̂|/√v̂"], rows)
    return lines + [f"4-layer ConvNet on 16×16 images, {r['iterations']} iterations (warm-up arms: backbone frozen for "
                    f"the first {r['warmup']}), seeds {', '.join(map(str, r['seeds']))} paired across arms; Adam's "
                    f"zero-mean-noise floor of |m̂|/√v̂ is {r['adam_noise_floor']}; chance is 10 %. Measured on "
                    f"{_cpu(r)}, {r.get('environment', {}).get('threads', '?')} thread(s).", ""]


@renders("subcategory_digits", "MN: sub-category discovery on `digits` (notebook 05)",
         lambda r: f"S = {r.get('entries', 100)}, {r['epochs']} epochs, {len(r['seeds'])} seeds, measured on " + _cpu(r))
def _subcategory(r: dict) -> list[str]:
    rows = [[f"seed {row['seed']}", pct(row["test_acc"]["vanilla"]), pct(row["test_acc"]["mn"]),
             *(pct(row[name][f"{labels}_acc"]) for labels in ("coarse", "fine")
               for name in ("vanilla_features", "mn_attention", "mn_features"))] for row in r["per_seed"]]
    rows.append(["MN − vanilla, points [95 % CI], seeds above/level/below", None, None,
                 *(None if name == "vanilla_features" else paired(r[f"{name}_minus_vanilla"][labels])
                   for labels in ("coarse", "fine") for name in ("vanilla_features", "mn_attention", "mn_features"))])
    paper = r["paper"]
    rows.append(["paper: CIFAR-100, DenseNet40, S = 5000", None, None, f"{paper['vanilla']['coarse']} %",
                 f"{paper['mn']['coarse']} %", None, f"{paper['vanilla']['fine']} %", f"{paper['mn']['fine']} %", None])
    return table(["", "test accuracy vanilla", "MN", "coarse kNN: vanilla features", "MN attention", "MN features",
                  "fine kNN: vanilla features", "MN attention", "MN features"], rows) + [
        f"Both trained on the {r['coarse_labels']} for {r['epochs']} epochs, MN (S = {r.get('entries', 100)}) "
        f"started from the vanilla run "
        f"(`mn_start = \"{r['mn_start']}\"`); kNN with k = {r['k']} over the training set, on the coarse labels "
        f"and on the digits (fine labels) neither model saw. Measured on {_cpu(r)}, "
        f"{r.get('environment', {}).get('threads', '?')} thread(s).", ""]


def _cpu(result: dict) -> str:
    """The CPU a run was measured on: its arithmetic, and so a trained number's last digits, depend on it."""
    name = result.get("environment", {}).get("device_name") or "a CPU not recorded"
    return name.replace("(R)", "").replace("(TM)", "")


def _attended(entry: dict) -> str | None:
    """The attended values' mean accuracy and, where the report has them, the lowest and highest seed's."""
    from nslviz.viz.race import seed_spread
    if "attended_value_acc" not in entry:
        return None
    spread = seed_spread(entry.get("attended_value_acc_per_seed"))
    return f"{entry['attended_value_acc']:.1f} %" + (f" ({spread})" if spread else "")


@renders("estimators", "scikit-learn estimators against MLP and kNN (docs/estimators.md)",
         lambda r: ("held out (never used to choose a default): " if r.get("held_out") else "")
         + ", ".join(r["tables"]) + (f"; the folds of seed {r['seed']}" if r["seed"] else "")
         + (f"; MN with {json.dumps(r['mn_params'])}" if r.get("mn_params") else ""))
def _estimators(r: dict) -> list[str]:
    from nslviz.experiments.estimators import METHOD_LABELS
    rows = []
    for name, t in r["tables"].items():
        methods, best = t["methods"], t["best_baseline"]
        rows.append([name, t["metric"], t["rows"], num(methods["mn"]["mean"], 4),
                     f"{METHOD_LABELS.get(best, best)} {num(methods[best]['mean'], 4)}",
                     paired(t["mn_vs"][best]), "yes" if t["mn_at_least_best"] else "no",
                     num(t["mn_fit_time_ratio_to_mlp"])])
    from nslviz.experiments.estimators import METHOD_LABELS, summarise
    top = summarise(r["tables"]).get("tables_at_the_top")
    return table(["table", "score", "rows", "MN", "best of MLP / kNN", "MN − best, points [95 % CI], folds above/level/below",
                  "MN ≥ best", "MN fit time / default MLP's"], rows) + [
        f"{r['folds']}-fold CV with paired folds, default parameters, seed {r['seed']}"
        + ("" if r.get("complete", True) else "; the run was stopped before every table finished") + "."
        + (f" {_at_the_top(top, len(r['tables']))}" if top and len(top) > 2 else ""), ""]


def _at_the_top(counts: dict, tables: int) -> str:
    """The goal's rule applied to every method in turn (nslviz.experiments.estimators.tables_at_the_top)."""
    from nslviz.experiments.estimators import at_the_top_text
    return (f"Tables (of {tables}) on which each method's mean is at least every other method's: "
            f"{at_the_top_text(counts)} (a tie at the top counts for each).")


@renders("estimators_draws", "scikit-learn estimators against MLP and kNN, pooled over draws of the folds "
         "(docs/estimators.md)", lambda r: f"the folds of seeds {', '.join(map(str, r['seeds']))}"
         + (f"; MN with {json.dumps(r['mn_params'])}" if r.get("mn_params") else ""))
def _estimators_draws(r: dict) -> list[str]:
    from nslviz.experiments.estimators import METHOD_LABELS
    draws, s = len(r["seeds"]), r["summary"]
    rows = [[name, t["metric"], num(t["means"]["mn"], 4),
             f"{METHOD_LABELS.get(t['best_baseline'], t['best_baseline'])} {num(t['means'][t['best_baseline']], 4)}",
             paired(t["mn_vs_best"]), "yes" if t["mn_at_least_best"] else "no",
             f"{t['draws_mn_at_least_best']} of {draws}", num(t["fit_time_ratio_to_mlp_max"])]
            for name, t in r["tables"].items()]
    return table(["table", "score", f"MN, mean of {s['test_folds']} test folds", "best of MLP / kNN, pooled",
                  "MN − best, points [95 % CI, corrected], folds above/level/below", "MN ≥ best, pooled",
                  "draws with MN ≥ best", "MN fit time / default MLP's, max"], rows) + [
        f"MN at least as good as the best baseline on {s['tables_mn_at_least_best_pooled']} of {s['tables_compared']} "
        f"tables pooled; per draw: {', '.join(map(str, s['mn_at_least_best_per_draw']))} "
        f"(three quarters or more on {s['draws_meeting_goal']} of {draws} draws). "
        f"{r['folds']}-fold CV per draw; folds of different draws share rows, so the interval is the corrected "
        f"resampled t (Nadeau and Bengio), s·√(1/n + 1/{r['folds'] - 1}) in place of s/√n.", ""] + (
        [] if "tables_at_the_top_per_draw" not in s else table(
            ["method", "tables at the top, per draw", "most in a draw", "pooled"],
            [[METHOD_LABELS[m], ", ".join(map(str, counts)), max(counts), s["tables_at_the_top_pooled"][m]]
             for m, counts in s["tables_at_the_top_per_draw"].items()]) + [
            f"The goal's rule applied to every method in turn: the tables (of {s['tables_compared']}) on which its "
            "mean is at least every other method's, MN included; a tie at the top counts for each tied method.", ""])


SELECTION_BASELINES = {"mlp": "default MLP", "mlp_100_100": "MLP (100,100)", "knn5": "kNN 5", "knn_tuned": "kNN tuned"}


def _candidates(r: dict) -> str:
    """The MN settings a selection round scored against the defaults of its time, as `{"key": value}`."""
    keys = dict.fromkeys(k for per in r["selection"].values() for k in per if k != "{}" and k not in SELECTION_BASELINES)
    return ", ".join(f"`{k}`" for k in keys) or "the defaults alone"


@renders("estimators_selection", "MetaNeighbors* candidate settings scored on validation splits of the training "
         "folds (docs/estimators-selection.md)",
         lambda r: f"{_candidates(r)} on " + ", ".join(r["selection"])
         + (f"; {r['repeats']} splits per fold" if r.get("repeats", 1) > 1 else ""))
def _estimators_selection(r: dict) -> list[str]:
    baselines = SELECTION_BASELINES
    rows = [[name, baselines.get(key, f"`{key}`"), num(v["mean"], 4), num(v["fit_time_ratio_to_mlp"])]
            for name, per in r["selection"].items() for key, v in per.items()]
    return table(["table", "method, or MN parameters on top of the defaults of the time", "validation score, mean of splits",
                  "fit time / default MLP's"], rows) + [
        f"Within each of the {r['folds']} training folds, 20 % of the rows held out"
        + (f", {r['repeats']} times with different draws" if r.get("repeats", 1) > 1 else "")
        + "; the test folds are never read.", ""]


@renders("spiral_interactive", "Notebook 01's interactive parts: a new slider pair, an animation frame")
def _spiral_interactive(r: dict) -> list[str]:
    lines = table(["quantity", "value"], [
        [f"seconds to train a (T, S) pair not seen yet (quick mode, {r['steps_per_pair']} steps), median",
         num(r["unseen_pair_seconds_median"])],
        ["animation frame duration while playing, ms", num(r["frame_duration_ms"])]])
    draw = r.get("draw_ms_per_frame")
    if not draw:
        return lines + [f"Drawing: {r.get('drawing', 'not measured')}.", ""]
    rows = [[name, num(v["median_ms"]), num(v["max_ms"]), v["frames"],
             f"{v['painted_without_regions']} of {v['painted_while_playing']}"] for name, v in draw.items()]
    return lines + table(["figure drawn in headless Chromium", "median ms per frame", "max ms", "frames drawn",
                          "frames painted without the regions while playing"], rows) + [
        f"The frame duration covers the slowest frame drawn: {'yes' if r['frame_duration_covers_max_draw'] else 'no'}. "
        "`heatmap_baseline` is the same animation with the regions as a heatmap, which plotly.js takes off the "
        "plot while a frame's scatter traces move.", ""]


@renders("implicit_regularization", "NSL implicit regularisation (NSL §5.1)")
def _implicit(r: dict) -> list[str]:
    rows = [[name, v["samples"], num(v["standard_nuclear_norm"]), num(v["factorized_nuclear_norm"]),
             num(v["min_frobenius_nuclear_norm"]), num(v["truth_nuclear_norm"]), num(v["standard_error_to_truth"]),
             num(v["factorized_error_to_truth"])] for name, v in r.items() if isinstance(v, dict) and "samples" in v]
    return table(["observation", "samples", "nuclear norm, gradient descent on W", "… on the factorisation (W′, M)",
                  "minimum-Frobenius solution", "truth", "error to truth, W", "error to truth, factorised"], rows)


@renders("residual_ode", "A stack of NSL layers as an ODE solver (NSL §5.2)")
def _residual_ode(r: dict) -> list[str]:
    from nslviz.experiments.residual_ode import METHODS, convergence_order
    errors = {m: {int(n): e for n, e in r["rms_error"][m].items()} for m in METHODS}
    steps = {int(n): dt for n, dt in r["dt"].items()}
    rows = [[n, num(steps[n]), *(f"{errors[m][n]:.2e}" for m in METHODS)] for n in r["layers"]]
    orders = ", ".join(f"{METHODS[m].split(': ')[0]} {convergence_order(errors[m], steps):.2f}" for m in METHODS)
    return table(["layers", "Δt", *(f"RMS error, {METHODS[m]}" for m in METHODS)], rows) + [
        f"The heat equation dx/dt = Lx integrated to t = {num(r['t_end'])} on a {r['size']}×{r['size']} photo region "
        f"on a zero margin of {r['margin']} pixels, by stacks of static UNS layers, each storing a random kernel, "
        f"against the exact solution. Order (slope of log error over log Δt, Δt below {num(r['stability_limit'])}): "
        f"{orders}. One Euler layer against x + Δt·Lx: {r['residual_difference']:.1e}.", ""]


@renders("higher_order", "One layer, linear or higher order (NSL §6)")
def _higher_order(r: dict) -> list[str]:
    from nslviz.experiments.higher_order import MODELS, TARGETS
    runs = list(r["seeds"].values())
    rows = [[TARGETS[t].replace("|", "\\|"), *(", ".join(f"{run['r2'][t][m]:.2f}" for run in runs)
                           + f" ({sum(run['contrast_degree'][t][m] for run in runs) / len(runs):.2f})"
                           for m in MODELS)] for t in TARGETS]
    first = runs[0]
    return table(["target", *MODELS.values()], rows) + [
        f"Test R² on held-out photo crops for seeds {', '.join(r['seeds'])}, and in brackets the mean degree in the "
        f"contrast; one layer with one channel, {first['steps']} Adam steps per model and target, "
        f"{first['train_crops']} training crops of {first['crop']}×{first['crop']} pixels.", ""]


@renders("regress_diabetes", "MN regression on `diabetes` (MN Table 2's protocol)")
def _regress(r: dict) -> list[str]:
    rows = [[s["seed"], f"{s['knn_mse']:.3f} ± {s['knn_mse_std']:.3f}", f"{s['mlp_mse']:.3f} ± {s['mlp_mse_std']:.3f}",
             f"{s['mn_mse']:.3f} ± {s['mn_mse_std']:.3f}", f"{s['mn_vs_mlp_pvalue']:.2f}", f"{s['mn_vs_knn_pvalue']:.2f}"]
            for s in r["summaries"].values()]
    return table(["seed", "kNN MSE", "MLP MSE", "MN MSE", "p, MN vs MLP (paired t)", "p, MN vs kNN"], rows) + [
        "5-fold CV, hyper-parameters chosen inside the training folds; the paper's Table 2 is on five UCI "
        "tables (below), which need a download.", ""]


def _generic(r: dict) -> list[str]:
    scalars = [[k, num(v)] for k, v in r.items() if not isinstance(v, (dict, list))]
    nested = [k for k, v in r.items() if isinstance(v, (dict, list))]
    lines = table(["field", "value"], scalars) if scalars else []
    if nested:
        lines += ["Nested fields (see the JSON): " + ", ".join(f"`{k}`" for k in nested) + ".", ""]
    return lines


# ----------------------------------------------------------------------------------------------
# the page
# ----------------------------------------------------------------------------------------------

def section(path: Path, result: dict) -> list[str]:
    renderer = RENDERERS.get(result.get("benchmark", path.stem), _generic)
    lines = [f"### `{path.name}`: {describe(result, path.stem)}", ""]
    commands = command_of(path.stem, result)
    lines += ["Command: " + "; ".join(commands), ""] if len(commands) == 1 else \
        ["Commands:", "", *(f"* {c}" for c in commands), ""]
    if result.get("device") == "cuda":       # the GPU machine's own torch, not constraints.txt's: say which
        said = [result.get("device_name"), result.get("run_by") or result.get("note"),
                f"torch {result.get('torch', '(not recorded)')}"]
        lines += ["GPU run: " + "; ".join(filter(None, said)) + ".", ""]
    return lines + renderer(result)


def natural_order(path: Path) -> list:
    """Sort key that puts numbered files in numeric order: ..._selection_2 before ..._selection_10."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", path.name)]


# The page's parts, in reading order: a heading, what the part holds, and its benchmarks (in that order).
# A benchmark no part names goes under OTHER.
TOPICS: list[tuple[str, str, list[str]]] = [
    ("The spiral toy (notebook 01)", "MN's toy, and the speed of the notebook's sliders and animation.",
     ["spiral_default", "spiral_interactive"]),
    ("MN on images (notebooks 03, 05, 09)", "Vanilla, MN, iFiLM and MAXL trained on `digits` on a CPU, the MN head "
     "alone on fixed features, the race between the backbone and the dictionary, and sub-category discovery.",
     ["digits_mn", "heads", "mn_race", "subcategory_digits"]),
    ("MN on tables (notebooks 06, 11)", "MN regression with the paper's protocol, and the scikit-learn "
     "estimators against scikit-learn's MLPs and kNN: pooled over ten draws of the folds, then each draw, "
     "the held-out tables, the runs with other settings, and the rounds that chose the defaults.",
     ["regress_diabetes", "estimators_draws", "estimators", "estimators_selection"]),
    ("NSL (notebooks 07, 08, 10)", "NSL variants trained on `digits` and on the generated gratings, the "
     "implicit regularisation of the factorisation, stacks of NSL layers as ODE solvers, one layer of each "
     "kind against functions of several orders, and the cost of the NSL layers.",
     ["digits_nsl", "synthetic_nsl", "implicit_regularization", "residual_ode", "higher_order",
      "nsl_forward_backward"]),
    ("Speed", "MN, iFiLM, the thread count and the ImageNet reader. Each ratio is against a baseline measured in the same run.",
     ["inner_loop", "regression_step", "feature_heads", "train_step_and_inference", "backbones_ifilm", "augment",
      "threads", "reader", "few_shot_episode_batch"]),
]
OTHER = ("Other results", "Benchmarks without a part of this page yet.")


def page_order(path: Path, result: dict) -> tuple:
    """(part, benchmark within it, held-out tables, other MN parameters, the file name): each benchmark's
    runs of the default settings on its own tables first, then those on held-out tables, then those with
    other parameters (`mn_params`)."""
    benchmark = result.get("benchmark", path.stem)
    place = next(((i, names.index(benchmark)) for i, (_, _, names) in enumerate(TOPICS) if benchmark in names),
                 (len(TOPICS), 0))
    return (*place, bool(result.get("mn_params")), bool(result.get("held_out")), natural_order(path))


def render(results_dir: Path = RESULTS_DIR) -> str:
    results = {path: json.loads(path.read_text()) for path in results_dir.glob("*.json")}
    parts: dict[int, list[Path]] = {}                  # part -> its files, in page order
    for path in sorted(results, key=lambda path: page_order(path, results[path])):
        parts.setdefault(page_order(path, results[path])[0], []).append(path)
    headings = [(heading, about) for heading, about, _ in TOPICS] + [OTHER]
    lines = ["# Results", "",
             "Generated by `make results` (`python benchmarks/make_results.py`) from `benchmarks/results/*.json` "
             "and `nslviz.paper`; do not edit by hand. Every measured table says the command that wrote its file. "
             "The measured runs are CPU runs (2 cores unless a table says otherwise) on the embedded data sets, "
             "apart from the speed tables of the `*_cuda*.json` files, timed on generated tensors on a GPU (each "
             "says which, and its torch): they check the mechanics and the claims testable at that scale, and "
             "are not reproductions of the "
             "papers' GPU tables (docs/not-reproduced.md says what is missing). The same seed can give other "
             "per-seed numbers on another CPU, because float sums are ordered differently.", "",
             "Parts: " + "; ".join(f"{headings[i][0]} ({len(paths)} file{'s' * (len(paths) > 1)})" for i, paths in parts.items())
             + "; the papers' numbers.", ""]
    for i, paths in parts.items():
        heading, about = headings[i]
        lines += [f"## {heading}", "", about, "", "| file | what |", "|---|---|"]
        lines += [f"| `{path.name}` | {describe(results[path], path.stem)} |" for path in paths] + [""]
        for path in paths:
            lines += section(path, results[path])
    lines += paper_sections()
    text = "\n".join(lines)
    return text.rstrip("\n") + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if RESULTS.md is out of date")
    parser.add_argument("--out", default=str(RESULTS_MD))
    args = parser.parse_args(argv)
    text, out = render(), Path(args.out)
    if args.check:
        current = out.read_text() if out.exists() else ""
        if current != text:
            print(f"{out} is out of date with benchmarks/results/*.json: run `make results`", file=sys.stderr)
            return 1
        return 0
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(out)                                   # atomic: a reader never sees half a page
    print(f"wrote {out} ({len(files_listed(text))} results files)")
    return 0


def files_listed(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("### `") and ".json`:" in line]


if __name__ == "__main__":
    sys.exit(main())
