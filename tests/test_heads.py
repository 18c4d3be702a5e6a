"""MN's head alone on fixed features (nslviz.experiments.heads): the clusters toy, the frozen features of
a trained run, and their figure. The paper's randomly initialised dictionary must learn here, where
nothing but the head is trained."""
import json
import math
import subprocess
import sys

import pytest
import torch

from cli import run_in_process
from nslviz.datasets.toys import cluster_splits, make_clusters
from nslviz.models.classifier import build_image_model, build_mn_head
from nslviz.experiments.heads import HeadTraining, compare_heads, run_clusters
from nslviz.viz.training import heads_curves, heads_table

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = dict(steps=800, eval_every=400, train_size=2000, test_size=1000)


def test_clusters_are_unions_of_clusters_around_shared_centres():
    x, y = make_clusters(600, classes=3, clusters_per_class=2, dim=5, noise=0.0, seed=4)
    assert x.shape == (600, 5) and x.dtype == torch.float32 and y.dtype == torch.int64
    centres = torch.unique(x, dim=0)                                       # noise 0: the points are the centres
    assert len(centres) == 6 and torch.allclose(centres.norm(dim=1), torch.ones(6))
    for c in range(3):                                                     # every class holds two of them
        assert len(torch.unique(x[y == c], dim=0)) == 2
    x_train, y_train, x_test, _ = cluster_splits(50, 40, seed=1, classes=3, clusters_per_class=2, dim=5, noise=0.0)
    assert torch.equal(torch.unique(x_train, dim=0), torch.unique(x_test, dim=0))   # the same centres
    again = cluster_splits(50, 40, seed=1, classes=3, clusters_per_class=2, dim=5, noise=0.0)
    assert torch.equal(again[0], x_train) and torch.equal(again[1], y_train)
    assert not torch.equal(cluster_splits(50, 40, seed=2, classes=3, clusters_per_class=2, dim=5)[0], x_train)


@pytest.mark.parametrize("kwargs, match", [
    (dict(size=0), "size must be >= 1"), (dict(size=10, classes=1), "classes must be >= 2"),
    (dict(size=10, clusters_per_class=0), "clusters_per_class must be >= 1"),
    (dict(size=10, noise=-1.0), "noise must be >= 0")])
def test_clusters_reject_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_clusters(**kwargs)


def test_the_image_models_use_the_same_mn_head():
    torch.manual_seed(0)
    image_head = build_image_model("mn", "convnet4", 10, in_channels=1, image_size=16, entries=30).head
    torch.manual_seed(0)
    head = build_mn_head(image_head.feature_dim, 10, entries=30)
    assert repr(head) == repr(image_head)
    assert head.attention.entry_dropout == 0.5 and head.attention.temperature == pytest.approx(0.2)
    assert float(head.inner_step_size.detach()) == pytest.approx(0.05) and head.dictionary.key_init_std == 0.05


def test_with_several_clusters_per_class_the_random_dictionary_learns_and_mn_beats_one_prototype_per_class():
    result = run_clusters(clusters_per_class=6, **SMALL)
    first, last = result.history[0], result.final
    assert [row["step"] for row in result.history] == [0, 400, 800]
    assert first["attended_value_acc"] < 0.5 and first["step_size"] == pytest.approx(0.05)
    assert last["attended_value_acc"] > 0.9                                # the dictionary reads as a soft kNN
    assert last["attention_entropy"] < math.log(200) - 0.5                 # the attention is no longer uniform
    assert last["step_size"] > 0.1                                         # the outer loop made the step larger
    assert last["mn_acc"] > 0.95 and last["mn_acc"] > last["vanilla_acc"] + 0.1
    assert last["mn_acc"] > last["mn_acc_before_finetune"] + 0.3           # MN's classifier alone does not do it
    summary = result.summary()
    assert summary["source"] == "clusters" and summary["clusters_per_class"] == 6 and summary["classes"] == 4
    assert summary["mn_acc"] == last["mn_acc"] and summary["entries"] == 200 and "step" not in summary


def test_with_one_cluster_per_class_mn_has_nothing_to_add():
    last = run_clusters(clusters_per_class=1, **SMALL).final
    assert last["vanilla_acc"] > 0.98 and abs(last["mn_acc"] - last["vanilla_acc"]) < 0.02


