"""The race between the backbone and the dictionary: the trainer's diagnostics (α, Adam's
signal-to-noise, changed predictions), the backbone_lr_scale and dictionary_warmup options, the
two-stage start of compare_methods, and the race experiment, its report, figure and command."""
import dataclasses
import json
import math

from pathlib import Path

import pytest
import torch

from nslviz.experiments.race import ARMS, MN_ARMS, arm_config, race_config, race_report, race_traces, run_race
from nslviz.models.classifier import build_image_model
from nslviz.training.config import TrainConfig
from nslviz.training.diagnostics import NOISE_FLOOR, adam_signal_to_noise, noise_floor
from nslviz.experiments.compare import compare_methods
from nslviz.training.optim import build_optimizer
from nslviz.training.rundir import load_run
from nslviz.training.trainer import train
from runs import TINY

pytestmark = pytest.mark.usefixtures("one_thread")


def test_config_checks_the_race_options():
    with pytest.raises(ValueError, match="backbone_lr_scale must be > 0, got 0"):
        TrainConfig(backbone_lr_scale=0)
    with pytest.raises(ValueError, match="dictionary_warmup must be an integer, got 2.5"):
        TrainConfig(dictionary_warmup=2.5)
    with pytest.raises(ValueError, match="dictionary_warmup 5 freezes the backbone for a while, and freeze_backbone"):
        TrainConfig(dictionary_warmup=5, freeze_backbone=True)


def test_backbone_lr_scale_gives_the_backbone_its_own_learning_rate():
    model = build_image_model("mn", "convnet4", 10, in_channels=1, image_size=16, entries=20)
    plain = build_optimizer(model, TrainConfig())
    assert [g["name"] for g in plain.param_groups] == ["decay", "no_decay"]       # scale 1: the paper's groups
    scaled = build_optimizer(model, TrainConfig(backbone_lr_scale=0.05))
    backbone = {id(p) for p in model.backbone.parameters()}
    for group in scaled.param_groups:
        in_backbone = {id(p) in backbone for p in group["params"]}
        assert len(in_backbone) == 1                                              # no group mixes the two
        assert group["lr"] == pytest.approx(1e-3 * (0.05 if in_backbone == {True} else 1))
    assert sum(len(g["params"]) for g in scaled.param_groups) == sum(len(g["params"]) for g in plain.param_groups)
    decays = {g["name"]: g["weight_decay"] for g in scaled.param_groups}
    assert decays == {"decay_backbone": 0.075, "no_decay_head": 0.0}             # the MN head is never decayed


def test_the_logged_learning_rate_is_the_configured_one_whatever_the_backbone_runs_at(tmp_path):
    """The metrics' lr column is config.lr on its schedule; the backbone's scaled rate is not the run's."""
    config = TrainConfig(**{**TINY, "method": "mn", "epochs": 1}, lr=0.002, backbone_lr_scale=0.1, milestones=())
    train(config, tmp_path, progress=False)
    row = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert row["lr"] == pytest.approx(0.002)


def test_adam_signal_to_noise_is_one_for_a_steady_gradient_and_the_floor_for_noise():
    torch.manual_seed(0)
    steady, noisy = torch.nn.Parameter(torch.zeros(2000)), torch.nn.Parameter(torch.zeros(2000))
    optimizer = torch.optim.Adam([steady, noisy], lr=1e-9)
    assert adam_signal_to_noise(optimizer, steady) is None                       # not stepped yet
    for _ in range(300):
        steady.grad = torch.full((2000,), 0.3)
        noisy.grad = torch.randn(2000)
        optimizer.step()
    assert adam_signal_to_noise(optimizer, steady) == pytest.approx(1.0, abs=1e-3)
    assert adam_signal_to_noise(optimizer, noisy) == pytest.approx(NOISE_FLOOR, rel=0.1)
    assert NOISE_FLOOR == pytest.approx(math.sqrt(2 / math.pi / 19)) and noise_floor(0.0) == pytest.approx(math.sqrt(2 / math.pi))
    # by hand: bias-corrected moments of the last step
    state = optimizer.state[noisy]
    t = float(state["step"])
    by_hand = ((state["exp_avg"] / (1 - 0.9 ** t)).abs() / ((state["exp_avg_sq"] / (1 - 0.999 ** t)).sqrt() + 1e-8)).mean()
    assert adam_signal_to_noise(optimizer, noisy) == pytest.approx(float(by_hand))


