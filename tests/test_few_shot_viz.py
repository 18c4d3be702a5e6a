"""Notebook 10's figures of adaptation: MAML's outer loop on two axes, and the small changes
test-time finetuning makes to static masks, drawn so that they can be read."""
import numpy as np
import pytest
import torch

from nslviz.viz.few_shot import adapted_masks_figure, meta_training_figure


def test_meta_training_figure_names_each_axis_for_its_own_curve():
    history = [{"step": s, "query_acc": 0.6 + s / 100, "meta_loss": 0.95 - s / 50} for s in range(5)]
    fig = meta_training_figure(history)
    assert fig.layout.yaxis.title.text == "query accuracy after the inner loop (%)"
    assert fig.layout.yaxis2.title.text == "meta-loss" and fig.layout.yaxis2.tickformat == ".2f"
    assert fig.layout.xaxis.title.text == "outer step" and fig.data[1].yaxis == "y2"
    np.testing.assert_allclose(fig.data[0].y, [60, 61, 62, 63, 64])
    assert fig.layout.xaxis.dtick == 1                                     # five outer steps: no tick at 1.5
    assert meta_training_figure([{**history[0], "step": s} for s in range(0, 201, 20)]).layout.xaxis.dtick == 20
    with pytest.raises(ValueError, match="no meta-training history"):
        meta_training_figure([])


def test_adapted_masks_show_changes_of_thousandths_in_colour_and_in_their_labels():
    """Finetuning moves M by about 0.003: the colour axis spans that change (not ±5 %) and every
    tap's label has three decimals, so "1.003" and "0.999" are told apart."""
    change = torch.tensor([0.003, -0.001, 0.0, 0.012, 0.004, 0.0, 0.0, 0.002, -0.0005])
    episodes = torch.ones(6, 9) + change                          # (E, K): six episodes alike
    layers = {f"backbone.stages.{n}.0.conv.similarity": episodes for n in range(4)}
    fig = adapted_masks_figure(layers)
    assert len(fig.data) == 4 and fig.data[0].texttemplate == "%{z:.3f}"
    np.testing.assert_allclose(fig.data[0].z, (1 + change).view(3, 3).numpy(), atol=1e-6)
    axis = fig.layout.coloraxis
    assert axis.cmid == 1 and axis.cmax == pytest.approx(1.012, abs=1e-6) and axis.cmin == pytest.approx(0.988, abs=1e-6)
    meta = adapted_masks_figure({"backbone.stages.0.0.conv.similarity": torch.ones(9) - 0.004})   # (K,): one M
    assert meta.layout.coloraxis.cmin == pytest.approx(0.996, abs=1e-6)
    with pytest.raises(ValueError, match="only a static NSN adapts M"):
        adapted_masks_figure({})