def test_the_same_seed_gives_the_same_history():
    settings = dict(steps=60, eval_every=20, train_size=300, test_size=100, entries=20)
    a, b = run_clusters(seed=3, **settings), run_clusters(seed=3, **settings)
    assert a.history == b.history
    assert run_clusters(seed=4, **settings).history != a.history


@pytest.mark.parametrize("change, match", [
    (lambda x, y, xt, yt: (x[:, :3], y, xt, yt), r"expected test features of shape \(batch, 3\), got \(20, 4\)"),
    (lambda x, y, xt, yt: (x[0], y, xt, yt), r"training features as a tensor of shape \(N, d\)"),
    (lambda x, y, xt, yt: (x.index_fill(0, torch.tensor([2]), float("nan")), y, xt, yt), "training features contains 4 NaN"),
    (lambda x, y, xt, yt: (x, y.float(), xt, yt), r"training labels as an int64 tensor of shape \(30,\)"),
    (lambda x, y, xt, yt: (x, y[:5], xt, yt), r"training labels as an int64 tensor of shape \(30,\)"),
    (lambda x, y, xt, yt: (x, y + 5, xt, yt), r"labels must lie in \[0, 2\], got \[\d, 7\]"),
    (lambda x, y, xt, yt: (x, y * 0, xt, yt), r"the training split has no example of class\(es\) \[1, 2\] of 3 \(30 "
                                             r"examples\); give more training examples"),
])
def test_compare_heads_rejects_bad_features_and_labels(change, match):
    x, y = torch.randn(30, 4), torch.randint(0, 3, (30,))
    xt, yt = torch.randn(20, 4), torch.randint(0, 3, (20,))
    with pytest.raises(ValueError, match=match):
        compare_heads(*change(x, y, xt, yt), classes=3, steps=2)


@pytest.mark.parametrize("field, value, match", [("steps", 0, "steps must be >= 1"), ("lr", -1.0, "lr must be > 0"),
                                                 ("entries", 2.5, "entries must be an integer"),
                                                 ("seed", 1.5, "seed"), ("seed", -1, "seed"), ("seed", 2 ** 40, "seed"),
                                                 ("progress", "no", "progress must be True or False")])
def test_head_training_rejects_bad_settings(field, value, match):
    with pytest.raises(ValueError, match=match):
        HeadTraining(**{field: value})


def test_compare_heads_refuses_zero_classes_rather_than_counting_them():
    x, y = torch.randn(30, 4), torch.randint(0, 3, (30,))
    with pytest.raises(ValueError, match="classes must be >= 2, got 0"):
        compare_heads(x, y, x[:10], y[:10], classes=0, steps=2)


@pytest.mark.slow
def test_frozen_features_of_a_trained_run(tmp_path):
    """The backbone of a short vanilla digits run, frozen: the paper's random dictionary learns on its
    features within a few hundred steps (with the backbone trained jointly it stays noise, RESULTS.md)."""
    from nslviz.experiments.heads import frozen_feature_heads
    from nslviz.analysis.neighbors import extract_features
    from nslviz.training.config import TrainConfig
    from nslviz.experiments.compare import quick_config
    from nslviz.training.rundir import load_run
    from nslviz.training.trainer import train

    train(quick_config(TrainConfig.from_preset("mn", backbone="convnet4", method="vanilla")), tmp_path, progress=False)
    result = frozen_feature_heads(tmp_path, steps=400, eval_every=200, batch_size=32)
    model, _, data = load_run(tmp_path)
    assert result.data == {"source": "frozen features", "dim": model.backbone.feature_dim, "classes": 10,
                           "train_size": len(data.train.labels), "test_size": len(data.test.labels),
                           "run_dir": str(tmp_path), "dataset": "digits", "backbone": "convnet4", "method": "vanilla"}
    assert result.training.batch_size == 32
    last = result.final
    assert last["attended_value_acc"] > 0.9 and last["step_size"] > 0.15     # learned, and the step grew
    assert last["mn_acc"] > 0.9 and last["vanilla_acc"] > 0.9
    train_features, test_features = extract_features(model, data.train), extract_features(model, data.test)
    again = compare_heads(train_features.features, train_features.labels, test_features.features,
                          test_features.labels, result.training, classes=10)
    assert again.history == result.history                                 # the run's features, nothing else
    out = _cli("--run-dir", str(tmp_path), "--steps", "400", "--eval-every", "200", "--batch-size", "32", "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert {k: v for k, v in summary.items() if k != "seconds"} == pytest.approx(
        {k: v for k, v in result.summary().items() if k != "seconds"})
    assert f"heads: frozen convnet4 of the vanilla run {tmp_path} on digits" in out.stdout


