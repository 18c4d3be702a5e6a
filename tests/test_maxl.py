"""MAXL (nslviz.maxl): the generator's masked labels, the focal loss, the second-order look-ahead
against finite differences in float64, and the method in the trainer (resume, preset, refusals)."""
import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from nslviz.maxl import (LabelGenerator, MAXLHead, auxiliary_labels, focal_loss, meta_objective,
                         negative_entropy_of_mean)
from nslviz.models.classifier import build_image_model
from nslviz.training.config import TrainConfig
from nslviz.training.trainer import train
from runs import TINY, finished_run, interrupt_at, stable


def test_auxiliary_labels_are_a_softmax_over_the_sub_classes_of_each_rows_class():
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 4 * 3), torch.tensor([0, 3, 1, 1, 2, 3])          # C = 4, ψ = 3
    out = auxiliary_labels(logits, labels, 3)
    torch.testing.assert_close(out.sum(1), torch.ones(6))
    for row, label in enumerate(labels.tolist()):
        block = slice(3 * label, 3 * label + 3)
        torch.testing.assert_close(out[row, block], logits[row, block].softmax(0))
        outside = torch.ones(12, dtype=torch.bool)
        outside[block] = False
        assert torch.all(out[row, outside] == 0)
    with pytest.raises(ValueError, match="width 12 do not split into blocks of hierarchy 5"):
        auxiliary_labels(logits, labels, 5)


def test_focal_loss_weighs_cross_entropy_by_one_minus_p_squared():
    torch.manual_seed(0)
    logits, targets = torch.randn(5, 7), torch.rand(5, 7).softmax(1)
    p = logits.softmax(1)
    expected = -(targets * (1 - p) ** 2 * p.log()).sum(1).mean()
    torch.testing.assert_close(focal_loss(logits, targets), expected)
    hard = F.one_hot(torch.tensor([1, 0, 6, 2, 2]), 7).float()
    torch.testing.assert_close(focal_loss(logits, hard, gamma=0), F.cross_entropy(logits, hard.argmax(1)))


def test_negative_entropy_of_the_mean_label_is_finite_where_a_class_is_absent():
    labels = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]], requires_grad=True)     # class 2: p̄ = 0
    value = negative_entropy_of_mean(labels)
    mean = torch.tensor([0.75, 0.25])
    torch.testing.assert_close(value, (mean * mean.log()).sum())
    value.backward()
    assert torch.isfinite(labels.grad).all()
    # minimised (the generator's loss adds it), it spreads the batch's mean label: the entropy rises
    logits = torch.tensor([[2.0, 0.0, -1.0], [1.5, 0.5, 0.0]], requires_grad=True)
    entropy = lambda: -negative_entropy_of_mean(logits.softmax(1)).item()
    before = entropy()
    negative_entropy_of_mean(logits.softmax(1)).backward()
    with torch.no_grad():
        logits -= 0.5 * logits.grad
    assert entropy() > before


class _Features(nn.Module):
    """A tiny backbone: images (B, 3) -> tanh features (B, 4), with a BatchNorm (its statistics must
    stay untouched by the look-ahead)."""
    feature_dim = 4

    def __init__(self):
        super().__init__()
        self.linear, self.norm = nn.Linear(3, 4), nn.BatchNorm1d(4)

    def forward(self, x):
        return torch.tanh(self.norm(self.linear(x)))


class _MultiTask(nn.Module):
    """The ImageClassifier interface the look-ahead calls: forward(x, return_details=...)."""

    def __init__(self, classes, hierarchy):
        super().__init__()
        self.backbone = _Features()
        self.head = MAXLHead(nn.Linear(4, classes), nn.Linear(4, classes * hierarchy))

    def forward(self, x, *, return_details=False):
        z = self.backbone(x)
        logits = self.head(z)
        return {"logits": logits, "aux_logits": self.head.auxiliary(z)} if return_details else logits


