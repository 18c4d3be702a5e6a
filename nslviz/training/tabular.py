"""Tables of numbers: the one training loop for the MN regression/classification MLPs and the vanilla
MLP, used by the scikit-learn estimators and by MN Table 2's cross-validation
(`nslviz.experiments.regression_table`).

`fit_tabular(model, x_train, y_train, x_val, y_val, ...)`: Adam(W) on mini-batches (lr 1e-3, batch
128 as in Appendix B), the validation loss after every epoch, early stopping when it has not improved
for `patience` epochs (10), and the best weights restored. Seeded: the same seed gives the same
numbers on CPU, whatever the caller's global random state (the batch order and any randomness inside
the model, such as entry dropout, are drawn from streams of the seed).
"""
from __future__ import annotations

import contextlib
import math
import threading
import time
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .._checks import check_choice, check_dtype, check_finite, check_fraction, check_positive, check_seed
from .._modes import eval_mode
from ..regression import MLP, MetaNeighborhoodsMLP, values_in_target_range
from ..similarity import NeighborAttention
from .data import derived_seed
from .optim import parameter_groups, step_or_diverge

TABULAR_LOSSES = ("mse", "cross_entropy")
MODEL_STREAM = 1                # derived_seed(seed, MODEL_STREAM): the model's random draws while training


# ----------------------------------------------------------------------------------------------
# the training loop
# ----------------------------------------------------------------------------------------------

_GLOBAL_GENERATOR = threading.RLock()     # torch has one global CPU generator per process


@contextlib.contextmanager
def seeded(seed: int):
    """Run a block (model initialisation) under torch.manual_seed(seed) without touching the
    caller's global random state. Blocks in different threads take turns: two threads seeding the
    one global generator at once would draw each other's numbers and restore each other's state."""
    with _GLOBAL_GENERATOR, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def model_draws(model: nn.Module, seed: int, device: torch.device):
    """The model's random draws while it trains, from a stream of `seed`, not from the caller's global
    random state. Entry dropout (every NeighborAttention) draws from a generator of its own, so fits
    running at once in threads (the estimators' members) neither share a stream nor wait for each
    other; a model with another random layer (nn.Dropout) draws from the global generator under
    `seeded`, one such fit at a time."""
    attentions = [m for m in model.modules() if isinstance(m, NeighborAttention)]
    generator = torch.Generator(device=device).manual_seed(seed)
    global_draws = any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules())
    for attention in attentions:
        attention.generator = generator
    try:
        with seeded(seed) if global_draws else contextlib.nullcontext():
            yield
    finally:
        for attention in attentions:
            attention.generator = None