@pytest.fixture(scope="module")
def warm_run(tmp_path_factory):
    """An MN run whose backbone is frozen for its first 6 of 12 iterations (2 epochs of 6)."""
    config = TrainConfig(**{**TINY, "method": "mn"}, dictionary_warmup=6)
    run_dir = tmp_path_factory.mktemp("race") / "warm"
    return config, run_dir, train(config, run_dir, progress=False)


def test_an_mn_run_logs_the_race_after_every_epoch(warm_run):
    _, run_dir, summary = warm_run
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert row["step_size"] > 0 and 0 < row["keys_snr"] <= 1.0 + 1e-6 and 0 < row["values_snr"] <= 1.0 + 1e-6
        assert 0 <= row["val_changed_predictions"] <= 1 and 0 < row["val_attention_entropy_fraction"] <= 1
        assert row["val_attention_entropy_fraction"] == pytest.approx(row["val_attention_entropy"] / math.log(40))
    model, _, data = load_run(run_dir, which="last")
    assert rows[-1]["step_size"] == pytest.approx(float(model.head.inner_step_size.detach().abs()))


def test_warmup_freezes_the_backbone_then_trains_it(warm_run, tmp_path):
    config, _, _ = warm_run
    torch.manual_seed(config.seed)
    start = build_image_model("mn", "convnet4", 10, in_channels=1, image_size=16, entries=40)
    cut = dataclasses.replace(config, epochs=1)                                   # the 6 frozen iterations only
    train(cut, tmp_path / "cut", progress=False)
    after_warmup, _, _ = load_run(tmp_path / "cut", which="last")
    weights = lambda m: {n: p for n, p in m.backbone.named_parameters()}          # noqa: E731
    assert all(torch.equal(p, weights(start)[n]) for n, p in weights(after_warmup).items())
    assert not torch.equal(after_warmup.head.dictionary.keys, start.head.dictionary.keys)   # the head trained
    joint, _, _ = load_run(warm_run[1], which="last")
    assert any(not torch.equal(p, weights(start)[n]) for n, p in weights(joint).items())  # then the backbone too


def test_compare_methods_can_start_mn_from_the_vanilla_backbone(tmp_path):
    config = TrainConfig(**{**TINY, "epochs": 1})
    summaries = compare_methods(config, ["mn", "vanilla"], group_dir=tmp_path, progress=False, mn_start="vanilla")
    assert list(summaries) == ["vanilla", "mn"]                                   # vanilla first: mn starts from it
    stored = json.loads((tmp_path / "mn" / "config.json").read_text())
    assert stored["init_backbone"] == str(tmp_path / "vanilla") and stored["dictionary_init"] == "data"
    assert stored["alpha"] == 0.5
    assert json.loads((tmp_path / "vanilla" / "config.json").read_text())["init_backbone"] is None
    with pytest.raises(ValueError, match="unknown mn_start .warm.; expected one of .scratch., .vanilla."):
        compare_methods(config, ["mn"], group_dir=tmp_path, mn_start="warm")


def test_every_arm_changes_one_thing_and_has_a_vanilla_twin():
    base = race_config("digits", iterations=100, seed=3)
    assert (base.iterations, base.batch_size, base.entries, base.lr, base.temperature) == (100, 32, 200, 1e-3, 0.2)
    assert arm_config(base, "joint") == base
    assert arm_config(base, "backbone_lr_0.05").backbone_lr_scale == 0.05
    assert arm_config(base, "warmup", warmup=40).dictionary_warmup == 40
    assert arm_config(base, "data_started").dictionary_init == "data"
    for arm, (_, twin) in MN_ARMS.items():
        mn, vanilla = arm_config(base, arm), arm_config(base, twin)
        assert vanilla.method == "vanilla" and mn.method == "mn"
        assert (mn.backbone_lr_scale, mn.dictionary_warmup) == (vanilla.backbone_lr_scale, vanilla.dictionary_warmup)
    with pytest.raises(ValueError, match="unknown race arm .joint_training."):
        arm_config(base, "joint_training")
    with pytest.raises(ValueError, match="unknown race dataset .cifar10."):
        race_config("cifar10")


