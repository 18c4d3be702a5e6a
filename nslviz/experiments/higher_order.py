"""NSL sec. 6: a dynamic NSL layer is a higher-order function of its input; a convolution is linear.

A convolution's output at position p is linear in the k×k patch X(p): out(p) = WᵀX(p). A dynamic layer
outputs WᵀM_θ(X)X. With sec. 6's one-layer predictor (`NSConv2d(..., predictor="linear")`,
M_θ(X) = I + W′X + b′) a DNS layer on one channel computes

    out(p) = Σ_s W_s (1 + b′_s) X_s(p)  +  Σ_{s,t} W_s W′_{s,t} X_t(p) X_s(p)          (sec. 6: WᵀW′XᵀX)

a linear part plus a quadratic form of the patch (`quadratic_form_by_hand` writes it out). The
released predictor (`predictor="sphere"`) divides each k×k window by its norm before its first layer
and reads the normalised windows around p (5×5 pixels for a 3×3 layer) with its second, so M depends on
the pattern of the input only, not its scale: out(cX) − out(0) = c·(out(X) − out(0)) for c > 0 (up to
the 1e-4 inside the norm): of higher order in the pattern, of degree one in the contrast.

The experiment trains three one-layer models (one channel in and out, a 3×3 kernel, no padding, a
bias) to compute three functions of grey photo crops (`nslviz.datasets.photos`), and scores them by
R² on crops from rows never trained on:

    sobel          a Sobel filter                 linear in X: the control every model can fit
    edge_strength  |∇X| (central differences)     degree one in the contrast, but even: X and −X have
                                                  the same edges, and a linear function cannot give
                                                  them the same output
    edge_energy    |∇X|²                          quadratic

`contrast_degree` measures each trained model's degree in the contrast, log₂ of how much its output
(less its output on a blank patch) grows when the input is doubled (scaled about the photos' mean): 1
for a convolution, 2 for a pure quadratic form, an effective exponent between X and 2X for a mixture.
`run_higher_order(config)` runs it all; `python -m nslviz higher-order` and notebook 08 call it.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .._checks import check_choice, check_positive, check_seed, check_threads
from .._threads import torch_threads
from ..datasets.photos import photo_crops, photo_region
from ..nsl import NSConv2d
from ..training.steps import train_steps

CENTRAL_DIFFERENCE = torch.tensor([[0.0, 0.0, 0.0], [-0.5, 0.0, 0.5], [0.0, 0.0, 0.0]])    # ∂/∂column
SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 4
TARGETS = {"sobel": "Sobel filter (linear)", "edge_strength": "edge strength |∇X| (degree 1, even)",
           "edge_energy": "edge energy |∇X|² (quadratic)"}
MAX_CROP = 71                     # the bottom third of a halved bundled photo: 213 - 142 rows
MODELS = {"convolution": "convolution WᵀX",
          "linear_predictor": "dynamic NSL, linear predictor M = I + W′X + b′",
          "released_predictor": "dynamic NSL, released predictor (SphereConv, conv)"}


def _valid_conv(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, kernel[None, None].to(x.dtype))                          # (B, 1, H-2, W-2)


def target_map(name: str, x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) -> (B, 1, H-2, W-2): the target `name` (TARGETS) at every 3×3 window."""
    if name == "sobel":
        return _valid_conv(x, SOBEL)
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}; expected one of {', '.join(map(repr, TARGETS))}")
    energy = _valid_conv(x, CENTRAL_DIFFERENCE) ** 2 + _valid_conv(x, CENTRAL_DIFFERENCE.T) ** 2
    return energy if name == "edge_energy" else energy.sqrt()


def build_model(name: str) -> nn.Module:
    """One layer, 1 channel in and out, 3×3, no padding, with a bias; `name` one of MODELS."""
    if name == "convolution":
        return nn.Conv2d(1, 1, 3, bias=True)
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(map(repr, MODELS))}")
    return NSConv2d(1, 1, 3, padding=0, bias=True, mode="dynamic_dns",
                    predictor="linear" if name == "linear_predictor" else "sphere")