@dataclass
class TabularFitResult:
    """What `fit_tabular` did: the epoch whose weights were kept, its validation loss, the number of
    epochs run and the per-epoch history ({"epoch", "train_loss", "validation_loss"})."""
    best_epoch: int
    best_validation_loss: float
    epochs: int
    steps: int
    stopped_early: bool = False              # patience ran out (at the last epoch too); False: max_epochs did
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def tabular_loss(outputs: torch.Tensor, targets: torch.Tensor, loss: str, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean squared error over samples and targets, or cross-entropy with class indices (against
    (1 - ε) one-hot + ε/C with ε = `label_smoothing`)."""
    if loss == "mse":
        if outputs.shape != targets.shape:       # F.mse_loss would broadcast (B, 1) against (B,) to (B, B)
            raise ValueError(f"expected targets of shape {tuple(outputs.shape)} to match the model's outputs "
                             f"(samples, {outputs.shape[-1]}), got {tuple(targets.shape)}"
                             + ("; reshape them with y.reshape(-1, 1)" if targets.dim() == 1 else ""))
        return F.mse_loss(outputs, targets)
    return F.cross_entropy(outputs, targets, label_smoothing=label_smoothing)


def check_tabular_data(x_name: str, x, y_name: str, y, loss: str) -> None:
    """x: a finite float (N, d) tensor; y: finite float targets (N, C) for "mse", int64 class
    indices (N,) for "cross_entropy"; the same N."""
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or not x.is_floating_point():
        raise ValueError(f"expected {x_name} as a float torch.Tensor of shape (N, features), got "
                         f"{_describe(x)}")
    expected = "a float tensor (N, targets)" if loss == "mse" else "an int64 tensor (N,) of class indices"
    if not isinstance(y, torch.Tensor) or (loss == "mse" and not y.is_floating_point()) or \
            (loss == "cross_entropy" and (y.dtype != torch.int64 or y.dim() != 1)):
        raise ValueError(f"expected {y_name} as {expected} for loss {loss!r}, got {_describe(y)}")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"expected as many {y_name} as {x_name} rows, got {x.shape[0]} inputs and {y.shape[0]} targets")
    check_finite(x_name, x)
    if loss == "mse":
        check_finite(y_name, y)


def _check_fits_model(model: nn.Module, x: torch.Tensor, name: str) -> None:
    """The input width the model declares (MLP, MetaNeighborhoodsMLP: `input_dim`) and its dtype."""
    width = getattr(model, "input_dim", None)
    if width is not None and x.shape[1] != width:
        raise ValueError(f"the model takes {width} features but {name} has {x.shape[1]} (shape {tuple(x.shape)})")
    parameter = next(model.parameters(), None)
    if parameter is not None:
        check_dtype(name, x, parameter.dtype)


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} of shape {tuple(value.shape)}"
    return type(value).__name__ + (f" of shape {value.shape}" if hasattr(value, "shape") else "")


PREDICT_BATCH = 2048     # rows per chunk of predict_tabular


@torch.no_grad()
def predict_tabular(model: nn.Module, inputs: torch.Tensor, batch_size: int = PREDICT_BATCH) -> torch.Tensor:
    """model(inputs) in evaluation mode, in chunks (the MN attention is (chunk, S))."""
    with eval_mode(model):
        chunks = [model(inputs[start:start + batch_size]) for start in range(0, max(inputs.shape[0], 1), batch_size)]
    return torch.cat(chunks)


def _adamw(groups: list[dict], lr: float) -> torch.optim.Optimizer:
    """AdamW, fused (one kernel for all parameters: about 3x less optimiser overhead per step on these
    small models) where this torch build supports it, else the plain implementation."""
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(groups, lr=lr)


def fit_tabular(model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor,
                x_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None, *,
                loss: str = "mse", lr: float = 1e-3, batch_size: int = 128, weight_decay: float = 0.0,
                max_epochs: int = 1000, patience: int = 10, tol: float = 0.0, seed: int = 0,
                label_smoothing: float = 0.0, progress: bool = False, desc: str = "fit",
                position: int | None = None) -> TabularFitResult:
    """Train `model` in place; return what happened.

    x (N, d) float; y (N, C) float for loss="mse", (N,) class indices for "cross_entropy"; both on
    the model's device. Optimiser: AdamW with decoupled `weight_decay` on the network weights only
    (the MN dictionary, step sizes and temperature, `model.no_weight_decay_parameters()`, are not
    decayed; a model without that method has every parameter decayed).
    Every epoch visits the training rows once in a seeded random order in batches of `batch_size`
    (the last one may be smaller). With validation data: stop when the validation loss has not
    improved by more than `tol` for `patience` epochs (MN App. B: tol 0, patience 10; tol > 0 as in
    scikit-learn's MLPs ends training on separable classes, whose loss creeps down forever) and
    restore the weights of the epoch with the lowest validation loss; without (or with 0 validation rows): run
    `max_epochs`.
    Epoch 0 (the weights as given) is a candidate too.
    label_smoothing ε (cross-entropy only) smooths the training targets, (1 - ε) one-hot + ε/C; the
    validation loss that early stopping watches is the plain cross-entropy.
    An epoch whose training or validation loss is NaN or infinite raises FloatingPointError (the
    weights are lost by then; the divergence is named rather than an untrained model returned).
    """
    check_choice("loss", loss, TABULAR_LOSSES)
    check_positive("lr", lr)
    check_positive("batch_size", batch_size, integer=True, minimum=1)
    check_positive("weight_decay", weight_decay, minimum=0)
    check_positive("max_epochs", max_epochs, integer=True, minimum=1)
    check_positive("patience", patience, integer=True, minimum=1)
    check_positive("tol", tol, minimum=0)
    check_seed(seed)
    check_fraction("label_smoothing", label_smoothing)
    if label_smoothing and loss != "cross_entropy":
        raise ValueError(f"label_smoothing applies to loss='cross_entropy', got label_smoothing={label_smoothing!r} "
                         f"with loss={loss!r}")
    check_tabular_data("x_train", x_train, "y_train", y_train, loss)
    if x_train.shape[0] == 0:
        raise ValueError("x_train has no rows; expected at least one training example")
    if (x_val is None) != (y_val is None):
        raise ValueError("give both x_val and y_val, or neither")
    if x_val is not None:
        check_tabular_data("x_val", x_val, "y_val", y_val, loss)
    _check_fits_model(model, x_train, "x_train")
    validate = x_val is not None and x_val.shape[0] > 0
    if hasattr(model, "check_memory"):      # an MN model, input or feature space: before the first batch asks for it
        model.check_memory(max(min(batch_size, x_train.shape[0]), min(PREDICT_BATCH, x_val.shape[0]) if validate else 0))
    start = time.perf_counter()
    optimizer = _adamw(parameter_groups(model, weight_decay, decay_everything=not hasattr(
        model, "no_weight_decay_parameters")), lr)
    generator = torch.Generator().manual_seed(seed)
    n = x_train.shape[0]
    best_loss, best_epoch, best_state, history, steps = math.inf, 0, None, [], 0
    last_improvement, reference_loss = 0, math.inf          # for patience: improvements by more than tol
    stopped_early = False
    if validate:        # epoch 0: the weights as given (a warm start is kept if training does not help)
        best_loss = float(tabular_loss(predict_tabular(model, x_val), y_val, loss))
        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        reference_loss = best_loss
        history.append({"epoch": 0, "validation_loss": best_loss})
    model.train()
    bar = tqdm(total=max_epochs, desc=desc, disable=not progress, leave=False,
               position=position)                            # fits side by side: a line each
    with bar, model_draws(model, derived_seed(seed, MODEL_STREAM), x_train.device):   # a stream of the seed
        # for the model's own draws (entry dropout), not the caller's global state nor the batch order's
        for epoch in range(1, max_epochs + 1):
            order = torch.randperm(n, generator=generator).to(x_train.device)
            total = torch.zeros((), device=x_train.device)
            for begin in range(0, n, batch_size):
                batch = order[begin:begin + batch_size]
                batch_loss = tabular_loss(model(x_train[batch]), y_train[batch], loss, label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                batch_loss.backward()
                step_or_diverge(optimizer, f"in epoch {epoch}")
                total += batch_loss.detach() * batch.shape[0]
                steps += 1
            row = {"epoch": epoch, "train_loss": float(total) / n}
            if validate:
                row["validation_loss"] = float(tabular_loss(predict_tabular(model, x_val), y_val, loss))
            if not all(math.isfinite(value) for value in row.values()):
                raise FloatingPointError(f"training diverged: the loss is not finite in epoch {epoch} "
                                         f"({', '.join(f'{k} {v:g}' for k, v in row.items() if k != 'epoch')}); "
                                         f"lower the learning rate ({lr:g})")
            if validate:
                if row["validation_loss"] < best_loss:
                    best_loss, best_epoch = row["validation_loss"], epoch
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                if row["validation_loss"] < reference_loss - tol:
                    reference_loss, last_improvement = row["validation_loss"], epoch
            history.append(row)
            bar.set_postfix({k: f"{v:.4f}" for k, v in row.items() if k != "epoch"}, refresh=False)
            bar.update(1)
            if validate and epoch - last_improvement >= patience:
                stopped_early = True
                bar.total = epoch           # a bar short of max_epochs would read as a failure (red in a notebook)
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_epoch, best_loss = len(history), math.nan
    epochs = history[-1]["epoch"] if history else 0
    return TabularFitResult(best_epoch=best_epoch, best_validation_loss=best_loss, epochs=epochs,
                            steps=steps, stopped_early=stopped_early, history=history,
                            seconds=time.perf_counter() - start)


# ----------------------------------------------------------------------------------------------
# the models of MN Table 2, built reproducibly
# ----------------------------------------------------------------------------------------------

def default_entries(table_rows: int, training_rows: int) -> int:
    """S when none is given: the paper's 1000 (Appendix B) for tables of at least 1000 rows, which
    covers every Table 2 set; on smaller tables one entry per training row (more entries than rows
    only cost time: on diabetes S = 1000 and S = 300 reach the same validation loss)."""
    return 1000 if table_rows >= 1000 else max(1, training_rows)


def build_mlp(input_dim: int, output_dim: int, layers: int, width: int, seed: int = 0) -> MLP:
    """The vanilla MLP, initialised under `seed`."""
    with seeded(seed):
        return MLP(input_dim, output_dim, layers, width)


def build_meta_neighborhoods_mlp(input_dim: int, output_dim: int, layers: int, width: int, *,
                                 targets: torch.Tensor | None = None, entries: int = 1000,
                                 temperature: float = 0.1, seed: int = 0, loss: str = "mse",
                                 **options) -> MetaNeighborhoodsMLP:
    """MN around the same MLP, initialised under `seed`: keys N(0, 0.01²), values U(min y, max y) of
    the (standardised) training `targets` for regression (MN Appendix B). `options` go to
    MetaNeighborhoodsMLP (similarity, step_size_init, key_init_std, entry_dropout, ...)."""
    with seeded(seed):
        model = MetaNeighborhoodsMLP(input_dim, output_dim, layers, width, entries, temperature=temperature,
                                     loss=loss, **options)
        if loss == "mse" and targets is not None:
            with torch.no_grad():
                model.dictionary.regression_values.copy_(values_in_target_range(entries, targets))
    return model
