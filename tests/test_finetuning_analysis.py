"""MN Fig. 4 analysis: the prototype similarities before/after per-input finetuning, and its figure."""
import numpy as np
import pytest
import torch

from nslviz.analysis.finetuning import FinetuningEffect, finetuning_effect
from nslviz.datasets.images import ImageSplit
from nslviz.datasets.augment import to_float
from nslviz.models.classifier import build_image_model
from nslviz.viz.training import finetuning_scatter


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


def test_effect_needs_a_meta_neighborhoods_model(model_and_split):
    _, split = model_and_split
    vanilla = build_image_model("vanilla", "convnet4", 3, in_channels=1, image_size=16)
    with pytest.raises(ValueError, match="method 'vanilla'"):
        finetuning_effect(vanilla, split)


def test_scatter_counts_every_input_once_and_states_the_shift():
    effect = FinetuningEffect(before=np.array([0.1, 0.2, 0.3, 0.4]), after=np.array([0.3, 0.2, 0.1, 0.5]),
                              correct_before=np.array([True, False, True, False]),
                              correct_after=np.array([True, True, False, False]))
    assert effect.fraction_improved == 0.5 and effect.mean_shift == pytest.approx(0.025)
    fig = finetuning_scatter(effect)
    names = [t.name for t in fig.data]
    assert names == ["right before and after (1)", "fixed by finetuning (1)", "broken by finetuning (1)",
                     "wrong before and after (1)", "no change"]
    assert "50% of the inputs above the diagonal, mean shift +0.025" in fig.layout.title.text
    assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
