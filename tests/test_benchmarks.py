"""The benchmark scripts stay runnable (CI never times them): each imports and exposes main(), the
two that guard the speed targets run end to end on tiny sizes with the JSON contract, and the
one-go GPU check (benchmarks/gpu_check.sh) runs all its steps on the CPU at tiny sizes."""
import importlib
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p.stem for p in BENCHMARKS.glob("*.py") if not p.stem.startswith("_"))


@pytest.fixture(autouse=True)
def on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_benchmark_imports_and_has_main(script):
    assert callable(importlib.import_module(script).main)


def test_inner_loop_benchmark_reports_a_speedup(tmp_path, capsys):
    result = importlib.import_module("bench_inner_loop").main(
        ["--batch", "4", "--entries", "20", "--repeats", "1", "--out", str(tmp_path / "r.json")])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result
    assert json.loads((tmp_path / "r.json").read_text()) == result and result["speedup"] > 0


def test_feature_heads_benchmark_times_the_three_last_layers_on_one_batch(tmp_path):
    bench = importlib.import_module("bench_feature_heads")
    models = bench.build_models(features=6, width=8, classes=3, entries=5)
    trunks = [[p.shape for p in trunk.parameters()] for trunk in (models["linear"].trunk, models["cosine"][0])]
    assert trunks[0] == trunks[1]                                       # the same trunk shape in both heads
    result = bench.main(["--batch", "4", "--features", "6", "--width", "8", "--classes", "3", "--entries", "5",
                         "--repeats", "1", "--out", str(tmp_path / "h.json")])
    assert json.loads((tmp_path / "h.json").read_text()) == result
    assert set(result["step_seconds"]) == {"plain", "linear", "cosine"} and result["ratio_to_plain"]["plain"] == 1.0
    assert result["threads"] == 1 and result["cosine_over_linear"] > 0


def test_train_benchmark_reports_ratios_against_vanilla(tmp_path):
    result = importlib.import_module("bench_train").main(
        ["--backbone", "convnet4", "--batch", "2", "--entries", "10", "--repeats", "1", "--warmup", "0",
         "--out", str(tmp_path / "r.json")])
    assert set(result["ratios"]) == {"mn", "mn_ifilm"} and result["methods"]["vanilla"]["train_step_seconds"] > 0
    assert sys.modules["bench_train"].__file__.startswith(str(BENCHMARKS))
    for key in ("repeats", "warmup", "amp", "channels_last", "device_name", "torch", "cuda", "threads", "load_average"):
        assert key in result, key                                       # what the figures depend on is recorded
    assert (result["repeats"], result["amp"]) == (1, "off") and result["device_name"] != "x86_64"


def test_train_benchmark_rotates_the_order_of_the_methods_in_each_round():
    seen = []
    medians = importlib.import_module("bench_train")._interleaved_medians(
        {name: (lambda name=name: seen.append(name)) for name in ("vanilla", "mn", "mn_ifilm")}, torch.device("cpu"), 3, 0)
    assert seen == ["vanilla", "mn", "mn_ifilm", "mn", "mn_ifilm", "vanilla", "mn_ifilm", "vanilla", "mn"]
    assert set(medians) == {"vanilla", "mn", "mn_ifilm"}