def test_the_generators_gradient_goes_through_the_look_ahead_step_float64():
    """d meta / d w by autograd (second order through θ⁺(w)) equals central finite differences."""
    torch.manual_seed(0)
    classes, hierarchy = 3, 2
    model = _MultiTask(classes, hierarchy).double().train()
    generator = LabelGenerator(_Features(), classes, hierarchy).double().train()
    images, labels = torch.randn(8, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    state = {k: v.clone() for k, v in model.state_dict().items()}
    lr = 0.5

    def objective():
        return meta_objective(model, generator(images, labels), images, labels, lr, F.cross_entropy, entropy_weight=0.2)

    weight = generator.head[2].weight                                    # the generator's last layer (ψ·C, d)
    (grad,) = torch.autograd.grad(objective(), [weight])
    for name, value in model.state_dict().items():                       # weights and BatchNorm statistics kept
        assert torch.equal(value, state[name]), name
    eps = 1e-6
    for index in [(0, 0), (1, 2), (3, 1), (5, 3)]:
        weight.data[index] += eps
        up = objective().detach()
        weight.data[index] -= 2 * eps
        down = objective().detach()
        weight.data[index] += eps
        assert grad[index].item() == pytest.approx(((up - down) / (2 * eps)).item(), rel=1e-5, abs=1e-9)
    # without the look-ahead (lr 0) only the entropy term reaches w: the step is what makes labels useful,
    # and without the entropy term (λ 0) the look-ahead alone still gives w a gradient
    labelled = lambda: generator(images, labels)                       # ŷ(w), attached to the generator
    (flat,) = torch.autograd.grad(meta_objective(model, labelled(), images, labels, 0.0, F.cross_entropy, 0.2),
                                  [weight])
    assert not torch.allclose(flat, grad)
    (ahead_only,) = torch.autograd.grad(meta_objective(model, labelled(), images, labels, lr, F.cross_entropy, 0.0),
                                        [weight])
    assert ahead_only.abs().max() > 1e-4
    # one rate per parameter: the same as one rate when they are equal, another look-ahead when not
    rates = {name: lr for name, _ in model.named_parameters()}
    same = meta_objective(model, labelled(), images, labels, rates, F.cross_entropy, 0.2)
    torch.testing.assert_close(same, objective())
    slower = {name: (lr / 10 if name.startswith("backbone") else lr) for name in rates}
    assert not torch.isclose(meta_objective(model, labelled(), images, labels, slower, F.cross_entropy, 0.2), same)
    model, generator, images = model.float(), generator.float(), images.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):                  # full precision also inside autocast
        assert meta_objective(model, labelled(), images, labels, lr, F.cross_entropy).dtype == torch.float32


