"""`python -m nslviz compare` trains what notebooks 03, 04 and 07 train: the same experiment function,
the same numbers, the same group folder rules."""
from __future__ import annotations

import json

import pytest

from cli import run_in_process
from nslviz.experiments.compare import compare_methods, quick_config
from nslviz.training.config import TrainConfig


def _json(process) -> dict:
    assert process.returncode == 0, process.stderr[-2000:]
    return json.loads(process.stdout.strip().splitlines()[-1])


def test_compare_trains_the_notebooks_runs_and_reads_them_back(tmp_path):
    group = tmp_path / "group"
    first = _json(run_in_process("compare", "--methods", "vanilla", "mn", "--quick", "--epochs", "2",
                                 "--group-dir", str(group), "--no-progress", "--json"))
    assert set(first) == {"vanilla", "mn"}
    assert all((group / method / "best.pt").exists() for method in first)
    # the notebooks' call on the same settings finds the same runs and reads them back, unchanged
    notebook = compare_methods(quick_config(TrainConfig.from_preset("mn", epochs=2)), ["vanilla", "mn"],
                               group_dir=group, progress=False)
    assert {m: s["test_acc"] for m, s in notebook.items()} == {m: s["test_acc"] for m, s in first.items()}
    assert notebook["mn"]["seconds"] == first["mn"]["seconds"]                  # read back, not trained again
    # the same group with other settings is refused, naming what differs
    changed = run_in_process("compare", "--methods", "vanilla", "--quick", "--epochs", "2", "--lr", "0.01",
                             "--group-dir", str(group), "--no-progress")
    assert changed.returncode == 2 and "lr" in changed.stderr


def test_compare_takes_methods_or_variants_and_names_a_bad_one(tmp_path):
    both = run_in_process("compare", "--methods", "mn", "--variants", "cnn")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    neither = run_in_process("compare", "--dataset", "digits")
    assert neither.returncode == 2 and "one of the arguments --methods --variants is required" in neither.stderr
    unknown = run_in_process("compare", "--methods", "mnx")
    assert unknown.returncode == 2 and "invalid choice: 'mnx'" in unknown.stderr
    quick_and_dataset = run_in_process("compare", "--quick", "--methods", "mn", "--dataset", "cifar10", "--device", "cpu")
    assert quick_and_dataset.returncode == 2 and \
        "--quick chooses --dataset, --device itself (digits at 16x16 on the CPU, AdamW in place of SGD); leave them out" \
        in quick_and_dataset.stderr
    sgd_lr = run_in_process("compare", "--quick", "--preset", "nsl", "--variants", "cnn", "--lr", "0.05")
    assert sgd_lr.returncode == 2 and "--quick chooses --lr itself" in sgd_lr.stderr          # quick trains with AdamW
    afile = tmp_path / "afile"
    afile.write_text("")
    under_a_file = run_in_process("compare", "--quick", "--methods", "vanilla", "--group-dir", str(afile))
    assert under_a_file.returncode == 2 and f"{str(afile)!r} is a file, not a folder" in under_a_file.stderr


@pytest.mark.slow
def test_compare_runs_the_nsl_variants_of_notebook_07(tmp_path):
    summaries = _json(run_in_process("compare", "--variants", "cnn", "static_dns", "--preset", "nsl", "--backbone",
                                     "cnn9", "--quick", "--epochs", "1", "--group-dir", str(tmp_path),
                                     "--no-progress", "--json"))
    assert set(summaries) == {"cnn", "static_dns"}
    assert summaries["static_dns"]["nsl"] == "static_dns" and summaries["cnn"]["nsl"] == "none"


def test_options_no_run_reads_are_named_on_stderr(tmp_path):
    tiny = ("--epochs", "1", "--train-limit", "64", "--eval-limit", "64", "--val-size", "32", "--no-progress")
    vanilla = run_in_process("train", "--method", "vanilla", "--entries", "50", "--momentum", "0.5", "--alpha", "0.1",
                             "--run-dir", str(tmp_path / "v"), *tiny)
    assert vanilla.returncode == 0, vanilla.stderr[-2000:]
    assert "--entries changes nothing here (read by methods mn, mn_ifilm and vanilla_extra only)" in vanilla.stderr
    assert "--momentum changes nothing here (read by optimizer sgd only)" in vanilla.stderr
    assert "--alpha changes nothing here (read by methods mn and mn_ifilm only)" in vanilla.stderr
    # an option that one of the compared methods reads is not named; one that none reads is
    both = run_in_process("compare", "--methods", "vanilla", "mn", "--entries", "50", "--maxl-hierarchy", "3",
                          "--group-dir", str(tmp_path / "g"), *tiny)
    assert both.returncode == 0, both.stderr[-2000:]
    assert "--entries" not in both.stderr and "--maxl-hierarchy changes nothing here (read by method maxl only)" in both.stderr
    # what the chosen run reads, and what the preset sets, is not named
    read = run_in_process("train", "--method", "mn", "--optimizer", "sgd", "--entries", "50", "--momentum", "0.5",
                          "--run-dir", str(tmp_path / "m"), *tiny)
    assert read.returncode == 0 and "changes nothing" not in read.stderr