def test_train_benchmark_refuses_bad_arguments_with_usage(capsys):
    for argv, message in ((["--repeats", "0"], "expected an integer >= 1, got '0'"), (["--device", "tpu"], "unknown device")):
        with pytest.raises(SystemExit) as exit_info:
            importlib.import_module("bench_train").main(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("family", ["mn", "nsl"])
def test_digits_runs_train_for_the_epochs_asked(family):
    # quick_config caps epochs at its small default; the benchmark's --epochs must win over that cap
    configs = importlib.import_module("digits_runs").run_configs(family, 30)
    assert {c.epochs for c in configs.values()} == {30} and {c.dataset for c in configs.values()} == {"digits"}
    if family == "mn":
        chosen = importlib.import_module("digits_runs").run_configs("mn", 30, ["mn"], dictionary_init="data", alpha=0.5,
                                                                    values="fixed")
        assert list(chosen) == ["mn"]
        assert (chosen["mn"].dictionary_init, chosen["mn"].alpha, chosen["mn"].values) == ("data", 0.5, "fixed")


def test_digits_runs_gratings_are_the_quick_compare_command():
    """The NSL family on the generated gratings trains what `compare --quick --dataset synthetic` does,
    for the epochs asked; --dataset and the predictors' rate are refused for the MN family."""
    from nslviz.__main__ import build_parser
    from nslviz.cli.compare import run_configs as compare_configs
    from nslviz.experiments.compare import nsl_variant_config
    runs = importlib.import_module("digits_runs")
    configs = runs.run_configs("nsl", 4, ["cnn", "dynamic_dns"], dataset="synthetic", predictor_lr_scale=0.1)
    quick, = compare_configs(build_parser().parse_args(
        ["compare", "--quick", "--dataset", "synthetic", "--preset", "nsl", "--backbone", "cnn9", "--variants", "cnn",
         "dynamic_dns", "--predictor-lr-scale", "0.1"])).values()
    assert configs == {v: nsl_variant_config(quick, v) for v in ("cnn", "dynamic_dns")}
    assert {c.epochs for c in runs.run_configs("nsl", 6, ["cnn"], dataset="synthetic").values()} == {6}
    gain = runs.run_configs("nsl", 4, ["cnn", "dynamic_dns"], dataset="synthetic", predictor_gain_init=0.0)
    quick, = compare_configs(build_parser().parse_args(                # docs/cli.md's command with γ started at 0
        ["compare", "--quick", "--dataset", "synthetic", "--preset", "nsl", "--backbone", "cnn9", "--variants", "cnn",
         "dynamic_dns", "--nsl-options", '{"predictor_gain_init": 0}'])).values()
    assert gain == {v: nsl_variant_config(quick, v) for v in ("cnn", "dynamic_dns")}
    assert gain["dynamic_dns"].nsl_options == {"predictor_gain_init": 0.0} and gain["cnn"].nsl_options == {}
    for wrong in (["--family", "mn", "--dataset", "synthetic"], ["--family", "mn", "--dataset", "digits"],
                  ["--family", "mn", "--predictor-gain-init", "0"],
                  ["--family", "nsl", "--methods", "mn"], ["--family", "nsl", "--alpha", "0.5"],
                  ["--family", "nsl", "--variants", "dynamic_dns"]):          # no cnn to compare with
        with pytest.raises(SystemExit):
            runs.main(wrong)


def test_digits_runs_cli_recipe_is_the_command_line_run():
    from nslviz.__main__ import build_parser
    from nslviz.cli.train import config_from_args
    configs = importlib.import_module("digits_runs").run_configs("mn", 5, ["vanilla", "mn_ifilm"], "cli")
    for method, config in configs.items():
        args = build_parser().parse_args(["train", "--dataset", "digits", "--backbone", "convnet4",
                                          "--method", method, "--epochs", "5"])
        assert config == config_from_args(args)
    # the maxl_sgd recipe: the same command with the maxl preset's optimisation, for both methods
    sgd = importlib.import_module("digits_runs").run_configs("mn", 5, ["vanilla", "maxl"], "maxl_sgd")
    for method, config in sgd.items():
        args = build_parser().parse_args(["train", "--dataset", "digits", "--backbone", "convnet4", "--method", method,
                                          "--epochs", "5", "--optimizer", "sgd", "--lr", "0.1", "--momentum", "0.9",
                                          "--nesterov", "false", "--weight-decay", "5e-4", "--milestones",
                                          "0.25,0.5,0.75", "--lr-decay", "0.5"])
        assert config == config_from_args(args)


@pytest.mark.slow
def test_digits_runs_reports_both_checkpoints_and_the_per_seed_comparison(tmp_path):
    runs = importlib.import_module("digits_runs")
    assert runs.compare([0.9, 0.8, 0.7], [0.8, 0.8, 0.8]) == {
        "above": 1, "level": 1, "below": 1, "mean_difference_points": 0.0,
        "ci95_points": [-24.841, 24.841]}                      # t(0.975, 2) = 4.303, sd 10 points, 3 seeds
    assert runs.versus_baseline({"mn": [0.9], "mn_ifilm": [0.8]}) is None            # --methods mn mn_ifilm
    assert runs.versus_baseline({"cnn": [0.8], "dynamic_dns": [0.9]})["dynamic_dns"] == {
        "above": 1, "level": 0, "below": 0, "mean_difference_points": 10.0, "ci95_points": None}
    result = runs.main(["--recipe", "cli", "--epochs", "1", "--methods", "vanilla", "mn", "--seeds", "0",
                        "--threads", "1", "--out", str(tmp_path / "r.json")])
    assert (result["recipe"], result["batch_size"], result["image_size"], result["entries"]) == ("cli", 32, 32, 200)
    assert result["vs_vanilla"]["vanilla"] == {"above": 0, "level": 1, "below": 0, "mean_difference_points": 0.0,
                                               "ci95_points": None}
    assert set(result["test_acc_last_epoch"]) == {"vanilla", "mn"}
    assert result["test_acc_last_epoch"]["vanilla"] == result["test_acc"]["vanilla"]   # one epoch: best = last
    state = result["dictionary_state"]
    assert set(state) == {"mn"}                                      # only the MN runs have a dictionary
    assert state["mn"]["entries"] == 200 and state["mn"]["acc"] == round(result["test_acc"]["mn"][0], 4)
    assert state["mn"]["acc_before_finetune"] == round(result["test_acc_before_finetune"]["mn"][0], 4)


@pytest.mark.slow
def test_heads_runs_report_both_heads_on_clusters_and_on_a_frozen_digits_backbone(tmp_path):
    result = importlib.import_module("heads_runs").main(["--seeds", "0", "--steps", "20", "--epochs", "1",
                                                         "--threads", "1", "--out", str(tmp_path / "r.json")])
    assert json.loads((tmp_path / "r.json").read_text()) == result
    assert set(result["clusters"]) == {"6_per_class", "1_per_class"}
    six = result["clusters"]["6_per_class"]
    assert six["setting"]["clusters_per_class"] == 6 and len(six["per_seed"]["mn_acc"]) == 1
    assert six["vs_vanilla"] == sys.modules["_results"].compare(six["per_seed"]["mn_acc"], six["per_seed"]["vanilla_acc"])
    frozen = result["digits_frozen_vanilla_backbone"]
    assert frozen["batch_size"] == 32 and len(frozen["per_seed"]["attended_value_acc"]) == 1   # the command's batch
    for label in ("digits_joint_mn", "digits_mn_on_vanilla_backbone", "digits_mn_on_frozen_vanilla_backbone"):
        mn = result[label]
        assert set(mn["per_seed"]) == {"test_acc", "test_acc_before_finetune", "attended_value_acc",
                                       "attention_entropy", "step_size"}
        assert mn["vs_vanilla"] == sys.modules["_results"].compare(mn["per_seed"]["test_acc"],
                                                                   result["digits_vanilla_test_acc"])
        assert all(0 <= a <= 1 for a in mn["per_seed"]["attended_value_acc"])


@pytest.mark.slow
def test_the_gpu_check_script_runs_its_steps_on_the_cpu(tmp_path):
    """benchmarks/gpu_check.sh runs every GPU check in one go on a CUDA machine: keep it working here,
    at tiny sizes on the CPU (tests/test_cuda.py against float64 references, then every benchmark)."""
    out = tmp_path / "check"
    done = subprocess.run(["bash", str(BENCHMARKS / "gpu_check.sh")], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "DEVICE": "cpu", "SMALL": "1", "OUT": str(out), "PYTHON": sys.executable})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and {"gpu_env.txt", "gpu_check.log"} <= set(files)   # its eight files, no more
    results = {name: json.loads((out / name).read_text()) for name in files if name.endswith(".json")}
    assert set(results) == {"train_cpu.json", "train_cpu_c100.json", "inner_loop_cpu.json", "nsl_cpu.json",
                            "backbones_cpu.json", "augment_cpu.json"}
    assert results["train_cpu_c100.json"]["classes"] == 100 and results["train_cpu.json"]["device"] == "cpu"
    log = (out / "gpu_check.log").read_text()
    passed = re.search(r"(\d+) passed", log)
    assert passed and int(passed.group(1)) >= 20 and " failed" not in log and "!!" not in log


