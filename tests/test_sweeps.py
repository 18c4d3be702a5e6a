"""MN appendix A.4 (Fig. 8): the S and T sweeps of the MN head on clusters (experiments.heads.sweep_clusters,
`heads --sweep`), the curves of a `compare --sweep` group read back (experiments.compare.read_sweep) and the
figure that draws either (viz.training.sweep_figure)."""
from __future__ import annotations

import json
import math

import pytest

from cli import run_in_process
from nslviz.experiments.compare import read_sweep, sweep_suffix
from nslviz.experiments.heads import HeadTraining, sweep_clusters
from nslviz.training.rundir import RunDirectory
from nslviz.viz import training as training_viz

SMALL = dict(steps=120, eval_every=60, train_size=400, test_size=200)


def test_a_sweep_changes_only_its_setting_and_more_entries_help():
    """Each value is one run with that S (or T) and everything else equal; on 24 clusters three entries
    are too few for MN, a hundred are not."""
    results = sweep_clusters("entries", [3, 100], **SMALL)
    assert list(results) == [3, 100]
    assert [r.training.entries for r in results.values()] == [3, 100]
    assert {r.training.temperature for r in results.values()} == {0.2}
    assert results[100].final["mn_acc"] > results[3].final["mn_acc"] + 0.1
    hot = sweep_clusters("temperature", [0.05, 3.0], entries=50, **SMALL)
    assert [r.training.temperature for r in hot.values()] == [0.05, 3.0]
    # T = 3 spreads the attention: its entropy is near log S, T = 0.05's far below
    assert hot[3.0].final["attention_entropy"] > 0.9 * math.log(50) > hot[0.05].final["attention_entropy"]
    # the baseline stays put: the vanilla head starts, trains and scores alike for every S and T
    for sweep in (results, hot):
        curves = [[row["vanilla_acc"] for row in r.history] for r in sweep.values()]
        assert curves[0] == curves[1]


@pytest.mark.parametrize("setting, values, message", [
    ("dim", [8, 16], "unknown sweep setting 'dim'"),
    ("entries", [], "distinct values of entries"),
    ("temperature", [0.1, 0.1], "distinct values of temperature"),
])
def test_bad_sweeps_are_named(setting, values, message):
    with pytest.raises(ValueError, match=message):
        sweep_clusters(setting, values, **SMALL)


def test_temperature_is_checked():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        HeadTraining(temperature=0)


def test_read_sweep_gives_each_methods_curve_in_order(tmp_path):
    """The folders compare --sweep writes, <method>-<setting>=<value>, read back as curves; other folders
    and unfinished runs are left out."""
    for method, value, accuracy in (("mn", 10000, 0.76), ("mn", 1000, 0.70), ("vanilla", 1000, 0.68)):
        RunDirectory(tmp_path / f"{method}{sweep_suffix('entries', value)}").write_summary({"test_acc": accuracy})
    RunDirectory(tmp_path / f"mn{sweep_suffix('entries', 5000)}")                  # started, not finished
    RunDirectory(tmp_path / "mn").write_summary({"test_acc": 0.5})                  # not part of the sweep
    assert read_sweep(tmp_path, "entries") == {"mn": {1000.0: 0.70, 10000.0: 0.76}, "vanilla": {1000.0: 0.68}}
    assert list(read_sweep(tmp_path, "entries")["mn"]) == [1000.0, 10000.0]          # in order: a curve's x
    with pytest.raises(ValueError, match="no finished runs of a temperature sweep"):
        read_sweep(tmp_path, "temperature")
    with pytest.raises(ValueError, match="has no 'top5'"):
        read_sweep(tmp_path, "entries", metric="top5")
    with pytest.raises(ValueError, match="no group folder"):
        read_sweep(tmp_path / "missing", "entries")