def test_mn_start_vanilla_refuses_the_settings_it_chooses(tmp_path):
    """--mn-start vanilla sets init_backbone, dictionary_init and alpha of every MN run: given as well,
    they would be overwritten without a word."""
    given = run_in_process("compare", "--quick", "--mn-start", "vanilla", "--methods", "vanilla", "mn", "--alpha", "0.1",
                           "--dictionary-init", "random")
    assert given.returncode == 2 and \
        "--mn-start vanilla sets --dictionary-init, --alpha of the MN runs itself" in given.stderr
    vanilla_only = run_in_process("compare", "--mn-start", "vanilla", "--methods", "vanilla", "--alpha", "0.1",
                                  "--epochs", "1", "--train-limit", "64", "--eval-limit", "64", "--val-size", "32",
                                  "--group-dir", str(tmp_path), "--no-progress")
    assert vanilla_only.returncode == 0, vanilla_only.stderr[-2000:]              # no MN run: nothing is overwritten
    assert "--alpha changes nothing here" in vanilla_only.stderr


def test_compare_sweeps_one_setting_over_every_method(tmp_path):
    """MN Fig. 8's ablations from one command: every method once per value of one train setting, each run
    in <group>/<method>-<setting>=<value> with that value stored; the values read as `train` reads them."""
    from nslviz.training.rundir import RunDirectory

    tiny = ("--epochs", "1", "--train-limit", "64", "--eval-limit", "64", "--val-size", "32", "--entries", "20",
            "--no-progress")
    group = tmp_path / "g"
    process = run_in_process("compare", "--methods", "vanilla", "mn", "--sweep", "temperature", "0.1", "0.5",
                             "--group-dir", str(group), *tiny, "--json")
    summaries = _json(process)
    assert set(summaries) == {"vanilla-temperature=0.1", "vanilla-temperature=0.5", "mn-temperature=0.1",
                              "mn-temperature=0.5"}
    stored = {label: RunDirectory(group / label, create=False).read_config()["temperature"] for label in summaries}
    assert stored == {label: float(label.rsplit("=", 1)[1]) for label in summaries}
    assert "--temperature changes nothing" not in process.stderr                 # mn reads it
    assert process.stdout.count("compare: ") == 4
    alone = run_in_process("compare", "--methods", "vanilla", "--sweep", "temperature", "0.1", "0.5",
                           "--group-dir", str(group), *tiny)
    assert alone.returncode == 0 and "--temperature changes nothing here (read by methods mn and mn_ifilm only)" \
        in alone.stderr                                                          # read back, and warned
    for args, message in ((("--sweep", "entrys", "10", "20"), "--sweep entrys: not a setting of train; expected one "
                                                              "of its options (did you mean entries?)"),
                          (("--sweep", "entries", "abc"), "--sweep entries: argument --entries: expected a positive "
                                                          "integer, got 'abc'"),
                          (("--sweep", "temperature"), "--sweep takes a setting and its values"),
                          (("--sweep", "method", "mn", "vanilla"), "'method' is what tells the methods apart"),
                          (("--sweep", "lr", "0.1", "0.1"), "a sweep over 'lr' needs distinct values"),
                          (("--lr", "0.1", "--sweep", "lr", "0.2", "0.3"), "--lr is given and swept"),
                          (("--mn-start", "vanilla", "--sweep", "lr", "0.2", "0.3"),
                           "--mn-start vanilla starts every MN run from one vanilla run")):
        refused = run_in_process("compare", "--methods", "mn", *args, "--group-dir", str(tmp_path / "bad"))
        assert refused.returncode == 2 and message in refused.stderr, (args, refused.stderr)
    assert not (tmp_path / "bad").exists()


def test_a_sweep_over_nsl_variants_keeps_what_tells_them_apart():
    from nslviz.experiments.compare import compare_nsl_variants, swept

    base = TrainConfig.from_preset("nsl", backbone="cnn9")
    configs = swept({"static_dns": base}, ("lr", [0.1, 0.05]))
    assert {label: c.lr for label, c in configs.items()} == {"static_dns-lr=0.1": 0.1, "static_dns-lr=0.05": 0.05}
    with pytest.raises(ValueError, match="'backbone' is what tells the variants apart"):
        compare_nsl_variants(base, ["cnn", "cnn++"], sweep=("backbone", ["cnn9", "cnn10"]))
    with pytest.raises(ValueError, match="unknown setting to sweep 'lrr'"):
        swept({"cnn": base}, ("lrr", [0.1]))
    with pytest.raises(ValueError, match="entries S must be >= 1, got 0"):
        swept({"cnn": base}, ("entries", [0, 10]))


def test_a_paper_recipe_on_an_embedded_set_says_its_run_is_short(tmp_path):
    """`--preset mn --dataset digits` with no length trains 5 epochs at the recipe's batch of 128, a few
    dozen steps: said on stderr, so that its low accuracy is not read as the method's."""
    tiny = ("--train-limit", "256", "--eval-limit", "64", "--val-size", "32", "--no-progress")
    short = run_in_process("train", "--preset", "mn", "--dataset", "digits", "--run-dir", str(tmp_path / "a"), *tiny)
    assert short.returncode == 0, short.stderr[-2000:]
    assert ("warning: --preset mn on digits trains the default 5 epochs at batch 128, a few dozen steps (no paper "
            "gives a length for digits); give --epochs") in short.stderr
    given = run_in_process("train", "--preset", "mn", "--dataset", "digits", "--epochs", "1", "--run-dir",
                           str(tmp_path / "b"), *tiny)
    assert given.returncode == 0 and "a few dozen steps" not in given.stderr
    import argparse
    import contextlib
    import io

    from nslviz.cli.train import warn_try_out

    said = io.StringIO()
    with contextlib.redirect_stderr(said):
        warn_try_out(TrainConfig.from_preset("maxl", dataset="digits"), argparse.Namespace(preset="maxl"))   # 200 epochs
        warn_try_out(TrainConfig.from_preset("mn", dataset="cifar10"), argparse.Namespace(preset="mn"))      # official
    assert said.getvalue() == ""