@pytest.mark.slow
def test_the_gpu_check_script_stops_at_once_without_a_gpu_and_checks_its_part(tmp_path):
    """On the lent machine a run that cannot check anything must say so in one line, not spend the
    device time on skipped tests and failing benchmarks."""
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": sys.executable}
    if not torch.cuda.is_available():
        done = subprocess.run(["bash", str(BENCHMARKS / "gpu_check.sh")], capture_output=True, text=True,
                              timeout=120, env={**env, "DEVICE": "cuda"})
        assert done.returncode == 1 and "torch.cuda.is_available() is False: no GPU to check" in done.stdout
        assert not list((tmp_path / "out").glob("*.json"))
    done = subprocess.run(["bash", str(BENCHMARKS / "gpu_check.sh")], capture_output=True, text=True,
                          timeout=120, env={**env, "PART": "everything"})
    assert done.returncode == 2 and "PART must be all, bench or tests, got 'everything'" in done.stdout
    script = (BENCHMARKS / "gpu_check.sh").read_text()
    limits = [int(m) for m in re.findall(r"^\s*step \w+ (\d+) ", script, re.M)]
    tests_limit = int(re.search(r"^\s*tests_limit=(\d+)$", script, re.M).group(1))
    assert len(limits) == 6 and sum(limits) + tests_limit <= 500   # benchmarks + tests within ten minutes


