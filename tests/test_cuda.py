"""The layers, models and trainer on a CUDA device, checked against float64 references on the CPU.

Skipped where there is no GPU (CI). `benchmarks/gpu_check.sh` runs them on a lent GPU machine;
`NSLVIZ_TEST_DEVICE=cpu pytest tests/test_cuda.py` runs the same checks on the CPU (float32 against
the float64 reference), which is how they are kept working between runs on a GPU.

Every check compares the device's float32 (or bf16) result with the same module copied to the CPU
in float64: values and every gradient, at float32 tolerances.
"""
from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from nslviz import IFiLM, MetaNeighborhoodsHead, NSConv2d
from nslviz.models.classifier import build_image_model
from nslviz.nsl import NSL_MODES
from nslviz.training.config import TrainConfig
from nslviz.training.trainer import train
from reference import reference_head
from runs import TINY, interrupt_at, stable
from test_accelerated_paths import check_compiled_matches_eager

DEVICE = torch.device(os.environ.get("NSLVIZ_TEST_DEVICE", "cuda"))
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(
    DEVICE.type == "cuda" and not torch.cuda.is_available(),
    reason="needs a CUDA device (NSLVIZ_TEST_DEVICE=cpu runs these checks on the CPU)")]
FLOAT32 = dict(rtol=2e-4, atol=2e-5)


@pytest.fixture(autouse=True)
def exact_float32_matmul():
    """TF32 off (PyTorch's default for matmul; cuDNN convolutions default to TF32 on): float32 means
    float32 in these comparisons."""
    if DEVICE.type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _outputs_and_gradients(module, inputs, forward=None):
    """forward(module, inputs) and the gradients of a fixed random projection of it with respect to
    the inputs and every parameter, all moved to the CPU in float64."""
    inputs = inputs.detach().clone().requires_grad_(True)
    out = (forward or (lambda m, x: m(x)))(module, inputs)
    probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    params = [p for p in module.parameters() if p.requires_grad]
    grads = torch.autograd.grad((out * probe.to(out)).sum(), [inputs, *params], allow_unused=True)
    names = ["inputs"] + [n for n, p in module.named_parameters() if p.requires_grad]
    cpu = lambda t: None if t is None else t.detach().double().cpu()
    return cpu(out), {n: cpu(g) for n, g in zip(names, grads)}


def _check_against_float64(module, inputs, forward=None, tol=FLOAT32):
    """module on DEVICE in float32 vs a float64 CPU copy: outputs and every gradient."""
    reference = _outputs_and_gradients(copy.deepcopy(module).double().cpu(), inputs.double().cpu(), forward)
    on_device = _outputs_and_gradients(copy.deepcopy(module).float().to(DEVICE), inputs.float().to(DEVICE), forward)
    torch.testing.assert_close(on_device[0], reference[0], **tol)
    for name, expected in reference[1].items():
        got = on_device[1][name]
        if expected is None or got is None:
            assert expected is None and got is None, name
            continue
        scale = expected.abs().max().clamp_min(1e-12)           # gradients: relative to the largest entry
        torch.testing.assert_close(got / scale, expected / scale, **tol, msg=lambda m: f"gradient of {name}: {m}")
    return on_device


# ---------------------------------------------------------------- layers

@pytest.mark.parametrize("classifier,steps,step_size", [("cosine", 1, "scalar"), ("cosine", 3, "diagonal"),
                                                        ("dot", 1, "scalar"), ("dot", 3, "diagonal")])
def test_mn_head_matches_the_float64_per_example_reference(classifier, steps, step_size):
    """The batched closed-form inner loop (MN eq. 1-3) on the device against the per-example autograd
    loop in float64: logits and the second-order gradients of features, dictionary, α, W, τ."""
    torch.manual_seed(0)
    head = MetaNeighborhoodsHead(64, 10, entries=500, classifier=classifier, inner_steps=steps,
                                 step_size=step_size, step_size_init=0.3, key_init_std=1.0).eval()
    with torch.no_grad():
        head.dictionary.value_logits.normal_(0, 0.2)
    features = torch.randn(32, 64)
    fast = _check_against_float64(head, features)
    expected = _outputs_and_gradients(copy.deepcopy(head).double(), features.double(),
                                      lambda m, x: reference_head(m, x))
    torch.testing.assert_close(fast[0], expected[0], **FLOAT32)
    for name in ("inputs", "dictionary.keys", "dictionary.value_logits", "inner_step_size"):
        assert fast[1][name].abs().sum() > 0, name                # the meta-gradient reaches it


