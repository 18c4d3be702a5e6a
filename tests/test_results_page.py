"""RESULTS.md is generated from benchmarks/results/*.json and nslviz.paper (benchmarks/make_results.py,
`make results`): it must be what the committed JSON files give, a new results file must appear on it
without code changes, and new benchmark runs record the command that produced them."""
import importlib
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


@pytest.fixture
def make_results(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("make_results")


def test_results_page_is_up_to_date_with_the_json_files(make_results):
    assert (ROOT / "RESULTS.md").read_text() == make_results.render(), \
        "RESULTS.md is out of date with benchmarks/results/*.json: run `make results` and commit it"


def test_every_results_file_has_a_section_with_its_command(make_results):
    text = make_results.render()
    for path in sorted((BENCHMARKS / "results").glob("*.json")):
        body = text.split(f"### `{path.name}`:", 1)
        assert len(body) == 2, f"{path.name} has no section"
        section = body[1].split("\n### ", 1)[0]
        assert "Command" in section and "(not recorded)" not in section, f"{path.name}: no command"


def test_make_bench_reruns_the_commands_that_wrote_the_speed_files(make_results):
    """Each line of `make bench` is the command RESULTS.md quotes for one file of benchmarks/results/
    (with --device cpu where a script's default could take a GPU), so a rerun replaces like with like."""
    import re
    import shlex
    target = re.search(r"^bench: setup\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M).group(1)
    recorded = {}
    for path in (BENCHMARKS / "results").glob("*_cpu.json"):
        command = json.loads(path.read_text()).get("command") or make_results.KNOWN_COMMANDS.get(path.stem)
        if isinstance(command, str):
            recorded[tuple(w for w in shlex.split(command) if not w.startswith("THP_MEM_ALLOC_ENABLE="))] = path.name
    lines = [shlex.split(line.replace("$(PY)", "python")) for line in target.splitlines()]
    assert len(lines) >= 10
    for words in lines:
        if "--device" in words:
            at = words.index("--device")
            assert words[at + 1] == "cpu", words
            words = words[:at] + words[at + 2:]
        assert tuple(words) in recorded, f"make bench runs {shlex.join(words)}, which wrote no file of benchmarks/results/"


def test_a_gpu_run_says_which_gpu_and_torch(make_results):
    """The GPU machine's torch is its own, not constraints.txt's: every GPU file's section names it."""
    for path in sorted((BENCHMARKS / "results").glob("*.json")):
        result = json.loads(path.read_text())
        if result.get("device") == "cuda":
            text = "\n".join(make_results.section(path, result))
            named = result.get("device_name") or result.get("run_by") or result.get("note")
            assert f"GPU run: " in text and f"torch {result['torch']}" in text and named and named in text, path.name
    from _results import device_name                    # what a new run records
    assert device_name(torch.device("cpu"))


def test_an_unknown_results_file_is_listed_with_its_fields(make_results, tmp_path):
    (tmp_path / "new_bench_cpu.json").write_text(json.dumps(
        {"benchmark": "something_new", "speedup": 3.25, "command": "python benchmarks/new.py --x 1",
         "per_size": {"a": 1}}))
    text = make_results.render(tmp_path)
    assert "### `new_bench_cpu.json`: `something_new` (no renderer yet" in text
    assert "| speedup | 3.25 |" in text and "`python benchmarks/new.py --x 1`" in text and "`per_size`" in text


def test_numbered_files_are_listed_in_numeric_order(make_results, tmp_path):
    for number in (10, 2, 1):
        (tmp_path / f"round_{number}_cpu.json").write_text(json.dumps({"benchmark": "x", "command": "c"}))
    text = make_results.render(tmp_path)
    places = [text.index(f"### `round_{number}_cpu.json`") for number in (1, 2, 10)]
    assert places == sorted(places)


def test_files_are_grouped_by_part_with_the_default_runs_first(make_results, tmp_path, monkeypatch):
    monkeypatch.setattr(make_results, "RENDERERS", {name: lambda r: [] for name in make_results.RENDERERS})
    monkeypatch.setattr(make_results, "SUBTITLES", {})                      # the bodies are not under test
    runs = {"est_seed1_cpu": {}, "est_cpu": {}, "est_a_cpu": {"mn_params": {"width": 128}},
            "est_held_out_cpu": {"held_out": True}, "draws_cpu": None, "spiral_cpu": None, "new_cpu": None}
    benchmarks = {"draws_cpu": "estimators_draws", "spiral_cpu": "spiral_default", "new_cpu": "something_new"}
    for stem, extra in runs.items():
        (tmp_path / f"{stem}.json").write_text(json.dumps(
            {"benchmark": benchmarks.get(stem, "estimators"), "command": "c", **(extra or {})}))
    text = make_results.render(tmp_path)
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == ["## The spiral toy (notebook 01)", "## MN on tables (notebooks 06, 11)", "## Other results",
                        "## The papers' numbers (`nslviz.paper`)"]
    sections = [line.split("`")[1] for line in text.splitlines() if line.startswith("### `") and ".json`" in line]
    assert sections == ["spiral_cpu.json", "draws_cpu.json", "est_cpu.json", "est_seed1_cpu.json",
                        "est_held_out_cpu.json", "est_a_cpu.json", "new_cpu.json"]
    part = text.split("## MN on tables", 1)[1].split("\n### ", 1)[0]    # the part's own index lists its files
    assert "| `est_a_cpu.json` |" in part and "| `new_cpu.json` |" not in part
    assert "Parts: The spiral toy (notebook 01) (1 file); MN on tables (notebooks 06, 11) (5 files)" in text


def test_every_renderer_belongs_to_a_part_of_the_page(make_results):
    placed = {name for _, _, names in make_results.TOPICS for name in names}
    assert set(make_results.RENDERERS) <= placed, set(make_results.RENDERERS) - placed


def test_a_registered_renderer_writes_the_section(make_results, tmp_path, monkeypatch):
    monkeypatch.setattr(make_results, "RENDERERS", dict(make_results.RENDERERS))
    monkeypatch.setattr(make_results, "TITLES", dict(make_results.TITLES))
    make_results.renders("race", "The race")(lambda r: make_results.table(["winner"], [[r["winner"]]]))
    (tmp_path / "race_cpu.json").write_text(json.dumps({"benchmark": "race", "winner": "backbone"}))
    text = make_results.render(tmp_path)
    assert "### `race_cpu.json`: The race" in text and "| backbone |" in text
    assert "Command: (not recorded)" in text


def test_check_fails_on_a_stale_page_and_passes_once_written(make_results, tmp_path, capsys):
    out = tmp_path / "RESULTS.md"
    out.write_text("# Results\n\nhand-edited\n")
    assert make_results.main(["--check", "--out", str(out)]) == 1
    assert "make results" in capsys.readouterr().err
    assert make_results.main(["--out", str(out)]) == 0
    assert make_results.main(["--check", "--out", str(out)]) == 0


def test_the_page_puts_every_paper_table_beside_the_measurements(make_results):
    from nslviz import paper
    text = make_results.render()
    assert "| convnet4 | mnist | 99.44 | 99.60 |" in text                      # MN Table 1, as printed
    assert f"| dynamic_dns | {paper.NSL_TABLE4['dynamic_dns', 'cifar10']} |" in text
    assert "| gom | 1,059 | 116 |" in text                                     # MN Table 2
    assert "| 0.6236 ± 0.0056 | 0.6088 ± 0.0050 |" in text                     # with the paper's decimals
    assert "| 0.00121 ± 0.00022 |" in text and "| 0.1132 ± 0.0060 |" in text


def test_a_benchmark_run_as_a_script_records_its_command(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    results = importlib.import_module("_results")
    monkeypatch.setattr(sys, "argv", [str(BENCHMARKS / "bench_spiral.py"), "--repeats", "1", "--out", "a b.json"])
    saved = results.save_result({"x": 1}, "x", tmp_path / "x.json")
    assert saved["command"] == "python benchmarks/bench_spiral.py --repeats 1 --out 'a b.json'"
    monkeypatch.setattr(sys, "argv", ["pytest"])                            # called from a test: nothing
    assert "command" not in results.save_result({"x": 1}, "x", tmp_path / "y.json")


def test_the_race_shows_the_attended_values_spread_over_seeds(make_results):
    """The dictionary read alone, per arm: its mean and, where the report has them, the lowest and highest
    seed's accuracy (a mean near chance may hide one seed whose dictionary learned)."""
    entry = {"attended_value_acc": 9.64, "attended_value_acc_per_seed": [0.0528, 0.1806, 0.09]}
    assert make_results._attended(entry) == "9.6 % (5.3 – 18.1)"
    assert make_results._attended({"attended_value_acc": 9.64}) == "9.6 %"
    assert make_results._attended({"mean_test_acc": 98.0}) is None                 # a vanilla arm


def test_a_race_names_its_cpu_and_promises_a_spread_only_where_it_has_one(make_results):
    arms = {"joint": {"mean_test_acc": 98.0, "seeds": [0, 1], "attended_value_acc": 9.6},
            "vanilla": {"mean_test_acc": 98.5, "seeds": [0, 1]}}
    race = {"benchmark": "mn_race", "report": {"digits": arms}, "iterations": 10, "warmup": 2, "seeds": [0, 1],
            "adam_noise_floor": 0.183, "environment": {"device_name": "Intel(R) Xeon(R) Processor", "threads": 1}}
    text = "\n".join(make_results.RENDERERS["mn_race"](race))
    assert "Measured on Intel Xeon Processor, 1 thread(s)." in text and "lowest – highest" not in text
    assert make_results.describe(race, "mn_race_cpu").endswith(": measured on Intel Xeon Processor")
    arms["joint"]["attended_value_acc_per_seed"] = [0.05, 0.14]
    text = "\n".join(make_results.RENDERERS["mn_race"](race))
    assert "(seeds: lowest – highest)" in text and "9.6 % (5.0 – 14.0)" in text


def test_mn_table3_agrees_with_table1_and_its_commands_parse(make_results):
    """Table 3's cos-adamw, MAXL and ft:1+S columns are Table 1's vanilla, MAXL and MN columns (a typo in
    either table shows here), and every column's options are a train command's."""
    from nslviz import paper
    from nslviz.__main__ import build_parser
    for key, row in paper.MN_TABLE3.items():
        table3, table1 = dict(zip(paper.MN_TABLE3_COLUMNS, row)), paper.mn_table1_row(*key)
        assert (table3["vanilla_cos_adamw"], table3["maxl"], table3["mn_1_scalar"]) == \
            (table1["vanilla"], table1["maxl"], table1["mn"]), key
    assert set(paper.MN_TABLE3_OPTIONS) == set(paper.MN_TABLE3_COLUMNS)
    from nslviz.cli.train import config_from_args
    configs = {column: config_from_args(build_parser().parse_args(["train", "--dataset", "digits", *options.split()]))
               for column, options in paper.MN_TABLE3_OPTIONS.items()}
    assert (configs["vanilla_dot_sgd"].classifier, configs["vanilla_dot_sgd"].optimizer) == ("dot", "sgd")
    assert (configs["mn_3_diagonal"].inner_steps, configs["mn_3_diagonal"].step_size) == (3, "diagonal")
    assert configs["maxl"].method == "maxl"
    # on every row, each column trains the official length, or (SGD outside CIFAR) asks for one
    for backbone, dataset in paper.MN_TABLE3:
        for column, options in paper.MN_TABLE3_OPTIONS.items():
            argv = ["train", "--dataset", dataset, "--backbone", backbone, *options.split()]
            try:
                config = config_from_args(build_parser().parse_args(argv))
            except ValueError as error:
                assert "sgd" in column and "give one (--iterations or --epochs" in str(error), (dataset, column)
                continue
            assert config.iterations is not None or config.epochs == 200, (dataset, column)   # maxl: 200 epochs
    text = make_results.render()
    assert "| densenet40 | cifar100 | 73.85 | 73.68 | 74.08 | 73.92 | 75.64 | 76.32 | 77.20 | 76.04 | 76.42 |" in text
    assert "MAXL has no implementation" not in text


def test_the_gratings_table_shows_every_seed(make_results):
    """On the generated gratings the seeds disagree (the dynamic network ahead on some, far behind on
    others), so the page shows each seed's accuracy beside the mean and the paired difference."""
    result = {"benchmark": "synthetic_nsl", "epochs": 4, "predictor_lr_scale": 0.1, "seeds": [0, 1],
              "backbone": "cnn9", "image_size": 16, "batch_size": 64, "threads": 2, "optimizer": "adamw, lr 0.001",
              "test_acc": {"cnn": [0.783, 0.776], "dynamic_dns": [0.849, 0.132]},
              "mean_test_acc": {"cnn": 0.7795, "dynamic_dns": 0.4905},
              "vs_vanilla": {"cnn": None, "dynamic_dns": {"above": 1, "level": 0, "below": 1,
                                                          "mean_difference_points": -28.9, "ci95_points": None}},
              "parameters": {"cnn": 10, "dynamic_dns": 20}, "mean_seconds": {"cnn": 16.0, "dynamic_dns": 69.0}}
    text = "\n".join(make_results.RENDERERS["synthetic_nsl"](result))
    assert "| dynamic_dns | 49.0 % | 84.90 % / 13.20 % | -28.90, 1/0/1 |" in text
    assert make_results.describe(result, "x") == ("NSL variants on the generated gratings: cnn, dynamic_dns; 4 epochs, "
                                                  "the predictors' learning rate × 0.1")
    assert "γ" not in text                                             # the official start (no field, or 1) unnamed
    result["predictor_gain_init"] = 0.0
    assert make_results.describe(result, "x").endswith("× 0.1, the predictors' output BatchNorm scale γ starting at 0")
    assert "× 0.1, the predictors' output BatchNorm scale γ starting at 0, 2 thread(s)" in \
        "\n".join(make_results.RENDERERS["synthetic_nsl"](result))


def test_an_nsl_row_missing_from_table_4_shows_the_paper_number_of_the_table_that_has_it(make_results):
    text = make_results.render()
    section = text.split("### `digits_nsl_predictor_ablations_cpu.json`:", 1)[1].split("\n### ", 1)[0]
    assert "| dynamic_dns_cnn_predictor |" in section and "| 92.96 (Table 1) |" in section  # 100 − 7.04
    assert "| 93.15 |" in section                   # dynamic_dns: Table 4's own number, without a table named


def test_the_papers_numbers_where_the_page_quotes_them():
    """A few cells read off the papers by hand, so that a typo in nslviz.paper fails here and not only
    once RESULTS.md is written again from it (which would carry the typo along)."""
    from nslviz.paper import MN_TABLE1, MN_TABLE2, NSL_TABLE4, mn_table1_row, nsl_table4_row
    assert MN_TABLE1[("resnet29", "cifar100")] == (76.51, 77.94, 77.16, 78.84, 79.84)
    assert MN_TABLE1[("resnet56_64", "imagenet64")] == (48.41, 48.83, 52.03, 51.85, 54.23)
    assert mn_table1_row("resnet29_64", "cifar100")["mn_ifilm"] == 79.84         # the 64-px build, the same row
    assert MN_TABLE2["gom"] == {"n": 1_059, "d": 116, "knn": (0.5982, 0.0521), "vanilla": (0.5949, 0.0515),
                                "mn": (0.5681, 0.0563)}
    assert MN_TABLE2["music"]["mn"] == (0.6088, 0.0050)
    assert (NSL_TABLE4[("dynamic_dns", "cifar100")], NSL_TABLE4[("dynamic_uns", "cifar10")]) == (27.81, 6.5)
    assert nsl_table4_row("cifar10")["dynamic_dns"] == 93.15                          # 100 - 6.85


def test_sub_category_discovery_shows_each_seed_the_paired_differences_and_the_paper(make_results):
    row = {"seed": 0, "test_acc": {"vanilla": 0.9, "mn": 0.95}, "vanilla_features": {"fine_acc": 0.96, "coarse_acc": 0.97},
           "mn_attention": {"fine_acc": 0.94, "coarse_acc": 0.97}, "mn_features": {"fine_acc": 0.96, "coarse_acc": 0.98}}
    difference = {"mean_difference_points": -2.0, "ci95_points": [-3.0, -1.0], "above": 0, "level": 0, "below": 1}
    result = {"benchmark": "subcategory_digits", "per_seed": [row], "seeds": [0], "k": 5, "epochs": 3,
              "mn_start": "vanilla", "coarse_labels": "5 pairs of look-alike digits",
              "mn_attention_minus_vanilla": {"fine": difference, "coarse": difference},
              "mn_features_minus_vanilla": {"fine": difference, "coarse": difference},
              "paper": {"vanilla": {"coarse": 80.3, "fine": 59.28}, "mn": {"coarse": 80.18, "fine": 63.3}},
              "environment": {"device_name": "AMD EPYC", "threads": 2}}
    text = "\n".join(make_results.RENDERERS["subcategory_digits"](result))
    assert "| seed 0 | 90.0 % | 95.0 % | 97.0 % | 97.0 % | 98.0 % | 96.0 % | 94.0 % | 96.0 % |" in text
    assert "-2.00 [-3.00, -1.00], 0/0/1" in text and "59.28 %" in text and "63.3 %" in text
    assert make_results.describe(result, "subcategory_digits_cpu").endswith("S = 100, 3 epochs, 1 seeds, measured on AMD EPYC")


def test_a_runs_paper_row_follows_table_3_where_its_settings_are_a_table_3_variant():
    from nslviz.paper import MN_TABLE1, MN_TABLE3, MN_TABLE3_COLUMNS, mn_paper_row, mn_table1_row
    for key in MN_TABLE1:                                # Table 1's recipe: Table 1's five columns
        assert mn_paper_row(*key) == mn_table1_row(*key)
    for key, row in MN_TABLE3.items():
        table3 = dict(zip(MN_TABLE3_COLUMNS, row))
        for classifier, optimizer in (("dot", "sgd"), ("dot", "adamw"), ("cosine", "sgd")):
            name = "cos" if classifier == "cosine" else "dot"
            assert mn_paper_row(*key, classifier=classifier, optimizer=optimizer) == {
                "vanilla": table3[f"vanilla_{name}_{optimizer}"], "maxl": table3["maxl"]}
        for steps, form in ((1, "diagonal"), (3, "scalar"), (3, "diagonal")):
            got = mn_paper_row(*key, inner_steps=steps, step_size=form)
            assert got["mn"] == table3[f"mn_{steps}_{form}"] and "mn_ifilm" not in got
            assert got["vanilla"] == table3["vanilla_cos_adamw"]
    assert mn_paper_row("convnet4", "pacs", inner_steps=3) == {"vanilla": 92.55, "maxl": 94.85, "vanilla_ifilm": 94.45}
    assert mn_paper_row("convnet4", "digits") is None


def test_every_64_pixel_backbone_takes_its_32_pixel_networks_row_unless_it_has_its_own():
    """resnet29_64 and densenet40_64 took their 32-pixel network's row, resnet56_64 (notebook 04's first
    choice for Tiny-ImageNet) none: `paper %` stayed empty beside its runs."""
    from nslviz.paper import MN_TABLE1, mn_paper_row, mn_table1_row
    for backbone in ("resnet29", "resnet56", "densenet40"):
        assert mn_table1_row(f"{backbone}_64", "tiny-imagenet") == mn_table1_row(backbone, "tiny-imagenet")
        assert mn_paper_row(f"{backbone}_64", "tiny-imagenet", inner_steps=3) == mn_paper_row(
            backbone, "tiny-imagenet", inner_steps=3)
    assert mn_table1_row("convnet4_64", "svhn") == mn_table1_row("convnet4", "svhn")
    assert mn_table1_row("resnet56_64", "imagenet64") == dict(zip(("vanilla", "maxl", "vanilla_ifilm", "mn", "mn_ifilm"),
                                                                  MN_TABLE1["resnet56_64", "imagenet64"]))
    assert mn_table1_row("resnet29_64", "imagenet64") is None and mn_table1_row("resnet56", "imagenet64") is None