def test_estimators_benchmark_quick_run_reports_scores_ratios_and_the_goal(tmp_path):
    out = tmp_path / "r.json"
    result = importlib.import_module("bench_estimators").main(
        ["--quick", "--tables", "iris,sine", "--methods", "mn,mlp,knn5", "--mn-params", '{"max_epochs": 5}',
         "--out", str(out)])
    assert json.loads(out.read_text()) == result and result["complete"] and result["folds"] == 2
    for name, metric in (("iris", "accuracy"), ("sine", "r2")):
        table = result["tables"][name]
        assert table["metric"] == metric and set(table["methods"]) == {"mn", "mlp", "knn5"}
        assert len(table["methods"]["mn"]["scores"]) == 2 and table["mn_fit_time_ratio_to_mlp"] > 0
        assert set(table["mn_vs"]) == {"mlp", "knn5"} and table["best_baseline"] in ("mlp", "knn5")
    assert result["summary"]["tables_compared"] == 2 and "fit_time_goal_met" in result["summary"]


def test_estimators_selection_scores_candidates_and_their_time_ratio_to_the_mlp(tmp_path):
    candidates = tmp_path / "candidates.json"
    candidates.write_text('[{"max_epochs": 3, "n_estimators": 1}, {"max_epochs": 3, "n_estimators": 2}]')
    result = importlib.import_module("bench_estimators").main(
        ["--quick", "--tables", "iris", "--select", str(candidates), "--repeats", "2", "--out", str(tmp_path / "s.json")])
    assert result["benchmark"] == "estimators_selection" and "tables" not in result and result["repeats"] == 2
    per = result["selection"]["iris"]
    assert set(per) == {'{"max_epochs": 3, "n_estimators": 1}', '{"max_epochs": 3, "n_estimators": 2}', "mlp"}
    assert per["mlp"]["fit_time_ratio_to_mlp"] == 1.0
    for entry in per.values():          # 2 folds x 2 validation draws each
        assert len(entry["scores"]) == 4 and 0 <= entry["mean"] <= 1 and entry["fit_time_ratio_to_mlp"] > 0
    # the second draw of a fold holds out other rows than the first: its default MLP scores differ somewhere
    assert per["mlp"]["scores"][0::2] != per["mlp"]["scores"][1::2]