def test_the_generators_sgd_rate_is_its_base_rate_times_the_schedule_factor():
    """meta_step runs the generator's SGD at lr x lr_factor (it follows the network's schedule): the
    same step at factor 0.25 sets the rate to a quarter and moves every weight a quarter as far."""
    from nslviz.maxl import LabelGeneratorTraining
    torch.manual_seed(0)
    classes, hierarchy = 3, 2
    model = _MultiTask(classes, hierarchy).double().train()
    images, labels = torch.randn(8, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    moves = {}
    for factor in (1.0, 0.25):
        torch.manual_seed(1)                                             # the same generator both times
        generator = LabelGenerator(_Features(), classes, hierarchy).double().train()
        before = [p.detach().clone() for p in generator.parameters()]
        training = LabelGeneratorTraining(generator, lr=0.1)
        training.meta_step(model, training.labels(images, labels), images, labels, 0.5, factor, F.cross_entropy)
        rates = [group["lr"] for group in training.optimizer.param_groups]
        assert rates == [pytest.approx(0.1 * factor)] * len(rates), f"factor {factor}: generator lr {rates}"
        moves[factor] = [p.detach() - b for p, b in zip(generator.parameters(), before)]
    assert max(move.abs().max() for move in moves[1.0]) > 1e-6, "the meta step did not move the generator"
    for full, quarter in zip(moves[1.0], moves[0.25]):
        torch.testing.assert_close(quarter, 0.25 * full, msg="the step at factor 0.25 is not a quarter of the step at 1")


def test_maxl_model_has_an_auxiliary_head_of_hierarchy_times_classes():
    model = build_image_model("maxl", "convnet4", 10, in_channels=1, image_size=16, hierarchy=4).eval()
    images = torch.rand(2, 1, 16, 16)
    out = model(images, return_details=True)
    assert out["logits"].shape == (2, 10) and out["aux_logits"].shape == (2, 40)
    assert torch.equal(model(images), out["logits"])                     # evaluated: the primary head alone
    decayed = {id(p) for p in model.no_weight_decay_parameters()}
    assert {id(p) for p in model.head.parameters()} == decayed            # both heads, as every classifier


MAXL_TINY = {**TINY, "method": "maxl"}


@pytest.fixture(scope="module")
def maxl_run(tmp_path_factory):
    return finished_run(tmp_path_factory, "maxl", method="maxl")


def test_maxl_trains_its_generator_and_logs_the_meta_loss(maxl_run):
    run_dir, summary = maxl_run
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all("generator_meta_loss" in row for row in rows)
    assert summary["method"] == "maxl" and 0 <= summary["test_acc"] <= 1
    assert summary["label_generator_parameters"] > summary["parameters"] // 2      # a second backbone and its head
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    trained = checkpoint["label_generator"]["generator"]
    from nslviz.models.registry import build_backbone
    from nslviz.training.data import derived_seed
    from nslviz.training.trainer import MAXL_SEED_TAG
    torch.manual_seed(derived_seed(0, MAXL_SEED_TAG))
    fresh = LabelGenerator(build_backbone("convnet4", in_channels=1, image_size=16), 10).state_dict()
    assert not torch.equal(fresh["head.2.weight"], trained["head.2.weight"])   # the meta step moved it


def test_maxl_resumes_with_the_numbers_of_an_uninterrupted_run(maxl_run, tmp_path):
    run_dir, uninterrupted = maxl_run
    interrupt_at(TrainConfig(**MAXL_TINY), tmp_path / "cut", 9)          # checkpoint at 8, mid-epoch 2
    resumed = train(TrainConfig(**MAXL_TINY), tmp_path / "cut", resume=True, progress=False)
    assert stable(resumed) == stable(uninterrupted)
    assert (tmp_path / "cut" / "metrics.jsonl").read_text() == (run_dir / "metrics.jsonl").read_text()


def test_the_look_ahead_takes_each_parameters_learning_rate_from_its_group():
    from nslviz.maxl import parameter_rates
    from nslviz.training.optim import build_optimizer
    model = build_image_model("maxl", "convnet4", 10, in_channels=1, image_size=16)
    optimizer = build_optimizer(model, TrainConfig(method="maxl", lr=0.01, backbone_lr_scale=0.1))
    rates = parameter_rates(model, optimizer)
    assert set(rates) == {name for name, _ in model.named_parameters()}
    assert all(rate == pytest.approx(0.001 if name.startswith("backbone.") else 0.01) for name, rate in rates.items())


def test_the_maxl_preset_is_the_papers_recipe_and_torchrun_is_refused(monkeypatch, tmp_path):
    config = TrainConfig.from_preset("maxl", dataset="cifar100", epochs=None)
    assert (config.method, config.optimizer, config.lr, config.momentum, config.nesterov, config.weight_decay) == \
        ("maxl", "sgd", 0.1, 0.9, False, 5e-4)
    assert (config.epochs, config.milestones, config.lr_decay, config.maxl_hierarchy) == (200, (0.25, 0.5, 0.75), 0.5, 5)
    assert config.iterations is None
    with pytest.raises(ValueError, match="maxl_hierarchy must be >= 1, got 0"):
        TrainConfig(method="maxl", maxl_hierarchy=0)
    for frozen in ({"freeze_backbone": True}, {"dictionary_warmup": 10}):      # no look-ahead through the backbone
        with pytest.raises(ValueError, match="method maxl trains its label generator through the backbone"):
            TrainConfig(method="maxl", **frozen)
    from nslviz.training import distributed
    monkeypatch.setattr(distributed, "launched_world_size", lambda: 2)
    with pytest.raises(ValueError, match="method maxl trains on one process"):
        train(TrainConfig(**MAXL_TINY), tmp_path / "ddp", progress=False)
    assert not (tmp_path / "ddp").exists()


def test_without_a_look_ahead_the_meta_objective_is_the_primary_loss_plus_lambda_times_the_negative_entropy():
    """lr 0 (θ⁺ = θ): meta_objective = CE(f(µ(x)), y) + λ Σ_c p̄_c log p̄_c exactly, p̄ the batch's mean
    label; minimising it raises p̄'s entropy (a flipped sign would collapse every input into one sub-class)."""
    torch.manual_seed(0)
    classes, hierarchy = 3, 2
    model = _MultiTask(classes, hierarchy).double().eval()
    images, labels = torch.randn(4, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 0])
    targets = torch.tensor([[0.5, 0.5, 0, 0, 0, 0], [0, 0, 1.0, 0, 0, 0],
                            [0, 0, 0, 0, 0.25, 0.75], [0.9, 0.1, 0, 0, 0, 0]], dtype=torch.float64)
    mean = torch.tensor([1.4, 0.6, 1.0, 0.25, 0.75], dtype=torch.float64) / 4    # p̄ over the nonzero columns
    negative_entropy = (mean * mean.log()).sum()                                 # 0 log 0 = 0 for column 3
    primary = F.cross_entropy(model(images), labels)
    for weight in (0.2, 0.7):
        value = meta_objective(model, targets, images, labels, 0.0, F.cross_entropy, entropy_weight=weight)
        assert value.item() == pytest.approx((primary + weight * negative_entropy).item(), rel=0, abs=1e-12)
    assert meta_objective(model, targets, images, labels, 0.0, F.cross_entropy).item() == \
        pytest.approx((primary + 0.2 * negative_entropy).item(), rel=0, abs=1e-12)          # λ = 0.2 by default


def test_the_epoch_meta_loss_is_the_mean_since_the_last_read_and_restarts_at_zero():
    """LabelGeneratorTraining.epoch_loss(): the mean of the meta steps' losses since the previous call, then a
    fresh sum (not carried into the next epoch's mean); an epoch without steps reads 0."""
    from nslviz.maxl import LabelGeneratorTraining
    torch.manual_seed(0)
    classes, hierarchy = 3, 2
    model = _MultiTask(classes, hierarchy).double().train()
    training = LabelGeneratorTraining(LabelGenerator(_Features(), classes, hierarchy).double().train(), lr=0.1)
    images, labels = torch.randn(8, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])

    def step() -> float:
        return training.meta_step(model, training.labels(images, labels), images, labels, 0.5, 1.0, F.cross_entropy)

    first = [step(), step()]
    assert first[0] != first[1]
    assert training.epoch_loss() == pytest.approx(sum(first) / 2, rel=1e-12)
    assert (training.loss_sum, training.steps) == (0.0, 0)
    assert training.epoch_loss() == 0.0
    second = step()
    assert training.epoch_loss() == pytest.approx(second, rel=1e-12)                # this epoch's step alone
