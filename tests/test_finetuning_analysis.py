"""MN Fig. 4 analysis: the prototype similarities before/after per-input finetuning, and its figure;
the state of the dictionary (has it learned?)."""
import copy
import json
import math

import numpy as np
import pytest
import torch

from nslviz.analysis.finetuning import FinetuningEffect, dictionary_state, finetuning_effect
from nslviz.datasets.images import ImageSplit
from nslviz.datasets.augment import to_float
from nslviz.models.classifier import build_image_model
from nslviz.viz.training import dictionary_state_table, finetuning_scatter, learning_curves


@pytest.fixture
def model_and_split():
    torch.manual_seed(0)
    model = build_image_model("mn", "convnet4", 3, in_channels=1, image_size=16, entries=6).eval()
    with torch.no_grad():
        model.head.inner_step_size.fill_(2.0)          # a step large enough to change predictions
        model.head.dictionary.keys.normal_()
    generator = torch.Generator().manual_seed(1)
    split = ImageSplit(torch.randint(0, 256, (10, 1, 16, 16), dtype=torch.uint8, generator=generator),
                       torch.randint(0, 3, (10,), generator=generator))
    return model, split


def test_effect_is_the_true_class_logit_over_the_scale_before_and_after_finetuning(model_and_split):
    model, split = model_and_split
    effect = finetuning_effect(model, split, batch_size=4)                 # 3 batches, the last one short
    with torch.no_grad():
        details = model(to_float(split.images), return_details=True)
    rows, scale = torch.arange(10), model.head.scale.detach()
    # cosine classifier: logit = τ · cos(z, prototype), so cos = logit / τ for the true class
    np.testing.assert_allclose(effect.before, (details["base_logits"][rows, split.labels] / scale).numpy(), atol=1e-5)
    np.testing.assert_allclose(effect.after, (details["logits"][rows, split.labels] / scale).numpy(), atol=1e-5)
    np.testing.assert_array_equal(effect.correct_before, (details["base_logits"].argmax(1) == split.labels).numpy())
    np.testing.assert_array_equal(effect.correct_after, (details["logits"].argmax(1) == split.labels).numpy())
    assert np.abs(effect.after - effect.before).max() > 1e-2              # the step did move the prototypes


@pytest.mark.parametrize("analysis", [finetuning_effect, dictionary_state])
def test_analyses_need_a_meta_neighborhoods_model(model_and_split, analysis):
    _, split = model_and_split
    vanilla = build_image_model("vanilla", "convnet4", 3, in_channels=1, image_size=16)
    with pytest.raises(ValueError, match=f"{analysis.__name__} needs a Meta-Neighborhoods model.*method 'vanilla'"):
        analysis(vanilla, split)


@pytest.mark.parametrize("analysis", [finetuning_effect, dictionary_state])
def test_analyses_check_their_input_and_give_the_model_back_in_its_mode(model_and_split, analysis):
    model, split = model_and_split
    with pytest.raises(ValueError, match=f"{analysis.__name__} needs a split with at least one image, got an empty one"):
        analysis(model, ImageSplit(split.images[:0], split.labels[:0]))
    with pytest.raises(ValueError, match="batch_size must be > 0, got 0"):
        analysis(model, split, batch_size=0)
    model.train()
    analysis(model, split, batch_size=4)
    assert model.training                                                  # evaluated in eval mode, then restored
    model.eval()
    analysis(model, split, batch_size=4)
    assert not model.training


def test_dictionary_state_is_computed_over_every_image_in_batches(model_and_split):
    model, split = model_and_split
    state = dictionary_state(model, split, batch_size=4)                   # 3 batches, the last one short
    with torch.no_grad():
        details = model(to_float(split.images), return_details=True)
    attention, logits, base = details["attention"], details["logits"], details["base_logits"]
    values = model.head.dictionary.values.detach()
    assert state["entries"] == 6 and state["log_entries"] == pytest.approx(math.log(6))
    assert state["attention_entropy"] == pytest.approx(float(-(attention * attention.log()).sum(1).mean()), rel=1e-5)
    assert state["attention_top_weight"] == pytest.approx(float(attention.max(1).values.mean()), rel=1e-5)
    assert state["attended_value_acc"] == pytest.approx(float(((attention @ values).argmax(1) == split.labels).float().mean()))
    assert state["changed_predictions"] == pytest.approx(float((logits.argmax(1) != base.argmax(1)).float().mean()))
    assert state["changed_predictions"] > 0                                 # the fixture's step is large
    assert state["acc_before_finetune"] == pytest.approx(float((base.argmax(1) == split.labels).float().mean()))
    assert state["acc"] == pytest.approx(float((logits.argmax(1) == split.labels).float().mean()))
    assert state["logit_change"] == pytest.approx(float((logits - base).abs().mean() / base.abs().mean()), rel=1e-5)
    assert state["value_confidence"] == pytest.approx(float(values.max(1).values.mean()))
    assert state["step_size"] == pytest.approx(2.0)
    negative = copy.deepcopy(model)                      # the model steps by |α|: so does the report
    with torch.no_grad():
        negative.head.inner_step_size.fill_(-0.07)
    assert dictionary_state(negative, split)["step_size"] == pytest.approx(0.07)


