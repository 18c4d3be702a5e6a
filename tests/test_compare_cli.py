"""`python -m nslviz compare` trains what notebooks 03, 04 and 07 train: the same experiment function,
the same numbers, the same group folder rules."""
from __future__ import annotations

import dataclasses
import json

import pytest

from cli import run_in_process
from nslviz.experiments.compare import compare_methods, quick_config
from nslviz.training.config import TrainConfig


def _json(process) -> dict:
    assert process.returncode == 0, process.stderr[-2000:]
    return json.loads(process.stdout.strip().splitlines()[-1])


@pytest.mark.slow
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
        "--quick trains on digits or synthetic only, not --dataset cifar10; leave out --quick to train on cifar10" \
        in quick_and_dataset.stderr
    quick_and_device = run_in_process("compare", "--quick", "--methods", "mn", "--device", "cpu", "--amp", "off")
    assert quick_and_device.returncode == 2 and \
        "--quick chooses --device, --amp itself (16x16 images on the CPU, AdamW in place of SGD); leave them out" \
        in quick_and_device.stderr
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
                             "--nsl-options", '{"predictor_gain_init": 0}', "--run-dir", str(tmp_path / "v"), *tiny)
    assert vanilla.returncode == 0, vanilla.stderr[-2000:]
    assert "--entries changes nothing here (read by methods mn, mn_ifilm and vanilla_extra only)" in vanilla.stderr
    assert ("--nsl-options changes nothing here (read by runs with an --nsl mode and the spherenet9 backbones only)"
            in vanilla.stderr)
    assert "--momentum changes nothing here (read by optimizer sgd only)" in vanilla.stderr
    assert "--alpha changes nothing here (read by methods mn and mn_ifilm only)" in vanilla.stderr
    # an option that one of the compared methods reads is not named; one that none reads is
    both = run_in_process("compare", "--methods", "vanilla", "mn", "--entries", "50", "--maxl-hierarchy", "3",
                          "--group-dir", str(tmp_path / "g"), *tiny)
    assert both.returncode == 0, both.stderr[-2000:]
    assert "--entries" not in both.stderr and "--maxl-hierarchy changes nothing here (read by method maxl only)" in both.stderr
    # what the chosen run reads, and what the preset sets, is not named
    read = run_in_process("train", "--method", "mn", "--optimizer", "sgd", "--entries", "50", "--momentum", "0.5",
                          "--backbone", "cnn9", "--nsl", "static_dns", "--nsl-options", '{"dns_init": "official"}',
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
    assert process.stdout.count("compare: ") == 6                            # four runs, then one curve per method
    curve = {label.rsplit("=", 1)[1]: f"{s['test_acc']:.4f}" for label, s in summaries.items() if label.startswith("mn-")}
    assert f"compare: mn test acc by temperature: 0.1 {curve['0.1']} | 0.5 {curve['0.5']}" in process.stdout
    alone = run_in_process("compare", "--methods", "vanilla", "--sweep", "temperature", "0.1", "0.5",
                           "--group-dir", str(group), *tiny)
    assert alone.returncode == 0 and "--temperature changes nothing here (read by methods mn and mn_ifilm only)" \
        in alone.stderr                                                          # read back, and warned
    for args, message in ((("--sweep", "entrys", "10", "20"), "--sweep entrys: not a setting of train; expected one "
                                                              "of its options (did you mean entries?)"),
                          (("--sweep", "entries", "abc"), "--sweep entries: argument --entries: expected a positive "
                                                          "integer, got 'abc'"),
                          (("--sweep", "temperature"), "--sweep takes a setting and its values"),
                          (("--sweep", "method", "mn", "vanilla"), "--method is what tells the runs of --methods apart"),
                          (("--sweep", "lr", "0.1", "0.10"), "the values ['0.1', '0.10'] name the same runs"),
                          (("--lr", "0.1", "--sweep", "lr", "0.2", "0.3"), "--lr is given and swept"),
                          (("--mn-start", "vanilla", "--sweep", "alpha", "0.2", "0.3"),
                           "--mn-start vanilla sets --alpha of the MN runs itself"),
                          (("--quick", "--sweep", "entries", "50", "150"), "--quick chooses --entries itself")):
        refused = run_in_process("compare", "--methods", "mn", *args, "--group-dir", str(tmp_path / "bad"))
        assert refused.returncode == 2 and message in refused.stderr, (args, refused.stderr)
    assert not (tmp_path / "bad").exists()


def _run_configs(*args):
    from nslviz.__main__ import build_parser
    from nslviz.cli.compare import run_configs

    return run_configs(build_parser().parse_args(["compare", *args]))


def test_variants_train_their_table_s_recipe_as_train_nsl_variant_does(monkeypatch, capsys):
    """Without --preset, --variants trains the rows' own recipe on CNN-9 (as `train --nsl-variant`), not
    the MN defaults; --nsl-options read by a dynamic row is not called unread; --method beside --methods
    is refused, where it changed nothing."""
    from nslviz.__main__ import build_parser, main
    from nslviz.cli.train import config_from_args
    from nslviz.experiments.compare import nsl_variant_config
    table, = _run_configs("--variants", "cnn", "dynamic_dns").values()
    train = build_parser("train").parse_args(["train", "--nsl-variant", "dynamic_dns"])
    assert nsl_variant_config(table, "dynamic_dns") == config_from_args(train)
    assert (table.backbone, table.method, table.optimizer, table.classifier) == ("cnn9", "vanilla", "sgd", "dot")
    imagenet, = _run_configs("--variants", "cnn", "dynamic_dns", "--dataset", "imagenet64").values()
    on_imagenet = build_parser("train").parse_args(["train", "--nsl-variant", "dynamic_dns", "--dataset", "imagenet"])
    assert imagenet.backbone == config_from_args(on_imagenet).backbone == "cnn10"            # NSL Table 5's CNN-10
    global_rows, = _run_configs("--variants", "spherenet_attention").values()
    assert global_rows.optimizer == "adam"                                          # Table 8's preset, nsl_global
    with pytest.raises(ValueError, match="mixes rows trained with different recipes .*give --preset"):
        _run_configs("--variants", "cnn", "spherenet_attention")
    only_m, = _run_configs("--variants", "static_dns", "static_uns", "--similarity-only", "true",   # as train takes it
                           "--init-backbone", "runs/cnn").values()
    assert {nsl_variant_config(only_m, v).nsl for v in ("static_dns", "static_uns")} == {"static_dns", "static_uns"}
    monkeypatch.setattr("nslviz.cli.compare.compare_nsl_variants", lambda *args, **kwargs: {})
    assert main(["compare", "--variants", "cnn", "dynamic_dns", "--nsl-options", '{"predictor_gain_init": 0}',
                 "--no-progress"]) == 0
    assert "changes nothing" not in capsys.readouterr().err
    both = run_in_process("compare", "--methods", "vanilla", "--method", "mn")
    assert both.returncode == 2 and "--methods sets --method of each run itself" in both.stderr


def test_a_frozen_random_backbone_and_epochs_beside_iterations_are_named(monkeypatch, capsys):
    """--freeze-backbone without --init-backbone freezes a random backbone; --iterations sets the length,
    so an --epochs given beside it changes nothing: both said on stderr (train and compare alike)."""
    from nslviz.__main__ import main
    monkeypatch.setattr("nslviz.cli.compare.compare_methods", lambda *args, **kwargs: {})
    assert main(["compare", "--methods", "mn", "--freeze-backbone", "true", "--epochs", "3", "--iterations", "10",
                 "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "--freeze-backbone true without --init-backbone trains the head on the randomly initialised" in err
    assert "warning: --epochs changes nothing here (read by runs without --iterations" in err
    assert main(["compare", "--methods", "mn", "--epochs", "3", "--no-progress"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_each_swept_value_is_a_run_built_as_train_builds_it():
    """A swept value is an option given to `train`: what it implies comes with it (SGD's lr, L2 and
    milestones; a preset's official length), and a refusal of `train` is a refusal of the sweep."""
    from nslviz.__main__ import build_parser
    from nslviz.cli.train import config_from_args

    sgd = _run_configs("--methods", "vanilla", "--sweep", "optimizer", "adamw", "sgd")
    alone = config_from_args(build_parser().parse_args(["train", "--method", "vanilla", "--optimizer", "sgd"]))
    assert list(sgd) == ["-optimizer=adamw", "-optimizer=sgd"]
    assert (sgd["-optimizer=sgd"].lr, sgd["-optimizer=sgd"].weight_decay, sgd["-optimizer=sgd"].nesterov,
            sgd["-optimizer=sgd"].milestones) == (alone.lr, alone.weight_decay, alone.nesterov, alone.milestones)
    assert sgd["-optimizer=adamw"].weight_decay == 0.075 and alone.weight_decay == 2e-4
    lengths = _run_configs("--preset", "mn", "--dataset", "cifar100", "--methods", "mn", "--sweep", "epochs", "100", "200")
    assert [(c.epochs, c.iterations) for c in lengths.values()] == [(100, None), (200, None)]   # not 160k iterations
    datasets = _run_configs("--preset", "nsl", "--backbone", "cnn9", "--variants", "cnn", "--sweep", "dataset",
                            "cifar10", "cifar100")
    assert [c.iterations for c in datasets.values()] == [42_500, 42_500]
    with pytest.raises(ValueError, match="--preset nsl has no official length for tiny-imagenet"):
        _run_configs("--preset", "nsl", "--backbone", "cnn9", "--variants", "cnn", "--sweep", "dataset", "cifar10",
                     "tiny-imagenet")
    with pytest.raises(ValueError, match="--sweep backbone: --backbone is what tells the runs of --variants apart"):
        _run_configs("--preset", "nsl", "--variants", "cnn", "cnn++", "--sweep", "backbone", "cnn9", "cnn10")
    assert set(_run_configs("--methods", "mn", "--sweep", "backbone", "convnet4", "resnet29")) == {
        "-backbone=convnet4", "-backbone=resnet29"}                                # fine for methods


def test_quick_keeps_an_embedded_dataset_and_nothing_else():
    """--quick trains on digits unless --dataset names the other embedded set, the generated gratings
    (notebook 07's regime for dynamic similarity); quick_config refuses any other set by name."""
    from nslviz.experiments.compare import quick_config

    digits, = _run_configs("--quick", "--preset", "nsl", "--backbone", "cnn9", "--variants", "cnn").values()
    gratings, = _run_configs("--quick", "--preset", "nsl", "--backbone", "cnn9", "--variants", "cnn",
                             "--dataset", "synthetic", "--predictor-lr-scale", "0.1").values()
    assert (digits.dataset, gratings.dataset) == ("digits", "synthetic")
    assert dataclasses.replace(gratings, dataset="digits", predictor_lr_scale=1.0) == digits   # nothing else moves
    assert quick_config(TrainConfig.from_preset("nsl", backbone="cnn9"), dataset="synthetic") == dataclasses.replace(
        gratings, predictor_lr_scale=1.0)                                          # the CLI is the library call
    with pytest.raises(ValueError, match="unknown quick-mode dataset 'cifar10'; expected one of 'digits', 'synthetic'"):
        quick_config(TrainConfig.from_preset("nsl", backbone="cnn9"), dataset="cifar10")
    with pytest.raises(ValueError, match="--quick trains on digits or synthetic only, not --dataset cifar10"):
        _run_configs("--quick", "--methods", "mn", "--dataset", "cifar10")
    swept = _run_configs("--quick", "--methods", "vanilla", "--sweep", "dataset", "digits", "synthetic")
    assert [c.dataset for c in swept.values()] == ["digits", "synthetic"]
    with pytest.raises(ValueError, match="--quick trains on digits or synthetic only, not --sweep dataset: cifar10"):
        _run_configs("--quick", "--methods", "vanilla", "--sweep", "dataset", "digits", "cifar10")


def test_quick_refuses_more_epochs_than_it_trains_and_names_the_backbone_it_trains_instead(capsys):
    with pytest.raises(ValueError, match="--quick trains at most 4 epochs, got --epochs 10; give 4 epochs or fewer"):
        _run_configs("--quick", "--methods", "vanilla", "--epochs", "10")
    with pytest.raises(ValueError, match="--quick trains at most 4 epochs, got --sweep epochs: 8; give 4 epochs or fewer"):
        _run_configs("--quick", "--methods", "vanilla", "--sweep", "epochs", "2", "8")
    assert next(iter(_run_configs("--quick", "--methods", "vanilla", "--epochs", "3").values())).epochs == 3
    capsys.readouterr()
    config, = _run_configs("--quick", "--methods", "vanilla", "--backbone", "resnet29").values()
    assert config.backbone == "convnet4"
    assert "warning: --quick trains convnet4 in place of --backbone resnet29 (a small backbone on 16x16 images)" in \
        capsys.readouterr().err
    _run_configs("--quick", "--methods", "vanilla", "--sweep", "backbone", "resnet56_64", "densenet40_64")
    assert capsys.readouterr().err.count("trains convnet4_64 in place of") == 2    # one line for each swept value
    _run_configs("--quick", "--preset", "nsl", "--backbone", "cnn9", "--variants", "cnn")
    assert "in place of" not in capsys.readouterr().err                     # kept: nothing to say


def test_sweep_labels_keep_distinct_values_apart():
    from nslviz.experiments.compare import sweep_suffix

    assert sweep_suffix("temperature", 0.1000001) != sweep_suffix("temperature", 0.1000002)
    assert sweep_suffix("temperature", 0.9999999) != sweep_suffix("temperature", 1.0)
    assert (sweep_suffix("entries", 1000), sweep_suffix("learn_temperature", True)) == ("-entries=1000",
                                                                                        "-learn_temperature=true")
    assert sweep_suffix("init_backbone", "runs/a b") == "-init_backbone=runs_a_b"
    with pytest.raises(ValueError, match="name the same runs"):
        _run_configs("--methods", "mn", "--sweep", "init-backbone", "runs/a", "runs_a")


@pytest.mark.slow
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


def test_a_sweep_with_mn_start_vanilla_starts_each_value_from_its_own_vanilla_run(tmp_path, monkeypatch):
    import nslviz.experiments.compare as compare

    seen = {}
    monkeypatch.setattr(compare, "compare_runs", lambda configs, group, **_: seen.update(configs) or {})
    for suffix, config in _run_configs("--quick", "--mn-start", "vanilla", "--methods", "vanilla", "mn",
                                       "--sweep", "lr", "0.001", "0.003").items():
        compare.compare_methods(config, ["vanilla", "mn"], group_dir=tmp_path, mn_start="vanilla", label_suffix=suffix)
    assert list(seen) == ["vanilla-lr=0.001", "mn-lr=0.001", "vanilla-lr=0.003", "mn-lr=0.003"]
    assert seen["mn-lr=0.003"].init_backbone == str(tmp_path / "vanilla-lr=0.003") and seen["mn-lr=0.003"].lr == 0.003


def test_a_bad_option_under_torchrun_is_said_once(monkeypatch):
    """torchrun starts every rank with the same options: rank 0 prints the usage and the error, each
    other rank exits with the same code and one line naming its rank (the error may be its own), so
    the usage is not repeated N times."""
    bad = ("compare", "--quick", "--methods", "mn", "--dataset", "cifar10")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    first = run_in_process(*bad)
    monkeypatch.setenv("RANK", "1")
    other = run_in_process(*bad)
    assert first.returncode == other.returncode == 2
    assert "--quick trains on digits or synthetic only" in first.stderr
    assert other.stderr.endswith(" compare: error (rank 1): --quick trains on digits or synthetic only, not "
                                 "--dataset cifar10; leave out --quick to train on cifar10\n")
    assert other.stderr.count("\n") == 1 and "usage" not in other.stderr
    monkeypatch.delenv("WORLD_SIZE")                          # RANK alone (another launcher): every error is said
    assert "usage" in run_in_process(*bad).stderr