def test_mn_entry_dropout_on_the_device_keeps_half_of_the_entries_per_example():
    head = MetaNeighborhoodsHead(16, 4, entries=100, entry_dropout=0.5).to(DEVICE).train()
    attention = head(torch.randn(8, 16, device=DEVICE), return_details=True)["attention"]
    assert attention.device.type == DEVICE.type
    assert ((attention > 0).sum(1) == 50).all()                 # each example its own 50 entries
    torch.testing.assert_close(attention.sum(1), torch.ones(8, device=DEVICE))
    assert len({tuple(row.nonzero().flatten().tolist()) for row in attention}) > 1


def test_ifilm_matches_float64():
    torch.manual_seed(0)
    film = IFiLM(channels=24, entries=10)
    with torch.no_grad():
        film.keys.normal_()
        film.gamma.normal_(0, 0.3)
        film.beta.normal_(0, 0.3)
    _check_against_float64(film, torch.randn(6, 24, 9, 9))


@pytest.mark.parametrize("mode", NSL_MODES[1:])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("impl", ["auto", "patches"])
def test_ns_conv_matches_float64(mode, stride, impl):
    """Static and dynamic NSL (DNS and UNS) with their predictors, train-mode BatchNorm; "auto" takes
    the per-tap path for dynamic DNS at stride 1, "patches" the general one."""
    if impl == "patches" and not mode.startswith("dynamic"):
        pytest.skip("the implementation choice is for the dynamic modes")
    torch.manual_seed(0)
    layer = NSConv2d(8, 16, stride=stride, mode=mode, dynamic_impl=impl).train()
    if not layer.dynamic:
        with torch.no_grad():
            layer.similarity.add_(0.3 * torch.randn(layer.similarity.shape))
    _check_against_float64(layer, torch.randn(4, 8, 12, 12))


# ---------------------------------------------------------------- whole models

@pytest.mark.parametrize("backbone,method,nsl", [("resnet29", "mn_ifilm", "none"), ("densenet40", "mn", "none"),
                                                 ("convnet4", "vanilla_ifilm", "none"), ("cnn9", "vanilla", "dynamic_dns")])
def test_model_logits_match_float64(backbone, method, nsl):
    torch.manual_seed(0)
    model = build_image_model(method, backbone, 10, entries=200, nsl=nsl).eval()
    images = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        expected = copy.deepcopy(model).double()(images.double())
        got = copy.deepcopy(model).to(DEVICE)(images.to(DEVICE))
    assert got.dtype == torch.float32 and expected.dtype == torch.float64
    torch.testing.assert_close(got.double().cpu(), expected, rtol=1e-3, atol=1e-3)


def test_bf16_channels_last_keeps_the_head_in_float32_and_close():
    """What the trainer runs on a GPU: bf16 autocast and channels_last around a float32 MN head."""
    torch.manual_seed(0)
    model = build_image_model("mn_ifilm", "resnet29", 10, entries=200).to(DEVICE).eval()
    images = torch.rand(8, 3, 32, 32, device=DEVICE)
    with torch.no_grad():
        reference = model(images, return_details=True)
        fast = model.to(memory_format=torch.channels_last)
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
            details = fast(images.contiguous(memory_format=torch.channels_last), return_details=True)
        again = fast.head(details["features"], return_details=True)
    assert details["logits"].dtype == details["base_logits"].dtype == details["features"].dtype == torch.float32
    torch.testing.assert_close(again["logits"], details["logits"], rtol=1e-6, atol=1e-6)   # head ran in float32
    assert (details["logits"] - reference["logits"]).abs().max() < 0.5      # |logit| <= τ = 10


# ---------------------------------------------------------------- trainer

DEVICE_TINY = dict(TINY, device=str(DEVICE), method="mn_ifilm")


def test_scikit_learn_estimators_train_and_predict_on_the_device():
    """device=...: every member lives on the device, probabilities sum to 1, and the fit is as good as the
    CPU's on an easy table (not the same numbers: other kernels, other rounding)."""
    import numpy as np
    from sklearn.datasets import make_blobs, make_friedman1

    from nslviz.estimators import MetaNeighborsClassifier, MetaNeighborsRegressor
    x, y = make_blobs(n_samples=300, centers=4, n_features=8, random_state=0)
    scores = {}
    for device in (DEVICE.type, "cpu"):
        model = MetaNeighborsClassifier(random_state=0, device=device, max_epochs=30).fit(x[:240], y[:240])
        assert {next(m.parameters()).device.type for m in model.modules_} == {device}
        np.testing.assert_allclose(model.predict_proba(x[240:]).sum(axis=1), 1.0, rtol=1e-12)
        scores[device] = model.score(x[240:], y[240:])
    assert scores[DEVICE.type] >= 0.95 and abs(scores[DEVICE.type] - scores["cpu"]) <= 0.02
    xr, yr = make_friedman1(n_samples=400, noise=0.5, random_state=0)
    regressor = MetaNeighborsRegressor(random_state=0, device=DEVICE.type, max_epochs=50).fit(xr[:320], yr[:320])
    assert next(regressor.module_.parameters()).device.type == DEVICE.type
    assert regressor.score(xr[320:], yr[320:]) > 0.6