@pytest.fixture(scope="module")
def small_race(tmp_path_factory):
    root = tmp_path_factory.mktemp("race-root")
    return root, run_race(["digits"], ["joint", "warmup", "vanilla", "vanilla_warmup"], [0, 1], iterations=6,
                          warmup=3, root=root, progress=False)


def test_run_race_refuses_empty_lists_and_a_warmup_that_leaves_no_training():
    for arguments, message in ((dict(seeds=[]), "at least one of its seeds"), (dict(arms=[]), "at least one of its arms"),
                               (dict(datasets=[]), "at least one of its datasets"),
                               (dict(arms=["vanilla_warmup"], warmup=0), "warmup must be between 1 and iterations - 1 = 5"),
                               (dict(arms=["warmup"], warmup=6), "warmup must be between 1 .* got 6")):
        with pytest.raises(ValueError, match=message):
            run_race(**{"datasets": ["digits"], "arms": ["joint"], "seeds": [0], "iterations": 6, **arguments},
                     root="/nonexistent/never-written", progress=False)


def test_the_race_reads_a_copied_root_from_where_it_is_now(small_race, tmp_path):
    import shutil
    root, results = small_race
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    again = run_race(["digits"], ["joint"], [0, 0, 1], iterations=6, warmup=3, root=copy, progress=False)
    assert [Path(s["run_dir"]) for s in again["digits"]["joint"]] == [copy / "digits" / f"seed{k}" / "joint" for k in (0, 1)]
    assert race_traces(again["digits"]["joint"]) == race_traces(results["digits"]["joint"])   # same runs, read here


@pytest.mark.slow
def test_race_reports_paired_differences_seed_by_seed(small_race):
    root, results = small_race
    assert (root / "digits" / "seed1" / "vanilla_warmup" / "summary.json").is_file()
    report = race_report(results)["digits"]
    joint, vanilla = results["digits"]["joint"], results["digits"]["vanilla"]
    difference = [100 * (a["test_acc"] - b["test_acc"]) for a, b in zip(joint, vanilla)]
    assert report["joint"]["minus_vanilla_twin"]["mean_difference_points"] == pytest.approx(sum(difference) / 2, abs=1e-3)
    assert report["warmup"]["vanilla_twin"] == "vanilla_warmup"
    gain = [100 * (s["test_acc"] - s["test_acc_before_finetune"]) for s in joint]
    assert report["joint"]["after_minus_before"]["mean_difference_points"] == pytest.approx(sum(gain) / 2, abs=1e-3)
    last = [trace[-1]["step_size"] for trace in race_traces(joint)]
    assert report["joint"]["final_step_size"] == pytest.approx(sum(last) / 2, abs=1e-4)
    assert "after_minus_before" not in report["vanilla"]
    assert report["joint"]["attended_value_acc_per_seed"] == [round(s["test_attended_value_acc"], 4) for s in joint]
    # a second call reads the runs back instead of training them again
    again = run_race(["digits"], ["joint"], [0], iterations=6, warmup=3, root=root, progress=False)
    assert again["digits"]["joint"][0]["seconds"] == joint[0]["seconds"]


def test_race_report_signs_and_means_on_numbers_known_by_hand(monkeypatch):
    """The short runs above end with finetuning changing nothing (after == before): here the signs are
    checked on summaries written by hand. after − before and MN − its twin are in points, MN minus the other."""
    import nslviz.experiments.race as race
    monkeypatch.setattr(race, "race_traces", lambda summaries: [[{"step_size": 0.1, "keys_snr": 2.0, "values_snr": 5.0}]
                                                                 for _ in summaries])
    mn = [{"seed": s, "test_acc": a, "test_acc_before_finetune": b, "test_attended_value_acc": 0.9}
          for s, a, b in ((0, 0.60, 0.50), (1, 0.70, 0.65))]
    vanilla = [{"seed": 0, "test_acc": 0.55}, {"seed": 1, "test_acc": 0.66}]
    report = race_report({"digits": {"joint": mn, "vanilla": vanilla}})["digits"]
    assert report["joint"]["after_minus_before"]["mean_difference_points"] == pytest.approx(7.5)     # (10 + 5) / 2
    assert report["joint"]["minus_vanilla_twin"]["mean_difference_points"] == pytest.approx(4.5)     # (5 + 4) / 2
    assert report["joint"]["mean_test_acc"] == 65.0 and report["vanilla"]["mean_test_acc"] == 60.5
    assert (report["joint"]["final_keys_snr"], report["joint"]["final_values_snr"]) == (2.0, 5.0)