def test_estimators_selection_fits_every_baseline_on_the_same_splits_when_asked(tmp_path, capsys):
    bench = importlib.import_module("bench_estimators")
    candidates = tmp_path / "candidates.json"
    candidates.write_text('[{"max_epochs": 2, "n_estimators": 1}]')
    argv = ["--quick", "--tables", "iris", "--select", str(candidates), "--out", str(tmp_path / "s.json")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = bench.main(argv + ["--select-baselines", "all"])
    # kNN tuned's grid stops at the k an inner training fold of these 48 rows can hold: no failed fits
    assert not [w for w in caught if "Scoring failed" in str(w.message)]
    assert bench.make_estimator("knn_tuned", "classification", 0, rows=48)[-1].param_grid["n_neighbors"][-1] == 30
    assert bench.make_estimator("knn_tuned", "classification", 0)[-1].param_grid["n_neighbors"] == list(bench.NEIGHBOR_GRID)
    per = result["selection"]["iris"]
    assert result["baselines"] == list(bench.BASELINES) and set(bench.BASELINES) < set(per)
    assert all(len(per[b]["scores"]) == 2 and per[b]["fit_time_ratio_to_mlp"] > 0 for b in bench.BASELINES)
    # the default MLP on the same split gives the same score as in a run without the other baselines
    assert bench.main(argv)["selection"]["iris"]["mlp"]["scores"] == per["mlp"]["scores"]
    plain = ["--tables", "iris"]                                  # no --select, no --out
    refused = [(argv + ["--select-baselines", "knn5"], "must include mlp"),
               (argv + ["--select-baselines", "mlp,mlp"], "more than once"),
               (argv + ["--select-baselines", "knn"], "or all"),
               (plain + ["--select-baselines", "all"], "applies to --select rounds"),
               (plain + ["--quick"], "need --out FILE"), (plain + ["--mn-params", "{}"], "need --out FILE")]
    for refused_argv, message in refused:
        with pytest.raises(SystemExit) as exit_info:
            bench.main(refused_argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_a_selection_round_writes_the_file_named_after_its_candidates():
    """The commands RESULTS.md quotes for the selection rounds write the files they are quoted for."""
    bench = importlib.import_module("bench_estimators")
    assert bench.selection_stem("benchmarks/estimators_candidates_5.json") == "bench_estimators_selection_5_cpu"
    assert bench.selection_stem("mine.json") == "bench_estimators_selection_cpu"
    for path in sorted((BENCHMARKS / "results").glob("bench_estimators_selection_*_cpu.json")):
        command = json.loads(path.read_text())["command"].split()
        out = command[command.index("--out") + 1] if "--out" in command else \
            f"benchmarks/results/{bench.selection_stem(command[command.index('--select') + 1])}.json"
        assert out == f"benchmarks/results/{path.name}"


def test_estimators_benchmark_passes_the_classifiers_own_parameters_to_the_classifier_only():
    make = importlib.import_module("bench_estimators").make_estimator
    params = {"label_smoothing": 0.0, "width": 16}
    assert make("mn", "classification", 0, params).get_params()["label_smoothing"] == 0.0
    assert make("mn", "regression", 0, params).get_params()["width"] == 16      # label_smoothing left out
    with pytest.raises(TypeError, match="wdith"):                                 # a typo is not left out
        make("mn", "regression", 0, {"wdith": 16})


def test_estimators_benchmark_refuses_unknown_tables(capsys):
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module("bench_estimators").main(["--tables", "mnist"])
    assert exit_info.value.code == 2 and "unknown tables ['mnist']" in capsys.readouterr().err


def test_estimators_benchmark_held_out_tables_run_alone_and_never_in_a_selection(tmp_path, capsys):
    bench = importlib.import_module("bench_estimators")
    assert not set(bench.HELD_OUT_TABLES) & set(bench.TABLES)
    result = bench.main(["--quick", "--tables", "classes10,friedman3", "--methods", "mn,knn5", "--mn-params",
                         '{"max_epochs": 2}', "--out", str(tmp_path / "r.json")])
    assert result["held_out"] is True and set(result["tables"]) == {"classes10", "friedman3"}
    assert result["tables"]["classes10"]["classes"] == 10 and result["tables"]["friedman3"]["metric"] == "r2"
    for argv in (["--tables", "iris,classes10"], ["--tables", "classes10", "--select", str(tmp_path / "c.json")]):
        with pytest.raises(SystemExit) as exit_info:
            bench.main(argv)
        assert exit_info.value.code == 2 and "held-out tables ['classes10'] run alone" in capsys.readouterr().err


def test_estimators_benchmark_other_fold_draws(tmp_path):
    bench = importlib.import_module("bench_estimators")             # the draws themselves: test_estimator_comparison
    result = bench.main(["--quick", "--tables", "wine", "--methods", "mn,knn5", "--mn-params", '{"max_epochs": 2}',
                         "--cv-seed", "1", "--out", str(tmp_path / "r.json")])
    assert result["seed"] == 1 and result["tables"]["wine"]["methods"]["knn5"]["scores"]


def test_estimators_benchmark_pools_the_committed_draws(tmp_path):
    """--pool-draws runs nothing: it reads the committed draws (seed 0's file, then the seed<N> files in
    numeric order) and writes what pool_draws makes of them; the committed summary is that file."""
    bench = importlib.import_module("bench_estimators")
    files = bench.draw_files()
    assert files[0].name == "bench_estimators_cpu.json" and len(files) >= 3
    seeds = [json.loads(path.read_text())["seed"] for path in files]
    assert seeds == sorted(seeds) and seeds[0] == 0
    result = bench.main(["--pool-draws", "--out", str(tmp_path / "d.json")])
    assert result["benchmark"] == "estimators_draws" and result["seeds"] == seeds
    committed = json.loads((bench.RESULTS / "bench_estimators_draws_cpu.json").read_text())
    assert {k: committed[k] for k in ("seeds", "tables", "summary")} == \
        {k: result[k] for k in ("seeds", "tables", "summary")}
    # the goal's rule applied to every method: MN's counts are the goal's, draw by draw and pooled
    summary = result["summary"]
    assert summary["tables_at_the_top_per_draw"]["mn"] == summary["mn_at_least_best_per_draw"]
    assert summary["tables_at_the_top_pooled"]["mn"] == summary["tables_mn_at_least_best_pooled"]
    # the draws kept under a name: the classifier's width before it became 256
    older = bench.main(["--pool-draws", "width128", "--out", str(tmp_path / "w.json")])
    assert older["mn_params"] == {"width": 128} and older["seeds"] == seeds
    assert older["tables"]["iris"]["means"]["mlp"] == result["tables"]["iris"]["means"]["mlp"]   # the same folds
    assert older["tables"]["iris"]["means"]["mn"] != result["tables"]["iris"]["means"]["mn"]


def test_estimators_benchmark_pooling_names_what_it_could_not_pool(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module("bench_estimators").main(["--pool-draws", "nosuchname", "--out", str(tmp_path / "d.json")])
    assert exit_info.value.code == 2 and "--pool-draws nosuchname: pool_draws needs at least 2 draws" in capsys.readouterr().err


def test_backbones_benchmark_compiles_both_networks_when_asked(tmp_path, monkeypatch):
    """--compile hands both networks (with and without iFiLM) to torch.compile and says so in the result;
    torch.compile itself is replaced by a recorder here (inductor takes a minute on a CPU)."""
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda net: compiled.append(net) or net)
    bench = importlib.import_module("bench_backbones")
    result = bench.main(["--backbones", "convnet4", "--batch", "2", "--repeats", "1", "--compile",
                         "--out", str(tmp_path / "b.json")])
    assert result["compiled"] is True and len(compiled) == 2
    assert result["backbones"]["convnet4"]["all_over_none_time"] > 0
    assert bench.main(["--backbones", "convnet4", "--batch", "2", "--repeats", "1",
                       "--out", str(tmp_path / "e.json")])["compiled"] is False and len(compiled) == 2


def test_threads_benchmark_times_the_available_cpus_against_more_threads(tmp_path):
    """One step count per thread count, the available CPUs first and as the baseline (slowdown 1);
    torch's own setting is restored; a multiple below 2 is refused by name."""
    bench = importlib.import_module("bench_threads")
    threads = torch.get_num_threads()
    result = bench.main(["--oversubscribe", "2", "--steps", "1", "--rounds", "1", "--batch", "4", "--size", "8",
                         "--processes", "0", "--out", str(tmp_path / "t.json")])
    cpus = result["available_cpus"]
    assert list(result["step_ms"]) == [str(cpus), str(2 * cpus)] and result["slowdown"][str(cpus)] == 1.0
    assert json.loads((tmp_path / "t.json").read_text()) == result and torch.get_num_threads() == threads
    with pytest.raises(SystemExit):
        bench.main(["--oversubscribe", "1"])
    assert result["shared"] == {}                                              # --processes 0: not measured


@pytest.mark.slow
def test_threads_benchmark_times_processes_started_together(monkeypatch):
    """Each process of the shared measurement prints its median step; the mean of them comes back."""
    bench = importlib.import_module("bench_threads")
    monkeypatch.setattr(bench, "START_DELAY", 4.0)
    seconds = bench.processes_step_seconds(2, True, 1, 1, 2, 8)
    assert 0 < seconds < 5


def test_reader_benchmark_times_the_patch_reader_and_the_stream_at_every_worker_count(tmp_path):
    """Both patch readers give the same central square; the stream is timed with 0 to CPUs workers,
    0 the baseline (speed-up 1); torch's threads are restored; fewer images than a batch is refused."""
    bench = importlib.import_module("bench_reader")
    threads = torch.get_num_threads()
    result = bench.main(["--images", "8", "--batch", "4", "--rounds", "1", "--size", "32",
                         "--out", str(tmp_path / "r.json")])
    cpus = result["available_cpus"]
    assert list(result["stream_images_per_s"]) == [str(n) for n in range(cpus + 1)]
    assert result["stream_speedup"]["0"] == 1.0 and min(result["stream_images_per_s"].values()) > 0
    assert result["patch"] == 37 and list(result["patch_ms"]) == ["500x375", "1000x750"]
    assert min(t for times in result["patch_ms"].values() for t in times.values()) > 0
    assert json.loads((tmp_path / "r.json").read_text()) == result and torch.get_num_threads() == threads
    bench.write_images(tmp_path / "pictures", 2, classes=1)
    path = str(next((tmp_path / "pictures" / "imagenet" / "train").rglob("*.JPEG")))
    draft, plain = (reader(path, 256).astype(int) for reader in (bench.read_patch, bench.plain_patch))
    assert draft.shape == plain.shape == (256, 256, 3)
    # the same central square, up to a sub-pixel shift (a mirrored one is far off)
    assert abs(draft - plain).mean() < 6 and abs(draft - plain[:, ::-1]).mean() > 24
    with pytest.raises(SystemExit):
        bench.main(["--images", "2", "--batch", "4"])


def test_subcategory_runs_pair_each_representation_with_vanilla_by_seed(tmp_path, monkeypatch):
    """The benchmark's arithmetic on known accuracies (one_seed, which trains, stands in): MN's attention
    and features against the same seed's vanilla features, on fine and coarse labels."""
    bench = importlib.import_module("subcategory_runs")
    accuracies = {0: (0.95, 0.97, 0.96), 1: (0.93, 0.94, 0.95)}     # vanilla, MN attention, MN features (fine)

    def one_seed(seed, root, entries, epochs):
        assert (entries, epochs) == (100, 3)                                # notebook 05's quick mode
        vanilla, attention, features = accuracies[seed]
        return {"seed": seed, "test_acc": {"vanilla": 0.9, "mn": 0.95},
                **{name: {"fine_acc": value, "coarse_acc": 0.97}
                   for name, value in (("vanilla_features", vanilla), ("mn_attention", attention),
                                       ("mn_features", features))}}
    monkeypatch.setattr(bench, "one_seed", one_seed)
    result = bench.main(["--seeds", "0", "1", "--root", str(tmp_path / "runs"), "--out", str(tmp_path / "s.json")])
    fine = result["mn_attention_minus_vanilla"]["fine"]
    assert fine["mean_difference_points"] == pytest.approx(1.5) and (fine["above"], fine["below"]) == (2, 0)
    assert result["mn_features_minus_vanilla"]["coarse"]["level"] == 2
    assert json.loads((tmp_path / "s.json").read_text())["per_seed"][1]["mn_attention"]["fine_acc"] == 0.94