def test_episodes_from_labels_on_the_device_are_those_of_the_same_labels_on_the_cpu():
    from nslviz.datasets.episodes import sample_episodes
    labels = torch.arange(12).repeat_interleave(7)
    here, there = (sample_episodes(l, episodes=3, way=5, shot=2, query=3, seed=4) for l in (labels, labels.to(DEVICE)))
    assert torch.equal(here.support, there.support) and torch.equal(here.query, there.query)
    assert torch.equal(here.classes, there.classes) and there.support.device.type == "cpu"


def test_trainer_runs_on_the_device_and_resumes(tmp_path):
    """amp/channels_last "auto" (bf16 and channels_last on CUDA); a run cut at iteration 6 and resumed
    ends with the same schedule and nearly the same numbers (CUDA kernels need not be bitwise
    deterministic; on the CPU they are equal)."""
    whole = train(TrainConfig(**DEVICE_TINY), tmp_path / "whole", progress=False)
    assert whole["device"].startswith(DEVICE.type) and whole["iterations"] == 12
    assert 0 <= whole["test_acc"] <= 1 and whole["test_loss"] == whole["test_loss"]    # finite, not NaN
    interrupt_at(TrainConfig(**DEVICE_TINY), tmp_path / "cut", 6)
    resumed = train(TrainConfig(**DEVICE_TINY), tmp_path / "cut", resume=True, progress=False)
    assert resumed["iterations"] == whole["iterations"]
    assert abs(resumed["test_loss"] - whole["test_loss"]) < 0.1
    if DEVICE.type == "cpu":
        assert stable(resumed) == stable(whole)


def test_images_read_from_files_reach_the_device_cropped_as_on_the_cpu(tmp_path):
    """ImageNet-2012's reader with two decoding workers and pinned memory: evaluation batches on the
    device equal the CPU's; training batches are windows of the same patches, drawn on the device."""
    from nslviz.datasets.images import load_image_dataset
    from nslviz.training.data import batch_stream
    from test_imagenet_files import labels_read, write_imagenet
    write_imagenet(tmp_path)
    split = load_image_dataset("imagenet", tmp_path, val_size=3, image_size=16).train
    for shuffle in (False, True):
        here, there = (list(batch_stream(split, 4, shuffle=shuffle, augment="flip" if shuffle else "none",
                                         device=device, workers=2).epoch(0)) for device in ("cpu", DEVICE))
        for (a, la), (b, lb) in zip(here, there, strict=True):
            assert b.device.type == DEVICE.type and torch.equal(la, lb.cpu())
            assert torch.equal(labels_read((b.cpu() * 255).round().to(torch.uint8)), la)
            if not shuffle:
                assert torch.equal(a, b.cpu())


def test_maxl_trains_on_the_device(tmp_path):
    """MAXL's second-order look-ahead on the device, next to bf16 autocast and channels_last ("auto")."""
    summary = train(TrainConfig(**{**DEVICE_TINY, "method": "maxl"}), tmp_path / "maxl", progress=False)
    assert summary["device"].startswith(DEVICE.type) and summary["iterations"] == 12
    assert 0 <= summary["test_acc"] <= 1 and summary["test_loss"] == summary["test_loss"]
    rows = (tmp_path / "maxl" / "metrics.jsonl").read_text().splitlines()
    assert all(math.isfinite(json.loads(row)["generator_meta_loss"]) for row in rows)


@pytest.mark.slow
def test_torchrun_one_process_on_the_device(tmp_path):
    """The DDP path (NCCL on CUDA, gloo on the CPU) with one process: the same command a multi-GPU
    user runs with --nproc_per_node N."""
    args = ["--dataset", "digits", "--backbone", "convnet4", "--method", "mn", "--epochs", "1",
            "--batch-size", "32", "--train-limit", "96", "--eval-limit", "64", "--entries", "40",
            "--image-size", "16", "--device", str(DEVICE), "--no-progress", "--run-dir", str(tmp_path / "ddp"), "--json"]
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
                          "-m", "nslviz", "train", *args], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "TMPDIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["world_size"] == 1 and summary["iterations"] == 3 and summary["device"].startswith(DEVICE.type)


@pytest.mark.slow
def test_compiled_training_step_matches_eager_in_float64():
    """torch.compile (Triton on CUDA) through the second-order inner loop, in float64."""
    check_compiled_matches_eager(DEVICE)
