"""NSL sec. 5.1: the implicit regularisation of the factorisation W = MᵀW′ under gradient descent.

An under-determined least-squares problem has infinitely many exact solutions; which one gradient
descent finds depends on how W is parameterised. Two gradient flows on the same data:

    standard   L(W)      = ½ Σ_i ‖y_i − Wᵀx_i‖²        Ẇ = Σ_i x_i r_iᵀ,  r_i = y_i − Wᵀx_i
    NSL        L(W′, M)  = ½ Σ_i ‖y_i − W′ᵀM x_i‖²     (the weight is W = MᵀW′), so that
               Ẇ = MᵀM Σ_i x_i r_iᵀ + Σ_i x_i r_iᵀ W′ᵀW′                                 (NSL eq. 6)

and Euler steps with a small learning rate approximate both flows. Two observation models:

    "full"       every sample observes all m outputs y_i = W*ᵀx_i (the paper's setting), with
                 fewer samples than inputs. Every exact solution is W_F + N with N orthogonal to
                 the samples, and ‖W_F + N‖_* >= ‖W_F‖_*: the minimum-Frobenius solution W_F = X⁺Y
                 is also the minimum-nuclear-norm one. A flow can only differ by how much of its
                 starting point's null-space part N it keeps: the standard flow keeps all of it.
    "projected"  every sample observes one random projection of the outputs, y_i = z_iᵀW*ᵀx_i
                 (matrix sensing with rank-one measurements x_i z_iᵀ, fewer than n·m). Here the
                 minimum-nuclear-norm and minimum-Frobenius solutions differ; Gunasekar et al.
                 (NSL ref. [16]) conjecture and observe that the factorised flow from a small start
                 approaches the minimum nuclear norm one, which for enough samples is the low-rank W*.

Initialisation `init`: "same_scale" draws W₀, M₀ and W′₀ with the same scale (the standard flow
starts at a scale-s matrix, the factorised one at a product of two); "matched" starts the standard
flow at W₀ = M₀ᵀW′₀, the factorised flow's own starting matrix (same function at t = 0);
"identity" uses NSL's M₀ = I with W′₀ = W₀ (the two flows start at the same W).

`run_implicit_regularization(config)` records both trajectories, the nuclear norm and the singular
values over training; `python -m nslviz implicit-reg` and notebook 08 call it.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from .._checks import check_choice, check_positive, check_seed

OBSERVATIONS = ("full", "projected")
INITS = ("same_scale", "matched", "identity")
FLOW_LABELS = {"standard": "standard", "factorized": "factorised (NSL)"}


@dataclass(frozen=True)
class ImplicitRegularizationConfig:
    observation: str = "full"         # "full" (paper sec. 5.1) or "projected" (matrix sensing)
    inputs: int = 12                  # n, the dimension of x_i (rows of W)
    outputs: int = 12                 # m, the number of outputs (columns of W)
    samples: int | None = None        # N; None: n/2 for "full", 3·rank·(n + m) for "projected"
    rank: int = 1                     # rank of the ground truth W*
    init: str = "same_scale"
    init_scale: float = 0.05          # s: entries of the random starting matrices ~ N(0, s²/n)
    lr: float = 0.1                   # Euler step, in units of 1/λ_max of the standard flow's Hessian
    steps: int = 20000
    snapshots: int = 200              # recorded moments: step 0, then geometrically spaced steps
    seed: int = 0
    progress: bool = False

    def __post_init__(self):
        check_choice("observation", self.observation, OBSERVATIONS)
        check_choice("init", self.init, INITS)
        for name in ("inputs", "outputs", "rank", "steps"):
            check_positive(name, getattr(self, name), integer=True, minimum=1)
        check_positive("snapshots", self.snapshots, integer=True, minimum=2)     # the start and the end at least
        if self.rank > min(self.inputs, self.outputs):
            raise ValueError(f"rank must be <= min(inputs, outputs) = {min(self.inputs, self.outputs)}, "
                             f"got {self.rank}")
        check_positive("init_scale", self.init_scale)
        check_seed(self.seed)
        check_positive("lr", self.lr)
        if self.lr >= 1:
            raise ValueError(f"lr is in units of 1/λ_max and must be < 1 for a stable flow approximation, "
                             f"got {self.lr}")
        if self.samples is not None:
            check_positive("samples", self.samples, integer=True, minimum=1)
        # one rule for a given N and the default one: 1 <= N < inputs (full) or inputs·outputs (projected)
        limit = self.inputs if self.observation == "full" else self.inputs * self.outputs
        what = "inputs" if self.observation == "full" else "inputs·outputs"
        if limit < 2:
            raise ValueError(f"{what} = {limit} leaves no under-determined {self.observation!r} problem (it needs "
                             f"1 <= samples < {what}); use {what} >= 2")
        if self.sample_count >= limit:
            raise ValueError(f"samples must be < {limit} ({what}) for an under-determined {self.observation!r} "
                             f"problem, got {self.sample_count}")

    @property
    def sample_count(self) -> int:
        if self.samples is not None:
            return self.samples
        if self.observation == "full":
            return max(1, self.inputs // 2)
        return min(3 * self.rank * (self.inputs + self.outputs), self.inputs * self.outputs - 1)


@dataclass
class FlowRecord:
    """One flow at every snapshot."""
    weights: np.ndarray               # (S, n, m) the end-to-end W (MᵀW′ for the factorised flow)
    loss: np.ndarray                  # (S,) ½ Σ squared residuals
    nuclear_norm: np.ndarray          # (S,) ‖W‖_* = Σ singular values
    singular_values: np.ndarray       # (S, min(n, m)) in decreasing order

    @property
    def final(self) -> np.ndarray:
        return self.weights[-1]


@dataclass
class ImplicitRegularizationResult:
    config: ImplicitRegularizationConfig
    steps: np.ndarray                 # (S,) iteration of each snapshot
    flow_time: np.ndarray             # (S,) gradient-flow time t = steps · step size (lr / λ_max)
    standard: FlowRecord
    factorized: FlowRecord
    truth: np.ndarray                 # (n, m) W*, rank `rank`, spectral norm 1
    min_frobenius: np.ndarray         # (n, m) the exact solution of least Frobenius norm
    inputs_x: np.ndarray              # (N, n) the samples x_i
    operator: np.ndarray | None       # (N, n·m) rows vec(x_i z_iᵀ) for "projected"; None for "full"
    projection: dict = field(default_factory=dict)   # 2-D coordinates, see project_trajectories
    seconds: float = 0.0

    def summary(self) -> dict:
        def nuclear(w):
            return float(np.linalg.svd(w, compute_uv=False).sum())

        def stable_rank(w):                                          # ‖W‖²_F / ‖W‖²₂, a smooth rank
            s = np.linalg.svd(w, compute_uv=False)
            return float(np.square(s).sum() / s[0] ** 2)

        c = self.config
        return {"observation": c.observation, "init": c.init, "init_scale": c.init_scale, "inputs": c.inputs,
                "outputs": c.outputs, "samples": c.sample_count, "rank": c.rank, "steps": c.steps, "seed": c.seed,
                "standard_loss": float(self.standard.loss[-1]), "factorized_loss": float(self.factorized.loss[-1]),
                "standard_nuclear_norm": float(self.standard.nuclear_norm[-1]),
                "factorized_nuclear_norm": float(self.factorized.nuclear_norm[-1]),
                "min_frobenius_nuclear_norm": nuclear(self.min_frobenius), "truth_nuclear_norm": nuclear(self.truth),
                "standard_stable_rank": stable_rank(self.standard.final),
                "factorized_stable_rank": stable_rank(self.factorized.final),
                "standard_error_to_truth": float(np.linalg.norm(self.standard.final - self.truth)),
                "factorized_error_to_truth": float(np.linalg.norm(self.factorized.final - self.truth)),
                "seconds": round(self.seconds, 3)}


def make_problem(config: ImplicitRegularizationConfig, rng: np.random.Generator):
    """Measurement operator A (N, n·m) with y = A vec(W*), and W* (n, m) of rank `rank`, ‖W*‖₂ = 1."""
    n, m, N = config.inputs, config.outputs, config.sample_count
    truth = rng.normal(size=(n, config.rank)) @ rng.normal(size=(config.rank, m))
    truth /= np.linalg.norm(truth, 2)
    x = rng.normal(size=(N, n))
    if config.observation == "full":
        operator = None                                            # y_i = W*ᵀ x_i, all outputs
        targets = x @ truth                                        # (N, m)
    else:
        z = rng.normal(size=(N, m))
        operator = np.einsum("in,im->inm", x, z).reshape(N, n * m)  # rows vec(x_i z_iᵀ)
        targets = operator @ truth.ravel()                          # (N,)
    return x, operator, targets, truth


def factorized_velocity(similarity: np.ndarray, factor: np.ndarray, descent: np.ndarray):
    """(Ẇ′, Ṁ) = (−∇_{W′}L, −∇_M L) for W = MᵀW′, given descent = −∇_W L at W: Ẇ′ = M·descent,
    Ṁ = W′·descentᵀ; so that d(MᵀW′)/dt = MᵀM·descent + descent·W′ᵀW′ (NSL eq. 6)."""
    return similarity @ descent, factor @ descent.T


def run_implicit_regularization(config: ImplicitRegularizationConfig | None = None, **overrides
                                ) -> ImplicitRegularizationResult:
    """Gradient descent on W and on (W′, M) with W = MᵀW′, same data and learning rate; records both
    trajectories at `snapshots` moments. `overrides` replace fields of `config`."""
    config = dataclasses.replace(config or ImplicitRegularizationConfig(), **overrides)
    start = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    n, m = config.inputs, config.outputs
    x, operator, targets, truth = make_problem(config, rng)

    if operator is None:                                          # full: L = ½‖Y − XW‖², ∇ = −Xᵀ(Y − XW)
        def residual(w):
            return targets - x @ w                                 # (N, m)

        def descent(r):
            return x.T @ r                                         # (n, m) −∇_W L
        curvature = np.linalg.norm(x, 2) ** 2
        min_frobenius = np.linalg.pinv(x) @ targets
    else:                                                          # projected: L = ½‖y − A vec W‖²
        def residual(w):
            return targets - operator @ w.ravel()                  # (N,)

        def descent(r):
            return (operator.T @ r).reshape(n, m)
        curvature = np.linalg.norm(operator, 2) ** 2
        min_frobenius = (np.linalg.pinv(operator) @ targets).reshape(n, m)
    lr = config.lr / curvature

    s = config.init_scale
    if config.init == "identity":
        similarity = np.eye(n)                                     # M₀ = I (NSL's static init)
        factor = s * rng.normal(size=(n, m)) / np.sqrt(n)          # W′₀
        standard = factor.copy()                                   # W₀ = W′₀: the same start
    else:
        similarity = s * rng.normal(size=(n, n)) / np.sqrt(n)
        factor = s * rng.normal(size=(n, m)) / np.sqrt(n)
        standard = (similarity.T @ factor if config.init == "matched"
                    else s * rng.normal(size=(n, m)) / np.sqrt(n))

    # snapshots at step 0 and geometrically spaced after it: the flows move fast early, slowly late
    snapshot_at = np.unique(np.concatenate([[0], np.geomspace(1, config.steps, config.snapshots - 1), [config.steps]])
                            .round().astype(int))
    records = {"standard": [], "factorized": []}
    losses = {"standard": [], "factorized": []}

    def record(name, w, step):
        with np.errstate(over="ignore", invalid="ignore"):
            loss = 0.5 * float(np.square(residual(w)).sum())
        if not (np.isfinite(w).all() and math.isfinite(loss)):
            raise FloatingPointError(
                f"the {FLOW_LABELS[name]} flow diverged by step {step} (init_scale={config.init_scale}, "
                f"lr={config.lr}): its weights overflowed; lower init_scale or lr")
        records[name].append(w.copy())
        losses[name].append(loss)

    next_snapshot = 0
    with tqdm(total=config.steps, desc="gradient flows", disable=not config.progress, leave=False) as bar:
        for step in range(config.steps + 1):
            if step == snapshot_at[next_snapshot]:
                record("standard", standard, step)
                record("factorized", similarity.T @ factor, step)
                next_snapshot += 1
                if step == config.steps:
                    break
            with np.errstate(over="ignore", invalid="ignore"):    # a diverging flow is named at its next snapshot
                standard = standard + lr * descent(residual(standard))    # Ẇ = −∇L(W)
                factor_velocity, similarity_velocity = factorized_velocity(similarity, factor,
                                                                           descent(residual(similarity.T @ factor)))
                factor, similarity = factor + lr * factor_velocity, similarity + lr * similarity_velocity
            bar.update(1)                                         # full once every step is taken

    flows = {}
    for name in ("standard", "factorized"):
        weights = np.stack(records[name])
        singular = np.linalg.svd(weights, compute_uv=False)        # (S, min(n, m))
        flows[name] = FlowRecord(weights=weights, loss=np.array(losses[name]),
                                 nuclear_norm=singular.sum(axis=1), singular_values=singular)
    result = ImplicitRegularizationResult(config=config, steps=snapshot_at, flow_time=snapshot_at * lr,
                                          standard=flows["standard"], factorized=flows["factorized"],
                                          truth=truth, min_frobenius=min_frobenius, inputs_x=x, operator=operator)
    result.projection = project_trajectories(result)
    result.seconds = time.perf_counter() - start
    return result


def project_trajectories(result: ImplicitRegularizationResult) -> dict:
    """2-D coordinates that show the implicit bias. Split every W into the part the data determine
    and the part they cannot see (the null space of the measurements):
        seen      = ⟨W, Ŵ_F⟩, the coordinate along the minimum-Frobenius solution W_F (‖W_F‖ for
                    every exact solution; the flows move right as they fit the data)
        unseen    = ‖W − P(W)‖_F, the size of the null-space part (0 for W_F; the standard flow
                    keeps its start's value exactly, NSL's flow is free to change it)
    Returns {"standard": (S, 2), "factorized": (S, 2), "truth": (2,), "min_frobenius": (2,)}."""
    n, m = result.truth.shape
    if result.operator is None:                                      # full: P = X⁺X on the input space
        projector = np.linalg.pinv(result.inputs_x) @ result.inputs_x   # (n, n)

        def seen_part(w):
            return np.einsum("ij,sjm->sim", projector, w)
    else:                                                             # projected: P = A⁺A on vec(W)
        projector = np.linalg.pinv(result.operator) @ result.operator   # (n·m, n·m)

        def seen_part(w):
            return (w.reshape(len(w), -1) @ projector.T).reshape(w.shape)
    direction = result.min_frobenius / np.linalg.norm(result.min_frobenius)

    def project(weights):
        w = np.asarray(weights).reshape(-1, n, m)
        along = np.einsum("sij,ij->s", w, direction)
        unseen = np.linalg.norm((w - seen_part(w)).reshape(len(w), -1), axis=1)
        return np.stack([along, unseen], axis=1)

    return {"standard": project(result.standard.weights), "factorized": project(result.factorized.weights),
            "truth": project(result.truth)[0], "min_frobenius": project(result.min_frobenius)[0]}


__all__ = ["FlowRecord", "INITS", "ImplicitRegularizationConfig", "ImplicitRegularizationResult", "OBSERVATIONS",
           "factorized_velocity", "make_problem", "project_trajectories", "run_implicit_regularization"]