def test_race_figure_draws_one_line_per_arm(small_race):
    from nslviz.viz.race import RACE_PANELS, race_curves, race_table
    _, results = small_race
    traces = {arm: race_traces(summaries) for arm, summaries in results["digits"].items()}
    fig = race_curves(traces, "race", classes=10)
    accuracy = [trace for trace in fig.data if trace.xaxis in ("x", None)]
    assert sorted(trace.name for trace in accuracy) == sorted(traces)           # every arm, vanilla twins included
    epochs = len(traces["joint"][0])
    assert epochs >= 1 and all(len(trace.x) == epochs for trace in fig.data)     # a point per epoch
    keys_panel = [trace for trace in fig.data if trace.xaxis == "x5"]
    assert sorted(trace.name for trace in keys_panel) == ["joint", "warmup"]      # MN arms only
    assert fig.layout.title.text == "race" and len(RACE_PANELS) == 6
    # accuracies on 0..1; the share of changed predictions (a few %) on its own scale from 0
    assert list(fig.layout.yaxis.range) == list(fig.layout.yaxis2.range) == [0, 1.02]
    assert fig.layout.yaxis3.range is None and fig.layout.yaxis3.rangemode == "tozero"
    table = race_table(race_report(results)["digits"])
    assert list(table.index) == list(results["digits"]) and (table["seeds"] == 2).all()
    assert table.loc["vanilla", "attended values %"] == ""                     # blank, not NaN
    seeds = [100 * a for a in race_report(results)["digits"]["joint"]["attended_value_acc_per_seed"]]
    assert table.loc["joint", "lowest – highest seed %"] == f"{min(seeds):.1f} – {max(seeds):.1f}"
    low, high = race_report(results)["digits"]["joint"]["attended_value_acc_ci95"]
    assert table.loc["joint", "attended values 95 % interval"] == f"{low:.1f} – {high:.1f}"
    joint = race_report(results)["digits"]["joint"]                            # one precision a column
    assert table.loc["joint", "test acc %"] == f"{joint['mean_test_acc']:.1f}"
    assert table.loc["joint", "α"] == f"{joint['final_step_size']:.3f}"
    older = {arm: {k: v for k, v in entry.items() if k != "attended_value_acc_per_seed"}   # a file without them
             for arm, entry in race_report(results)["digits"].items()}
    assert "lowest – highest seed %" not in race_table(older).columns        # no column of blanks
    one_seed = {arm: {**entry, "attended_value_acc_per_seed": entry.get("attended_value_acc_per_seed", [])[:1]}
                for arm, entry in race_report(results)["digits"].items()}
    assert "lowest – highest seed %" not in race_table(one_seed).columns     # one seed: "2.8 – 2.8" says nothing
    with pytest.raises(ValueError, match="at least one arm"):
        race_curves({}, "race")
    # the end of the warm-up arm's frozen start, in every panel, when that arm is drawn
    marked = race_curves(traces, "race", classes=10, warmup=3)
    lines = [shape for shape in marked.layout.shapes if shape.x0 == shape.x1 == 3]
    assert len(lines) == len(RACE_PANELS) and "warm-up ends" in [a.text for a in marked.layout.annotations]
    assert all(a.text for a in marked.layout.annotations)    # none without text (drawn as "new text")
    without = {arm: arm_traces for arm, arm_traces in traces.items() if "warmup" not in arm}
    assert not [shape for shape in race_curves(without, "race", warmup=3).layout.shapes if shape.x0 == 3]


def test_an_arms_curve_is_the_mean_over_its_seeds_up_to_the_epochs_every_seed_has():
    """A seed with fewer epochs (still running, or cut) shortens the arm's curve to its length; a seed
    without the key is left out of the mean."""
    from nslviz.viz.race import mean_trace
    def rows(*accuracies):
        return [{"iteration": 6 * (epoch + 1), "val_acc": accuracy} for epoch, accuracy in enumerate(accuracies)]

    iterations, mean = mean_trace([rows(0.2, 0.4, 0.6), rows(0.4, 0.6)], "val_acc")
    assert iterations.tolist() == [6, 12] and mean.tolist() == pytest.approx([0.3, 0.5])
    older = [{"iteration": 6}, {"iteration": 12}]                            # a seed whose rows lack val_acc
    iterations, mean = mean_trace([rows(0.2, 0.4, 0.6), older], "val_acc")
    assert iterations.tolist() == [6, 12] and mean.tolist() == pytest.approx([0.2, 0.4])


