"""The GPU-oriented paths, checked on CPU (CI has no GPU): bf16 autocast with channels_last, and
torch.compile. On CUDA the trainer turns the first two on by default ("auto"); these tests make sure
the same code paths run here, keep the MN head in float32 and agree with the plain float32 model."""
import shutil

import pytest
import torch

from nslviz.models.classifier import build_image_model
from nslviz.training.config import TrainConfig
from nslviz.training.trainer import train

from runs import TINY as TRAINER_TINY, interrupt_at

TINY = dict(TRAINER_TINY, train_limit=96, eval_limit=64, checkpoint_every=2, method="mn_ifilm")   # 3 batches an epoch


def _model(method="mn_ifilm"):
    torch.manual_seed(0)
    return build_image_model(method, "convnet4", 10, in_channels=1, image_size=16, entries=40)


def _images():
    return torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("method", ["mn", "mn_ifilm", "vanilla_ifilm"])
def test_bf16_channels_last_keeps_the_head_in_float32_and_close_to_float32(method):
    model, images = _model(method).eval(), _images()
    with torch.no_grad():
        reference = model(images, return_details=True)
        fast = model.to(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            details = fast(images.contiguous(memory_format=torch.channels_last), return_details=True)
        assert details["logits"].dtype == details["base_logits"].dtype == torch.float32
        # the head in float32 exactly: re-running it on the bf16 backbone's features, outside autocast,
        # gives the same logits bit for bit
        again = fast.head(details["features"], return_details=True) if fast.is_meta_neighborhoods \
            else {"logits": fast.head(details["features"])}
    assert torch.equal(again["logits"], details["logits"])
    # the bf16 backbone moves the logits (τ·cos, |logit| ≤ τ = 10) by a few hundredths, not more
    assert (details["logits"] - reference["logits"]).abs().max() < 0.25
    assert torch.equal(details["logits"].argmax(1), reference["logits"].argmax(1))


def test_bf16_channels_last_training_step_has_finite_float32_gradients():
    model = _model().to(memory_format=torch.channels_last).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(_images().contiguous(memory_format=torch.channels_last))
    torch.nn.functional.cross_entropy(logits, torch.arange(8)).backward()
    head = dict(model.head.named_parameters())
    assert all(p.grad is not None and p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()
               for p in model.parameters() if p.requires_grad)
    assert head["dictionary.keys"].grad.abs().sum() > 0               # the meta-gradient reaches the keys


@pytest.mark.slow
def test_trainer_runs_bf16_and_channels_last_on_cpu_and_a_killed_run_resumes_in_the_same_precision(tmp_path):
    plain = train(TrainConfig(**TINY), tmp_path / "plain", progress=False)
    fast = train(TrainConfig(**TINY, amp="bf16", channels_last=True), tmp_path / "fast", progress=False)
    assert fast["iterations"] == plain["iterations"] == 6
    assert abs(fast["test_loss"] - plain["test_loss"]) < 0.1
    interrupt_at(TrainConfig(**TINY, amp="bf16", channels_last=True), tmp_path / "cut", 3)   # checkpoint at 2
    # the precision changes the numbers: a bf16 run is not silently continued in float32 ...
    with pytest.raises(ValueError, match="precision 'bf16' and would go on with 'fp32'; pass --amp bf16"):
        train(TrainConfig(**TINY, channels_last=True), tmp_path / "cut", resume=True, progress=False)
    # ... and neither is a change of memory layout, which changes the arithmetic's last bits
    with pytest.raises(ValueError, match="cannot resume: .*channels_last: True -> False"):
        train(TrainConfig(**TINY, amp="bf16", channels_last=False), tmp_path / "cut", resume=True, progress=False)
    resumed = train(TrainConfig(**TINY, amp="bf16", channels_last=True), tmp_path / "cut", resume=True, progress=False)
    assert resumed["iterations"] == 6 and abs(resumed["test_loss"] - fast["test_loss"]) < 0.05


def check_compiled_matches_eager(device: torch.device | str = "cpu") -> None:
    """torch.compile (inductor: C++ on CPU, Triton on CUDA) through the MN inner loop's second-order
    gradient, as the trainer's `compile=True` uses it for training steps (evaluation runs the eager
    model): the same loss and the same gradient for every parameter. Entry dropout draws random
    numbers, so inductor is told to use eager's generator for equal masks.

    The comparison runs in float64. In float32 the two programs round differently in the last bits,
    and where two activations of a max-pool window tie to within those bits, eager and compiled
    send the gradient to different ones: both are valid subgradients, and the first conv's weight
    gradient then differs by a few percent (seen on an AVX-512 CPU, seed 0: 4 %, with 2e-6 against
    float64 for every other parameter). In float64 such near-ties do not occur at this size."""
    import torch._inductor.config as inductor
    eager, images = _model().double().to(device), _images().double().to(device)
    labels = torch.arange(8, device=device)
    compiled_model = _model().double().to(device)
    compiled = torch.compile(compiled_model)
    losses, grads = [], []
    with inductor.patch(fallback_random=True):
        for net, module in ((eager, eager), (compiled, compiled_model)):
            torch.manual_seed(3)
            loss = torch.nn.functional.cross_entropy(net(images), labels)
            loss.backward()
            losses.append(loss.detach().cpu())
            grads.append({n: p.grad.cpu() for n, p in module.named_parameters() if p.grad is not None})
    assert losses[0].dtype == torch.float64
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-10, atol=1e-12)
    assert grads[0].keys() == grads[1].keys() and "head.dictionary.keys" in grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-7, atol=1e-10, msg=name)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="inductor compiles C++ on CPU and no C++ compiler is installed")
def test_compiled_model_matches_eager_forward_and_meta_gradients():
    check_compiled_matches_eager("cpu")


@pytest.mark.parametrize("method", ["mn_ifilm", "vanilla"])
def test_a_float64_model_computes_in_float64_end_to_end(method):
    """Mixed precision stops at float32 for half types only: a float64 model (for gradient checks and
    exact comparisons) keeps float64 through the backbone, iFiLM's attention and the MN head."""
    model = _model(method).double()
    details = model(_images().double(), return_details=True)
    assert {details[k].dtype for k in ("features", "logits", "base_logits")} == {torch.float64}
    film = model.backbone.blocks[0].film if method.endswith("ifilm") else None
    if film is not None:
        assert film.attention(torch.rand(2, film.channels, 4, 4, dtype=torch.float64)).dtype == torch.float64