def r_squared(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """1 − Σ(prediction − y)² / Σ(y − ȳ)²: 1 is perfect, 0 is no better than the targets' own mean."""
    if prediction.shape != target.shape:
        raise ValueError(f"prediction and target must have the same shape, got {tuple(prediction.shape)} and "
                         f"{tuple(target.shape)}")
    spread = (target - target.mean()).square().sum()
    if not spread > 0:
        raise ValueError("R² needs targets that vary; these are all equal")
    return float(1 - (prediction - target).square().sum() / spread)


@torch.no_grad()
def contrast_degree(model: nn.Module, x: torch.Tensor) -> float:
    """log₂(‖f(2X) − f(0)‖ / ‖f(X) − f(0)‖) over the crops x, in eval mode: the degree of f − f(0) in
    the contrast (1: linear or positively homogeneous, 2: a quadratic form)."""
    model.eval()
    blank = model(torch.zeros_like(x))
    response, doubled = float((model(x) - blank).norm()), float((model(2 * x) - blank).norm())
    if not (response > 0 and doubled > 0):
        raise ValueError(f"{type(model).__name__} gives the same output on these crops as on a blank patch: "
                         f"no degree to measure")
    return math.log2(doubled / response)


def quadratic_form_by_hand(layer: NSConv2d, x: torch.Tensor) -> torch.Tensor:
    """The output of a dynamic DNS layer with the linear predictor, written as sec. 6's polynomial:
    out(b, f, p) = Σ_{c,s} W[f,c,s] X_c,s(p) (1 + b′_s + Σ_{c′,t} W′[s,c′,t] X_c′,t(p)) + bias[f],
    from the unfolded patches (B, C·K, L); the layer itself computes it as eq. (1) with M = I + W′X + b′."""
    given = (layer.mode, getattr(getattr(layer, "predictor", None), "kind", None), layer.stride,
             layer.parametrization, layer.shape_scores is not None)
    if given != ("dynamic_dns", "linear", 1, "free", False):
        raise ValueError(f"quadratic_form_by_hand writes out a dynamic_dns layer with predictor 'linear', stride "
                         f"1, the free parametrisation and no kernel shape; got mode {given[0]!r}, predictor "
                         f"{given[1]!r}, stride {given[2]}, parametrization {given[3]!r}, kernel_shape {given[4]}")
    batch, channels, height, width = x.shape
    k, pad = layer.kernel_size, layer.padding
    patches = F.unfold(x, k, padding=pad).view(batch, channels, k * k, -1)        # (B, C, K, L) X_c,s(p)
    w = layer.weight.view(layer.out_channels, channels, k * k)                  # (F, C, K)
    w_prime = layer.predictor.output_weight.view(k * k, channels, k * k)        # (K, C′, K) W′[s, c′, t]
    mask = 1 + layer.predictor.output_bias.view(1, -1, 1) + torch.einsum("sdt,bdtl->bsl", w_prime, patches)
    out = torch.einsum("fcs,bcsl,bsl->bfl", w, patches, mask)                   # (B, F, L)
    if layer.bias is not None:
        out = out + layer.bias.view(1, -1, 1)
    size = (height + 2 * pad - k + 1, width + 2 * pad - k + 1)
    return out.view(batch, layer.out_channels, *size)


@dataclass(frozen=True)
class HigherOrderConfig:
    steps: int = 4000                 # Adam steps per model and target (cosine decay to 0)
    lr: float = 0.03
    batch_size: int = 32
    crop: int = 12                    # crops of crop×crop pixels; every model sees (crop-2)² windows of each
    train_crops: int = 512            # half from each photo's top two thirds
    test_crops: int = 256             # half from each photo's bottom third
    example_size: int = 64            # the test region the maps are drawn on
    targets: tuple = tuple(TARGETS)   # which of TARGETS to fit
    models: tuple = tuple(MODELS)     # which of MODELS to train on each
    threads: int | None = 1           # torch CPU threads while training (restored after): small tensors
    seed: int = 0
    progress: bool = False

    def __post_init__(self):
        for name in ("steps", "batch_size"):
            check_positive(name, getattr(self, name), integer=True)
        for name in ("crop", "example_size"):
            check_positive(name, getattr(self, name), integer=True, minimum=3)
            if getattr(self, name) > MAX_CROP:
                raise ValueError(f"{name} must be at most {MAX_CROP} (the height of the photos' test rows), got "
                                 f"{getattr(self, name)}")
        if self.batch_size * (self.crop - 2) ** 2 < 2:      # the released predictor's BatchNorm, in training
            raise ValueError(f"batch_size × (crop − 2)² must be at least 2 (the released predictor's BatchNorm needs "
                             f"more than one value per channel), got batch_size={self.batch_size} with crop={self.crop}")
        for name in ("train_crops", "test_crops"):          # half from each photo
            check_positive(name, getattr(self, name), integer=True, minimum=2)
        check_positive("lr", self.lr)
        check_seed(self.seed)
        if self.threads is not None:
            check_threads("threads", self.threads)
        for name, given, known in (("target", self.targets, TARGETS), ("model", self.models, MODELS)):
            if isinstance(given, str) or not given or len(set(given)) != len(given):
                raise ValueError(f"{name}s must be a non-empty tuple of distinct names from {tuple(known)}, got "
                                 f"{given!r}")
            for value in given:
                check_choice(name, value, known)


@dataclass
class HigherOrderResult:
    config: HigherOrderConfig
    r2: dict                          # {target: {model: R² on the test crops}}
    degree: dict                      # {target: {model: contrast_degree on the test crops}}
    example: dict = field(default_factory=dict)   # {"image": (S, S), "targets": {t: map}, "outputs": {t: {m: map}}}
    seconds: float = 0.0

    def summary(self) -> dict:
        c = self.config
        return {"steps": c.steps, "lr": c.lr, "batch_size": c.batch_size, "crop": c.crop, "seed": c.seed,
                "train_crops": c.train_crops, "test_crops": c.test_crops, "threads": c.threads,
                "r2": self.r2, "contrast_degree": self.degree, "seconds": round(self.seconds, 3)}


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: HigherOrderConfig,
        generator: torch.Generator) -> nn.Module:
    """Adam on the mean squared error, minibatches of config.batch_size crops, lr decayed to 0 (cosine)."""
    train_steps(model.train(), x, y, F.mse_loss, steps=config.steps, batch_size=config.batch_size, lr=config.lr,
                generator=generator, cosine=True)
    return model.eval()