def test_dictionary_state_tells_a_learned_dictionary_from_noise(model_and_split):
    _, split = model_and_split
    torch.manual_seed(0)                            # the paper's start: S = 200 random keys N(0, 0.05²)
    noise = dictionary_state(build_image_model("mn", "convnet4", 3, in_channels=1, image_size=16, entries=200), split)
    assert noise["attention_entropy"] > 0.95 * noise["log_entries"]       # almost uniform attention
    assert noise["attention_top_weight"] < 3 / 200
    assert noise["value_confidence"] < 0.4                                 # soft values start near 1/C
    # a dictionary that holds the images themselves with their labels, read with a sharp attention:
    # every image attends to its own entry, so the dictionary alone classifies it
    model = build_image_model("mn", "convnet4", 3, in_channels=1, image_size=16, entries=10).eval()
    with torch.no_grad():
        features = model(to_float(split.images), return_details=True)["features"]
        model.head.dictionary.set_entries(features, split.labels, confidence=0.9)
        model.head.attention.log_inverse_temperature.fill_(math.log(1e4))
    learned = dictionary_state(model, split)
    assert learned["attended_value_acc"] == 1.0
    assert learned["attention_top_weight"] > 0.99 and learned["attention_entropy"] < 0.1
    assert learned["value_confidence"] == pytest.approx(0.9)


def test_scatter_counts_every_input_once_and_states_the_shift():
    effect = FinetuningEffect(before=np.array([0.1, 0.2, 0.3, 0.4]), after=np.array([0.3, 0.2, 0.1, 0.5]),
                              correct_before=np.array([True, False, True, False]),
                              correct_after=np.array([True, True, False, False]))
    assert effect.fraction_improved == 0.5 and effect.mean_shift == pytest.approx(0.025)
    fig = finetuning_scatter(effect)
    names = [t.name for t in fig.data]
    assert names == ["no change (diagonal)", "right before and after (1)", "fixed by finetuning (1)",
                     "broken by finetuning (1)", "wrong before and after (1)"]   # the diagonal under the points
    assert "50% of the inputs above the diagonal, mean shift +0.025" in fig.layout.title.text
    assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
    # the few wrong-before-and-after points stand out from the many right ones: black crosses, not grey dots
    right, wrong = fig.data[1].marker, fig.data[4].marker
    assert wrong.color == "black" and wrong.symbol == "x" and right.color != wrong.color and wrong.size > right.size


def test_dictionary_state_table_shows_each_value_next_to_the_value_of_no_effect(model_and_split):
    model, split = model_and_split
    state = dictionary_state(model, split)
    table = dictionary_state_table(state)
    assert table.loc["attention entropy (nats)", "value"] == float(f"{state['attention_entropy']:.4g}")   # 4 digits
    assert table.loc["attention entropy (nats)", "no effect"] == f"log S = {math.log(6):.2f}: uniform"
    assert table.loc["accuracy of the attended values alone %", "no effect"] == "33: chance"
    assert table.loc["accuracy after finetuning %", "value"] == round(100 * state["acc"], 1)      # percentages to 0.1
    assert table.loc["predictions changed by finetuning %", "value"] == round(100 * state["changed_predictions"], 1)
    assert table.loc["largest attention weight", "value"] == float(f"{state['attention_top_weight']:.4g}")


@pytest.mark.slow
def test_a_short_digits_run_learns_a_dictionary_started_at_data_but_not_a_random_one(tmp_path):
    """What RESULTS.md reports at 200 epochs shows already in quick mode's 4 epochs (about 80 steps):
    with the paper's random keys the dictionary is still noise; started at training images it reads
    as a soft kNN and its finetuning step moves the logits."""
    from nslviz.training.config import TrainConfig
    from nslviz.experiments.compare import quick_config
    from nslviz.training.rundir import load_run
    from nslviz.training.trainer import train

    states = {}
    for init, alpha in (("random", 0.05), ("data", 0.5)):
        config = quick_config(TrainConfig.from_preset("mn", backbone="convnet4", method="mn",
                                                      dictionary_init=init, alpha=alpha))
        train(config, tmp_path / init, progress=False)
        model, _, data = load_run(tmp_path / init)
        states[init] = dictionary_state(model, data.test)
    noise, learned = states["random"], states["data"]
    assert noise["attention_entropy"] > 0.98 * noise["log_entries"] and noise["attended_value_acc"] < 0.2
    assert noise["logit_change"] < 0.01 and noise["value_confidence"] < 0.2
    assert learned["attended_value_acc"] > 0.5 and learned["logit_change"] > 0.05
    assert learned["attention_entropy"] < noise["attention_entropy"] - 0.1


