"""NSL sec. 5.2: a residual step is an NSL layer, and a stack of them is an ODE solver.

A static UNS layer on one channel computes out(p) = WᵀM X(p) for the k×k patch X(p) around p (K = k²
taps). Whatever the stored kernel W ≠ 0, the rank-one similarity

    M′ = W̃ + M,   W̃ = W e_cᵀ / ‖W‖²,   M = W (u − e_c)ᵀ / ‖W‖²        (K, K), so WᵀM′ = uᵀ

(e_c the centre tap) makes the layer apply the stencil u: WᵀW̃X = X_c is the input's own pixel, the
residual connection, and WᵀMX the change. With u = e_c + Δt·L, L the 5-point Laplacian stencil,

    x_{n+1} = x_n + Δt·L x_n                                               (3×3 layer: forward Euler)

is a residual block and one forward-Euler step of the heat equation dx/dt = L x; n such layers
integrate it to t = nΔt. Another similarity is another solver: a 5×5 layer with u = e_c + Δt·L +
(Δt²/2)·L² (L² the stencil of L applied twice) takes one step of the second-order Runge–Kutta method
(Heun's), x + Δt Lx + (Δt²/2) L²x, in a single layer (on a linear ODE every two-stage second-order
Runge–Kutta method, the midpoint rule too, takes this same step).

Zero padding means zero outside the image, where dx/dt = Lx has the exact solution

    x(t) = S exp(tΛ) S x,   Λ_jk = −4 sin²(πj / 2(H+1)) − 4 sin²(πk / 2(N+1))     for an H × N image

with S the orthonormal type-I discrete sine transform (its own inverse), which diagonalises L. Both
solvers are stable only for Δt ≤ 1/4 (to within a few ten-thousandths on a finite image): L's
eigenvalues approach −8, and |1 + z| ≤ 1 (Euler) and |1 + z + z²/2| ≤ 1 (Heun) need z = Δt·λ ≥ −2.

The input is a photo region on a zero margin. The 5×5 stencil of L² reads past the border, so the
Heun layers solve the zero-boundary problem only while the border stays at zero: the margin must be
at least the distance the heat spreads by t, about 5·√(2t) pixels (`margin_for`, 13 at t = 3; a
narrower one is refused, it would show a wrong order). `run_residual_ode()` runs both solvers at
several step sizes; `python -m nslviz residual-ode` and notebook 08 call it.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.fft
import torch
import torch.nn.functional as F

from .._checks import check_choice, check_positive, check_seed
from .._memory import check_memory
from .._threads import torch_threads
from ..datasets.photos import photo_region
from ..nsl import NSConv2d

LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])      # 5-point, (3, 3)
METHODS = {"euler": "forward Euler: 3×3 layers, x + Δt·Lx",
           "heun": "Heun (2nd-order Runge–Kutta): 5×5 layers, x + Δt·Lx + Δt²/2·L²x"}
STABILITY_LIMIT = 0.25                                      # largest stable Δt of both methods (λ_min ≈ −8)


def step_stencil(method: str, dt: float) -> torch.Tensor:
    """u (k, k), float64: one step of `method` (METHODS) for dx/dt = Lx is x ← Σ_t u_t X_t, a
    correlation with zero padding: e_c + Δt·L (3×3) or e_c + Δt·L + (Δt²/2)·L² (5×5)."""
    check_choice("method", method, METHODS)
    check_positive("dt", dt)
    laplacian = LAPLACIAN.double()
    if method == "euler":
        return _centre(3) + dt * laplacian
    squared = F.conv2d(F.pad(laplacian, (2, 2, 2, 2))[None, None], laplacian[None, None])[0, 0]    # L² (5, 5)
    return _centre(5) + dt * F.pad(laplacian, (1, 1, 1, 1)) + dt * dt / 2 * squared


def _centre(k: int) -> torch.Tensor:
    e = torch.zeros(k, k, dtype=torch.float64)
    e[k // 2, k // 2] = 1.0
    return e


def residual_similarity(kernel: torch.Tensor, stencil: torch.Tensor) -> torch.Tensor:
    """M′ = W̃ + M = W uᵀ/‖W‖² (K, K) [s, t] for a k×k kernel W and a k×k stencil u: WᵀM′ = uᵀ, so a
    static UNS layer storing W applies u. W̃ = W e_cᵀ/‖W‖² alone makes it the identity (WᵀW̃X = X_c)."""
    w, u = kernel.flatten(), stencil.flatten()                          # (K,), (K,)
    if w.shape != u.shape:
        raise ValueError(f"kernel and stencil must have the same k×k shape, got {tuple(kernel.shape)} and "
                         f"{tuple(stencil.shape)}")
    norm = w.dot(w)
    if not norm > 0:
        raise ValueError("the kernel is all zeros: WᵀM′ = 0 for every M′, no similarity makes it a step")
    return torch.outer(w, u) / norm                                    # (K, K)


def step_layer(method: str, dt: float, generator: torch.Generator | None = None) -> NSConv2d:
    """One static UNS NSConv2d (1 channel, float64, no bias, zero padding) whose stored kernel W is
    random (N(0, 1) from `generator`) and whose similarity residual_similarity(W, step_stencil(method, dt))
    makes it one step of `method`, whatever W is."""
    return _layer_applying(step_stencil(method, dt), generator)


def _layer_applying(stencil: torch.Tensor, generator: torch.Generator | None) -> NSConv2d:
    k = stencil.shape[0]
    layer = NSConv2d(1, 1, k, padding=k // 2, mode="static_uns").double()
    with torch.no_grad():
        layer.weight.copy_(torch.randn(1, 1, k, k, generator=generator, dtype=torch.float64))
        layer.similarity.copy_(residual_similarity(layer.weight[0, 0], stencil))
    return layer.requires_grad_(False)


def exact_heat(image: np.ndarray, t: float) -> np.ndarray:
    """x(t) of dx/dt = Lx from x(0) = image (H, W), zero outside the image: S exp(tΛ) S x."""
    image = np.asarray(image, dtype=np.float64)
    rates = [-4 * np.sin(np.pi * np.arange(1, n + 1) / (2 * (n + 1))) ** 2 for n in image.shape]
    decay = np.exp(t * (rates[0][:, None] + rates[1][None, :]))                      # exp(tΛ) (H, W)
    return scipy.fft.idstn(decay * scipy.fft.dstn(image, type=1, norm="ortho"), type=1, norm="ortho")


def margin_for(t_end: float) -> int:
    """The zero margin, in pixels, that the heat does not cross by t_end: 5 standard deviations of
    the Gaussian it approaches, 5·√(2t), rounded up."""
    return math.ceil(5 * math.sqrt(2 * t_end))


@dataclass(frozen=True)
class ResidualODEConfig:
    t_end: float = 3.0                  # integrate dx/dt = Lx from 0 to t_end
    layers: tuple = (10, 12, 15, 20, 30, 40, 60, 120)   # stack depths n, Δt = t_end / n
    size: int = 40                      # the photo region (size × size pixels) ...
    margin: int | None = None           # ... on a zero margin of this width (None: margin_for(t_end))
    seed: int = 0                       # the stored kernels W

    def __post_init__(self):
        check_positive("t_end", self.t_end)
        check_positive("size", self.size, integer=True, minimum=3)
        if self.margin is None:
            object.__setattr__(self, "margin", margin_for(self.t_end))
        check_positive("margin", self.margin, integer=True, minimum=0)
        if self.margin < margin_for(self.t_end):
            raise ValueError(f"margin {self.margin} is too narrow for t_end {self.t_end:g}: the heat spreads about "
                             f"5·√(2t) = {margin_for(self.t_end)} pixels by then, and the 5×5 Heun layers, which "
                             f"read past the border, would no longer solve the zero-boundary problem; use a margin "
                             f"of at least {margin_for(self.t_end)} (or leave it out)")
        check_seed(self.seed)
        if not self.layers:
            raise ValueError("layers must name at least one stack depth")
        for n in self.layers:
            check_positive("layers", n, integer=True)


@dataclass
class ResidualODEResult:
    config: ResidualODEConfig
    image: np.ndarray                   # (H, W) the input x(0)
    exact: np.ndarray                   # (H, W) x(t_end)
    outputs: dict                       # {method: {n: (H, W) the n-layer stack's output}}
    errors: dict                        # {method: {n: RMS of output − exact, over all pixels}}
    residual_difference: float = 0.0    # largest |step layer(x) − (x + Δt·Lx)| of one Euler layer
    seconds: float = 0.0
    steps: dict = field(init=False)     # {n: Δt}

    def __post_init__(self):
        self.steps = {n: self.config.t_end / n for n in self.config.layers}

    def summary(self) -> dict:
        c = self.config
        return {"t_end": c.t_end, "layers": list(c.layers), "size": c.size, "margin": c.margin, "seed": c.seed,
                "dt": {str(n): dt for n, dt in self.steps.items()},
                "rms_error": {m: {str(n): e for n, e in errors.items()} for m, errors in self.errors.items()},
                "stability_limit": STABILITY_LIMIT, "residual_difference": self.residual_difference,
                "seconds": round(self.seconds, 3)}


def integrate(image: torch.Tensor, method: str, layers: int, t_end: float, seed: int = 0) -> torch.Tensor:
    """(H, W) -> (H, W): `layers` step layers of `method` with Δt = t_end / layers, each storing its own
    random kernel (seeded), applied one after the other."""
    check_positive("layers", layers, integer=True)
    stencil, generator = step_stencil(method, t_end / layers), torch.Generator().manual_seed(seed)
    x = image.double()[None, None]                                        # (1, 1, H, W)
    with torch_threads(1), torch.no_grad():                               # one-channel maps: one thread is fastest
        for _ in range(layers):                                           # depth, not examples: one layer each
            x = _layer_applying(stencil, generator)(x)
    return x[0, 0]


def run_residual_ode(config: ResidualODEConfig | None = None, **overrides) -> ResidualODEResult:
    """Both solvers (METHODS) at every depth of config.layers, against the exact solution at t_end."""
    config = dataclasses.replace(config or ResidualODEConfig(), **overrides)
    margin, side = config.margin, config.size + 2 * config.margin
    # float64 maps held at once: every stack's output and about 36 more for the input, the exact solution's
    # transforms and the layers' working copies (measured: 1.2 GB at 2002² with one depth). A typo in t_end
    # widens the margin with √t: --t-end 1e6 is 14,184 px a side
    maps = 2 * len(config.layers) + 36
    check_memory(f"residual-ode on a {side}×{side} map ({config.size} px and a {margin}-px zero margin on each side)",
                 {"float64 maps": maps * side * side * 8},
                 "use a smaller t_end (--t-end), which sets the margin, or a smaller size or margin")
    start = time.perf_counter()
    image = F.pad(photo_region(config.size)[0, 0].double(), (margin,) * 4)            # (H, W), zero margin
    exact = exact_heat(image.numpy(), config.t_end)
    outputs, errors = {m: {} for m in METHODS}, {m: {} for m in METHODS}
    for method in METHODS:
        for n in config.layers:
            out = integrate(image, method, n, config.t_end, config.seed).numpy()
            outputs[method][n] = out
            errors[method][n] = float(np.sqrt(np.mean((out - exact) ** 2)))
    dt = config.t_end / config.layers[0]
    x = image[None, None]
    with torch.no_grad():
        one_step = step_layer("euler", dt, torch.Generator().manual_seed(config.seed))(x)
        by_hand = x + dt * F.conv2d(x, LAPLACIAN.double()[None, None], padding=1)         # x + Δt·Lx
    return ResidualODEResult(config, image.numpy(), exact, outputs, errors,
                             float((one_step - by_hand).abs().max()), time.perf_counter() - start)


def convergence_order(errors: dict, steps: dict) -> float:
    """The slope of log(error) against log(Δt) over the stable depths (Δt < STABILITY_LIMIT): about 1
    for Euler, 2 for Heun."""
    stable = [n for n in errors if steps[n] < STABILITY_LIMIT]
    if len(stable) < 2:
        raise ValueError("the convergence order needs at least two depths with Δt below 1/4")
    slope, _ = np.polyfit([math.log(steps[n]) for n in stable], [math.log(errors[n]) for n in stable], 1)
    return float(slope)