def run_higher_order(config: HigherOrderConfig | None = None, **overrides) -> HigherOrderResult:
    """Train every model of config.models on every target of config.targets (same crops, same batches,
    same seed); R² and contrast degree on the test crops, and every model's map of one test region."""
    config = dataclasses.replace(config or HigherOrderConfig(), **overrides)
    start = time.perf_counter()
    train_x = photo_crops("train", config.train_crops, config.crop, config.seed)     # (N, 1, crop, crop)
    test_x = photo_crops("test", config.test_crops, config.crop, config.seed)
    image = photo_region(config.example_size)                                         # (1, 1, S, S)
    r2, degree = {t: {} for t in config.targets}, {t: {} for t in config.targets}
    example = {"image": image[0, 0, 1:-1, 1:-1].numpy(), "targets": {}, "outputs": {t: {} for t in config.targets}}
    runs = [(t, m) for t in config.targets for m in config.models]
    with torch_threads(config.threads), torch.random.fork_rng(devices=[]):      # seeded, global state kept
        for target, name in tqdm(runs, desc="higher-order fits", disable=not config.progress):
            torch.manual_seed(config.seed)
            model = fit(build_model(name), train_x, target_map(target, train_x), config,
                        torch.Generator().manual_seed(config.seed))
            with torch.no_grad():
                r2[target][name] = r_squared(model(test_x), target_map(target, test_x))
                example["outputs"][target][name] = model(image)[0, 0].numpy()            # (S-2, S-2)
                example["targets"][target] = target_map(target, image)[0, 0].numpy()
            try:
                degree[target][name] = contrast_degree(model, test_x)
            except ValueError as error:                      # a constant model: the fit went nowhere
                raise ValueError(f"{error}: the {name} model of {target} did not learn (at lr {config.lr} its fit may "
                                 f"have diverged; try a smaller lr)") from None
    return HigherOrderResult(config, r2, degree, example, time.perf_counter() - start)
