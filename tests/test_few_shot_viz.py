"""Notebook 10's figures of adaptation: MAML's outer loop on two axes, and the small changes
test-time finetuning makes to static masks, drawn so that they can be read."""
import numpy as np
import pytest
import torch

from nslviz.datasets.episodes import sample_episodes
from nslviz.datasets.images.registry import ImageSplit
from nslviz.viz.few_shot import accuracy_figure, adapted_masks_figure, episode_figure, meta_training_figure


def test_meta_training_figure_names_each_axis_for_its_own_curve():
    history = [{"step": s, "query_acc": 0.6 + s / 100, "meta_loss": 0.95 - s / 50} for s in range(5)]
    fig = meta_training_figure(history)
    assert fig.layout.yaxis.title.text == "query accuracy (%)" and fig.data[0].name.endswith("after the inner loop (%)")
    assert len(fig.data) == 2                                              # a history without the start's accuracy
    assert fig.layout.yaxis2.title.text == "meta-loss" and fig.layout.yaxis2.tickformat == ".2f"
    assert fig.layout.xaxis.title.text == "outer step" and fig.data[1].yaxis == "y2"
    np.testing.assert_allclose(fig.data[0].y, [60, 61, 62, 63, 64])
    assert fig.layout.xaxis.dtick == 1                                     # five outer steps: no tick at 1.5
    assert meta_training_figure([{**history[0], "step": s} for s in range(0, 201, 20)]).layout.xaxis.dtick == 20
    with pytest.raises(ValueError, match="no meta-training history"):
        meta_training_figure([])
    start = meta_training_figure([{**row, "query_acc_before": 0.2} for row in history]).data[2]
    assert start.line.dash == "dash" and start.yaxis == "y" and list(start.y) == [20.0] * 5
    assert start.name == "query accuracy of the start, before the inner loop (%)"


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


def test_accuracy_figure_names_the_networks_and_draws_table_6_beside_them():
    """Bars for this run with their intervals, diamonds for Table 6 where the paper has the row, in the
    notebook's words (plain CNN, static / dynamic NSN, MAML), and the chance line."""
    paper = {"accuracy": 71.26, "interval95": 0.65, "row": "Dynamic NSN"}
    common = dict(way=5, shot=5, episodes=60, dataset="glyphs")
    summaries = [dict(nsl="none", method="finetune", accuracy=88.7, interval95=1.4, paper=None, **common),
                 dict(nsl="dynamic_dns", method="finetune", accuracy=94.8, interval95=1.1, paper=paper, **common),
                 dict(nsl="static_dns", method="maml", accuracy=89.5, interval95=1.6, paper=None, **common)]
    fig = accuracy_figure(summaries)
    bars, diamonds = fig.data
    assert list(bars.x) == ["plain CNN · finetune", "dynamic NSN · finetune", "static NSN · MAML"]
    assert list(bars.y) == [88.7, 94.8, 89.5] and list(bars.error_y.array) == [1.4, 1.1, 1.6]
    assert list(diamonds.x) == ["dynamic NSN · finetune"] and list(diamonds.y) == [71.26]
    assert list(diamonds.error_y.array) == [0.65]                    # the paper's interval, not this run's
    assert fig.layout.shapes[0].y0 == 20 and fig.layout.annotations[0].text == "chance (20 %)"
    assert fig.layout.annotations[0].x > 1 and bars.texttemplate == "%{y:.1f} %"   # label in the margin, values on bars
    assert bars.insidetextanchor == "start"                       # at the base, clear of error bars and diamonds
    cnn9 = accuracy_figure([dict(summaries[1], backbone="cnn9")])
    assert list(cnn9.data[0].x) == ["dynamic NSN (CNN-9) · finetune"]
    assert "5-way 5-shot" in fig.layout.title.text and fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
    with pytest.raises(ValueError, match="no few-shot results"):
        accuracy_figure([])


def test_episode_figure_is_as_tall_as_its_image_grid():
    """The mosaic keeps square pixels, so the figure's height follows the grid's shape (5 rows of 11
    tiles in a 5-way 5-shot episode): no empty band above and below the images."""
    labels = torch.arange(10).repeat_interleave(20)
    split = ImageSplit(torch.zeros(len(labels), 3, 8, 8, dtype=torch.uint8), labels)
    episodes = sample_episodes(labels, episodes=1, way=5, shot=5, query=15, seed=0)
    fig = episode_figure(split, episodes)
    plot_height = fig.layout.height - 190
    assert abs(plot_height / (fig.layout.width - 160) - 5 / 11) < 0.01
    assert fig.layout.title.text and fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
    assert "queries (right, the first 5 of 15 a class)" in fig.layout.title.text       # not all of them drawn
    assert "the first" not in episode_figure(split, episodes, max_query=15).layout.title.text


def test_episode_figure_labels_each_row_with_the_class_of_the_episode_drawn():
    labels = torch.arange(10).repeat_interleave(4)
    split = ImageSplit(torch.zeros(len(labels), 3, 8, 8, dtype=torch.uint8), labels)
    episodes = sample_episodes(labels, episodes=3, way=3, shot=1, query=1, seed=0)
    assert not torch.equal(episodes.classes[0], episodes.classes[2])
    for index in range(3):
        ticks = episode_figure(split, episodes, index).layout.yaxis.ticktext
        assert list(ticks) == [f"class {int(c)}" for c in episodes.classes[index]]


def test_adapted_masks_are_the_mean_over_episodes():
    """Episodes adapt M differently: each layer's tile shows their mean, not one episode's M."""
    generator = torch.Generator().manual_seed(0)
    masks = 1 + 0.01 * torch.randn(4, 9, generator=generator)                   # (E, K): four episodes
    fig = adapted_masks_figure({"backbone.stages.0.0.conv.similarity": masks})
    np.testing.assert_allclose(fig.data[0].z, masks.mean(0).view(3, 3).numpy(), atol=1e-6)