def _write_run(run_dir, rows, classes=None):
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if classes is not None:
        (run_dir / "summary.json").write_text(json.dumps({"classes": classes}))
    return run_dir


def test_learning_curves_add_the_dictionary_panel_for_mn_runs(tmp_path):
    plain = [{"epoch": e, "train_loss": 1.0 / e, "val_acc": 0.5 + e / 10} for e in (1, 2, 3)]
    mn = [dict(r, val_acc_before_finetune=0.4 + r["epoch"] / 10, val_attended_value_acc=0.1 * r["epoch"],
               val_attention_entropy=3.0) for r in plain]
    runs = {"vanilla": _write_run(tmp_path / "vanilla", plain, 10), "mn": _write_run(tmp_path / "mn", mn, 10)}
    fig = learning_curves(runs, "curves")
    assert [a.text for a in fig.layout.annotations][:3] == ["training loss", "validation accuracy",
                                                            "dictionary alone (attended values)"]
    third = [t for t in fig.data if t.xaxis == "x3"]
    assert len(third) == 1 and list(third[0].y) == [0.1, 0.2, 0.30000000000000004]
    assert [s.y0 for s in fig.layout.shapes] == [0.1]                        # chance, 1/C
    assert fig.layout.title.text == "curves" and fig.layout.xaxis3.title.text == "epoch"
    assert fig.layout.yaxis3.title.text == "accuracy" and fig.layout.yaxis.title.text == "cross-entropy"
    assert list(fig.layout.yaxis2.range) == list(fig.layout.yaxis3.range) == [0, 1.02]   # fixed accuracy scale
    assert fig.layout.xaxis.dtick == 1                                       # whole epochs on a short run
    from nslviz.viz.training import METHOD_COLORS                            # a method's colour, in any order
    swapped = learning_curves({"mn": runs["mn"], "vanilla": runs["vanilla"]})
    assert {t.name: t.line.color for t in swapped.data if t.xaxis == "x"} == \
        {"MN": METHOD_COLORS["mn"], "vanilla": METHOD_COLORS["vanilla"]}
    mixed = learning_curves({"other": runs["vanilla"], "vanilla": runs["vanilla"]})       # a label with no colour
    colors = [t.line.color for t in mixed.data if t.xaxis == "x"]
    assert colors[1] == METHOD_COLORS["vanilla"] and colors[0] != colors[1]
    # without an MN run: two panels, no chance line; a run still going (no summary) draws no chance line
    two = learning_curves({"vanilla": runs["vanilla"]})
    assert len(two.layout.annotations) == 2 and not two.layout.shapes and not [t for t in two.data if t.xaxis == "x3"]
    running = learning_curves({"mn": _write_run(tmp_path / "running", mn)})
    assert len([t for t in running.data if t.xaxis == "x3"]) == 1 and not running.layout.shapes
    assert fig.layout.legend.orientation == "h" and fig.layout.legend.y < 0       # under the panels
    # a run that starts from another run's backbone says so: its epoch 1 is not a fresh start
    (runs["mn"] / "config.json").write_text(json.dumps({"init_backbone": str(runs["vanilla"])}))
    names = [t.name for t in learning_curves(runs).data if t.xaxis == "x" and t.showlegend is not False]
    assert names == ["vanilla", "MN (from vanilla's backbone)"]


def test_a_before_finetuning_line_hidden_under_the_solid_one_says_so(tmp_path):
    rows = [{"epoch": e, "train_loss": 1.0 / e, "val_acc": 0.5 + e / 10, "val_acc_before_finetune": 0.5 + e / 10}
            for e in (1, 2)]
    fig = learning_curves({"mn": _write_run(tmp_path / "same", rows)})
    assert [t.name for t in fig.data if t.line.dash == "dot"] == ["MN, before finetuning (= the solid line)"]
    moved = [dict(r, val_acc_before_finetune=r["val_acc"] - 0.1) for r in rows]
    fig = learning_curves({"mn": _write_run(tmp_path / "moved", moved)})
    assert [t.name for t in fig.data if t.line.dash == "dot"] == ["MN, before finetuning"]