def test_read_sweep_takes_named_values_and_the_commands_spelling(tmp_path):
    """--sweep dictionary-init random data writes folders named by text; variants keep their names."""
    for label, accuracy in (("mn-dictionary_init=random", 0.70), ("mn-dictionary_init=data", 0.80),
                            ("dynamic_dns-dictionary_init=data", 0.60)):
        RunDirectory(tmp_path / label).write_summary({"test_acc": accuracy})
    curves = read_sweep(tmp_path, "--dictionary-init")
    assert curves == {"dynamic_dns": {"data": 0.60}, "mn": {"data": 0.80, "random": 0.70}}
    fig = training_viz.sweep_figure({"dictionary_init": curves}, "by start")
    assert fig.layout.xaxis.type == "category" and list(fig.layout.xaxis.categoryarray) == ["data", "random"]
    RunDirectory(tmp_path / "mn-dictionary_init=1").write_summary({"test_acc": 0.5})
    RunDirectory(tmp_path / "mn-dictionary_init=1.0").write_summary({"test_acc": 0.5})
    with pytest.raises(ValueError, match="two runs of mn at dictionary_init = 1.0"):
        read_sweep(tmp_path, "dictionary_init")


def test_a_zero_in_a_sweep_gets_no_log_axis():
    fig = training_viz.sweep_figure({"weight_decay": {"mn": {0.0: 0.7, 0.001: 0.75}}}, "decay")
    assert fig.layout.xaxis.type == "category"


def test_sweep_figure_draws_one_panel_per_setting():
    results = sweep_clusters("entries", [3, 12], **SMALL)
    curves = training_viz.heads_sweep_curves(results)
    assert list(curves) == ["vanilla: cosine classifier", "MN", "MN dictionary alone (attended values)"]
    assert curves["MN"] == {3: results[3].final["mn_acc"], 12: results[12].final["mn_acc"]}
    assert len(set(curves["vanilla: cosine classifier"].values())) == 1          # vanilla has no S: flat
    fig = training_viz.sweep_figure({"entries": curves, "temperature": {"mn": {0.1: 0.9, 1.0: 0.7}}}, "S and T")
    assert fig.layout.title.text == "S and T"
    assert fig.layout.xaxis.title.text == "dictionary entries S" and fig.layout.xaxis2.title.text == "temperature T"
    assert fig.layout.xaxis.type == "log" and list(fig.layout.xaxis.tickvals) == [3, 12]
    assert fig.layout.yaxis.title.text == "test accuracy"
    assert [trace.name for trace in fig.data] == ["vanilla: cosine classifier", "MN",
                                                  "MN dictionary alone (attended values)", "MN"]
    assert not fig.layout.shapes                                                      # no classes: no chance line
    chance = training_viz.sweep_figure({"entries": curves, "temperature": curves}, "S and T", classes=4)
    assert [(shape.y0, shape.yref) for shape in chance.layout.shapes] == [(0.25, "y"), (0.25, "y2")]   # every panel
    with pytest.raises(ValueError, match="at least one setting"):
        training_viz.sweep_figure({}, "nothing")


def test_heads_command_sweeps_the_clusters():
    result = run_in_process("heads", "--sweep", "entries", "3", "24", "--steps", "60", "--eval-every", "30",
                            "--train-size", "300", "--test-size", "100", "--no-progress", "--json")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("heads: entries=3 |") and lines[1].startswith("heads: entries=24 |")
    summary = json.loads(lines[-1])
    assert summary["setting"] == "entries" and [r["entries"] for r in summary["runs"]] == [3, 24]
    hot = run_in_process("heads", "--temperature", "0.5", "--entries", "20", "--steps", "30", "--eval-every", "30",
                         "--train-size", "300", "--test-size", "100", "--no-progress", "--json")
    assert hot.returncode == 0, hot.stderr
    assert {k: json.loads(hot.stdout.strip().splitlines()[-1])[k] for k in ("temperature", "entries")} == \
        {"temperature": 0.5, "entries": 20}
    for args, message in ((["--sweep", "entries", "3", "x"], "--sweep entries: expected a positive integer, got 'x'"),
                          (["--sweep", "entries", "3", "6", "--entries", "50"], "--entries is given and swept"),
                          (["--sweep", "temperature", "0.1", "--temperature", "0.5"],
                           "--temperature is given and swept"),
                          (["--sweep", "dim", "3"], "--sweep takes a setting (entries or temperature)"),
                          (["--sweep", "entries", "3", "--run-dir", "runs/v"], "leave out --run-dir")):
        bad = run_in_process("heads", *args)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