def test_race_command_prints_every_arm_and_json(tmp_path, capsys):
    from nslviz.__main__ import main
    assert main(["race", "--datasets", "digits", "--arms", "joint", "vanilla", "--seeds", "0", "0", "--iterations", "4",
                 "--warmup", "2", "--root", str(tmp_path), "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("race: digits joint") and "- vanilla" in out[0]
    report = json.loads(out[-1])
    assert set(report["report"]["digits"]) == {"joint", "vanilla"}
    assert report["seeds"] == [0] == report["report"]["digits"]["joint"]["seeds"]      # a repeated seed runs once
    assert set(ARMS) >= set(MN_ARMS)
    # a longer race into the same root: refused naming the race's own options, replaced with --overwrite
    longer = ["race", "--datasets", "digits", "--arms", "vanilla", "--seeds", "0", "--iterations", "8",
              "--root", str(tmp_path)]
    with pytest.raises(SystemExit, match="2"):
        main(longer)
    err = capsys.readouterr().err
    assert "holds a vanilla run with other settings (iterations: 4 -> 8)" in err
    assert "CLI --overwrite" in err and "another root (notebook 09's run_dir, CLI --root)" in err
    assert "--group-dir" not in err
    assert main([*longer, "--overwrite"]) == 0


def test_only_the_deep_backbones_end_with_a_relu_in_dot_mode():
    """The official 4-layer ConvNet never ends with a ReLU; the official ResNet/DenseNet do with --dot."""
    dot = build_image_model("vanilla", "convnet4", 10, in_channels=1, image_size=16, classifier="dot")
    assert dot.backbone.final_relu is False
    assert build_image_model("vanilla", "resnet29", 10, classifier="dot").backbone.final_relu is True
    assert build_image_model("vanilla", "resnet29", 10, classifier="cosine").backbone.final_relu is False


def test_dictionary_warmup_under_torchrun_is_refused_before_the_run_directory_is_touched(tmp_path, monkeypatch):
    """The refusal comes before anything is written: with --overwrite, a later refusal would already have
    removed the previous run in the folder."""
    run = tmp_path / "run"
    run.mkdir()
    kept = {"best.pt": b"weights", "summary.json": b"{}", "checkpoint.pt": b"state"}
    for name, content in kept.items():
        (run / name).write_bytes(content)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ValueError, match="dictionary_warmup is a single-process diagnostic"):
        train(TrainConfig(method="mn", dictionary_warmup=2, **TINY), run, overwrite=True, progress=False)
    assert {path.name: path.read_bytes() for path in run.iterdir()} == kept


def test_a_warmup_longer_than_the_run_is_refused_before_the_run_directory_is_touched(tmp_path):
    """A warm-up longer than the run never ends, and the backbone never trains: a frozen-backbone run by
    mistake, which exited 0. Refused before --overwrite removes the run already in the folder (a run of
    the warm-up alone stays possible: the test above)."""
    run = tmp_path / "run"
    run.mkdir()
    kept = {"best.pt": b"weights", "summary.json": b"{}", "checkpoint.pt": b"state"}
    for name, content in kept.items():
        (run / name).write_bytes(content)
    with pytest.raises(ValueError, match=r"dictionary_warmup 100000 \(CLI --dictionary-warmup\) is longer than the "
                                         r"whole run of \d+ iterations, so the backbone would never train.*freeze_backbone"):
        train(TrainConfig(method="mn", dictionary_warmup=100_000, **TINY), run, overwrite=True, progress=False)
    assert {path.name: path.read_bytes() for path in run.iterdir()} == kept


def test_the_attended_values_interval_stays_within_an_accuracys_range():
    from nslviz.experiments.race import _interval
    from nslviz.analysis.paired import paired_difference

    assert _interval([0.9]) is None
    assert _interval([0.2, 0.95]) == [0.0, 100.0]                   # two seeds: t = 12.7 reaches past both ends
    five = [0.61, 0.64, 0.58, 0.66, 0.6]
    assert _interval(five) == paired_difference(five, [0.0] * 5)["ci95_points"]   # inside the range: unchanged