def test_heads_curves_draws_one_panel_per_result():
    settings = dict(steps=40, eval_every=20, train_size=200, test_size=100, entries=20)
    results = {"6 clusters a class": run_clusters(**settings), "1 cluster a class": run_clusters(clusters_per_class=1, **settings)}
    fig = heads_curves(results, "heads")
    assert fig.layout.title.text == "heads" and [a.text for a in fig.layout.annotations][:2] == list(results)
    assert len(fig.data) == 8 and [t.name for t in fig.data[:4]] == [
        "vanilla: cosine classifier", "MN", "MN before finetuning", "MN dictionary alone (attended values)"]
    assert list(fig.data[1].x) == [0, 20, 40] and list(fig.data[1].y) == [r["mn_acc"] for r in results["6 clusters a class"].history]
    # the colours of the methods in the learning curves; the dictionary alone has one no method has
    from nslviz.viz.training import METHOD_COLORS
    colors = [t.line.color for t in fig.data[:4]]
    assert colors[:3] == [METHOD_COLORS["vanilla"], METHOD_COLORS["mn"], METHOD_COLORS["mn"]]
    assert colors[3] not in METHOD_COLORS.values()
    assert [s.y0 for s in fig.layout.shapes] == [0.25, 0.25]                    # chance, 1/C
    assert fig.layout.xaxis.title.text == "optimiser step" and fig.layout.yaxis.title.text == "test accuracy"
    assert fig.layout.yaxis2.title.text is None and fig.layout.legend.y < 0     # one y title; the legend below
    with pytest.raises(ValueError, match="at least one result"):
        heads_curves({})


def test_heads_table_lists_the_last_evaluation_of_each_result():
    settings = dict(steps=40, eval_every=20, train_size=200, test_size=100, entries=20)
    result = run_clusters(**settings)
    table = heads_table({"clusters": result})
    row = table.loc["clusters"]
    assert row["MN %"] == round(100 * result.final["mn_acc"], 1)                          # percentages to 0.1
    assert row["dictionary alone %"] == round(100 * result.final["attended_value_acc"], 1)
    assert row["chance %"] == 25 and row["log S"] == pytest.approx(math.log(20), abs=1e-3) and row["steps"] == 40
    assert row["α"] == pytest.approx(result.final["step_size"], abs=1e-3)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "nslviz", "heads", *args], capture_output=True, text=True, timeout=300)


def test_cli_json_is_the_library_summary():
    out = _cli("--clusters-per-class", "2", "--dim", "8", "--steps", "30", "--eval-every", "10", "--entries", "20",
               "--train-size", "200", "--test-size", "100", "--seed", "2", "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    expected = run_clusters(clusters_per_class=2, dim=8, steps=30, eval_every=10, entries=20, train_size=200,
                            test_size=100, seed=2).summary()
    assert {k: v for k, v in summary.items() if k != "seconds"} == pytest.approx(
        {k: v for k, v in expected.items() if k != "seconds"})
    assert "heads: 4 classes of 2 clusters in R^8 | vanilla head" in out.stdout


@pytest.mark.parametrize("args, message", [
    (["--entries", "0"], "argument --entries: expected a positive integer, got '0'"),
    (["--classes", "1"], "classes must be >= 2, got 1"),
    (["--train-size", "1", "--steps", "2"], "the training split has no example of class(es) [0, 2, 3] of 4 (1 examples)"),
    (["--run-dir", "nowhere", "--dim", "3"], "--dim describes generated clusters"),
    (["--run-dir", "nowhere"], "'nowhere' is not a run directory"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--device", "cuda"], "--device cuda is where a run's features are extracted; it needs --run-dir")])
def test_cli_bad_arguments_exit_2_with_the_reason(args, message):
    out = run_in_process("heads", *args)
    assert out.returncode == 2 and message in out.stderr and "usage:" in out.stderr


def test_run_clusters_draws_its_clusters_from_the_training_seed():
    settings = dict(steps=20, eval_every=10, entries=10)
    split = cluster_splits(300, 100, seed=3, classes=4, clusters_per_class=6, dim=16, noise=0.15)
    direct = compare_heads(*split, HeadTraining(seed=3, **settings), classes=4)
    assert run_clusters(seed=3, train_size=300, test_size=100, **settings).history == direct.history
