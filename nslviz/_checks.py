"""Input validation shared by every layer, dataset and command: errors say what was expected.

The checks of tensors import torch when called, so that `import nslviz` (which reads notebook
parameters with the checks of plain values) loads no torch."""
from __future__ import annotations

import math
import numbers
import os
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    import torch



def check_choice(name: str, value, choices: Iterable) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(map(repr, choices))}")


def is_integer(value) -> bool:
    """A Python or NumPy integer (np.int64 from np.arange, a grid search), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value) -> bool:
    """A Python or NumPy real number (np.float32 is not a float), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_positive(name: str, value, *, integer: bool = False, minimum: float | None = None) -> None:
    """`value` > 0 (or >= `minimum`), finite, and an integer when asked."""
    if integer and not is_integer(value):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, (bool, str, bytes)):      # float("0.1") would pass text on to fail inside torch
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if minimum is None:
        if number <= 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")
    elif number < minimum:
        raise ValueError(f"{name} must be >= {minimum:g}, got {value!r}")


def square(name: str, value):
    """n from n or (n, n): nn.Conv2d stores its kernel size, stride and padding as pairs ((3, 3))."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or value[0] != value[1]:
            raise ValueError(f"{name} must be one number or a pair of equal ones (a square), got {tuple(value)!r}")
        return value[0]
    return value


def check_flags(**flags) -> None:
    """Each keyword is a switch that must be True or False (a string like "no" would count as True)."""
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False, got {value!r}")


MAX_SEED = 2**31 - 1     # every generator a seed reaches takes it: torch, numpy, scikit-learn (< 2**32, seed + fold)


def offset_seed(seed: int, offset: int) -> int:
    """The seed `offset` after `seed`, wrapped into [0, MAX_SEED]: seed + offset below the top of the
    range, so a derived seed never turns the largest seeds a command accepts into errors."""
    return (seed + offset) % (MAX_SEED + 1)


def seed_error(name: str, seed) -> str | None:
    """Why `seed` is not a seed (None when it is one): the message every command and class gives."""
    if not is_integer(seed) or not 0 <= seed <= MAX_SEED:
        return f"{name} must be an integer from 0 to {MAX_SEED}, got {seed!r}"
    return None


def check_seed(seed, name: str = "seed") -> None:
    """A random seed: an integer in [0, MAX_SEED] (what torch's, numpy's and scikit-learn's generators
    all take; a larger one overflowed in torch with a message that named no option)."""
    error = seed_error(name, seed)
    if error:
        raise ValueError(error)


def cpu_count() -> int:
    """The CPUs of this machine (1 when unknown)."""
    return os.cpu_count() or 1


def check_threads(name: str, threads) -> None:
    """A number of CPU threads: an integer from 1 to the machine's CPU count (more only oversubscribe
    the cores, and 100,000 made OpenMP crash)."""
    if not is_integer(threads) or not 1 <= threads <= cpu_count():
        raise ValueError(f"{name} must be an integer from 1 to {cpu_count()} (the CPUs of this machine), "
                         f"got {threads!r}")


def check_fraction(name: str, value, *, allow_one: bool = False) -> None:
    """0 <= value < 1 (or <= 1)."""
    upper_ok = is_number(value) and (value <= 1 if allow_one else value < 1)
    if not (upper_ok and 0 <= value):
        bound = "<= 1" if allow_one else "< 1"
        raise ValueError(f"{name} must be a number with 0 <= {name} {bound}, got {value!r}")


def check_tensor(name: str, value, shape: str) -> None:
    """A torch.Tensor (a NumPy array or a list fails inside torch with an AttributeError otherwise)."""
    import torch
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor {shape}, got {type(value).__name__}; convert with "
                         f"torch.as_tensor")


def check_features(name: str, tensor: torch.Tensor, width: int, *, allow_empty: bool = True,
                   dtype: torch.dtype | None = None) -> None:
    """A (batch, width) tensor, as every head expects; `allow_empty=False`: at least one row;
    `dtype`: the layer's parameter dtype, which floating-point inputs must match outside autocast
    (float64 from torch.from_numpy into a float32 layer is the usual case)."""
    check_tensor(name, tensor, f"(batch, {width})")
    if tensor.dim() != 2 or tensor.shape[1] != width:
        raise ValueError(f"expected {name} of shape (batch, {width}), got {tuple(tensor.shape)}")
    if dtype is not None:
        check_dtype(name, tensor, dtype)
    if not allow_empty and tensor.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (0, {width}); expected at least one example")


def check_maps(layer: str, x, channels: int, dtype: torch.dtype, *, kernel_size: int = 1, padding: int = 0) -> None:
    """What a convolutional layer takes: a tensor (batch, channels, H, W) in its parameters' dtype
    (autocast aside), each side at least `kernel_size` once padded."""
    check_tensor(f"{layer} input", x, f"(batch, {channels}, height, width)")
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f"{layer} expects input (batch, {channels}, height, width), got {tuple(x.shape)}")
    check_dtype(f"{layer} inputs", x, dtype)
    if min(x.shape[2:]) + 2 * padding < kernel_size:
        raise ValueError(f"{layer} with a {kernel_size}x{kernel_size} kernel and padding {padding} needs maps of at "
                         f"least {kernel_size - 2 * padding}x{kernel_size - 2 * padding}, got "
                         f"{x.shape[2]}x{x.shape[3]}; give larger inputs or more padding")


def check_dtype(name: str, tensor: torch.Tensor, dtype: torch.dtype) -> None:
    """Floating point, and `dtype` (the layer's parameters') unless autocast chooses the precision."""
    import torch
    if not tensor.is_floating_point():
        hint = ("; uint8 images: nslviz.datasets.augment.to_float(images) scales them to [0, 1]"
                if tensor.dtype == torch.uint8 else "")
        raise ValueError(f"{name} must be floating point ({dtype}), got {tensor.dtype}{hint}")
    from ._precision import autocast_enabled
    if tensor.dtype != dtype and not autocast_enabled(tensor.device.type):
        raise ValueError(f"{name} are {tensor.dtype} but the layer's parameters are {dtype}; convert the input "
                         f"with .to({dtype}) (or the layer with .to({tensor.dtype}))")


def check_finite(name: str, tensor: torch.Tensor) -> None:
    """Raise on NaN or inf (a host sync: use at data entry points, not inside hot loops)."""
    import torch
    if not torch.isfinite(tensor).all():
        bad = (~torch.isfinite(tensor)).sum().item()
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s); expected finite numbers")
