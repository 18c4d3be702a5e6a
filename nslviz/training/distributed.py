"""Devices and multi-process data parallelism.

`torchrun --nproc_per_node N -m nslviz train ...` sets RANK / WORLD_SIZE / LOCAL_RANK; the trainer
then joins the process group (NCCL on GPUs, gloo on CPU, which is how the tests run it) and wraps
the model in DistributedDataParallel. Only rank 0 writes files and shows progress. Every evaluation
starts by giving all processes rank 0's buffers (`Context.share_buffers`), so that the validation of an
epoch is that of the model rank 0 checkpoints, and a run resumed at any batch repeats it exactly.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


def check_device_name(device: str | torch.device) -> torch.device | None:
    """The device a name means, without asking whether it is present: None for "auto"; a name other
    than 'auto', 'cpu', 'cuda' or 'cuda:N' is an error naming it."""
    if str(device) == "auto":
        return None
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {str(device)!r}; expected 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"device {str(device)!r} is not supported; expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return parsed


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" picks CUDA when present; an explicit "cuda" without a GPU is an error that says so."""
    parsed = check_device_name(device)
    if parsed is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = parsed
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} was asked for but no CUDA device is available; use 'cpu' or 'auto'")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device {str(device)!r} was asked for but this machine has {torch.cuda.device_count()} "
                         f"CUDA device(s); use 'cuda:0' to 'cuda:{torch.cuda.device_count() - 1}', or 'auto'")
    return device


@dataclass
class Context:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def sum(self, values: list[float]) -> list[float]:
        """Sum numbers over all processes (a no-op in a single process)."""
        if not self.distributed:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def share_buffers(self, module) -> None:
        """Every process takes rank 0's buffers (BatchNorm's running statistics); a no-op in a single process.
        Under DDP each process updates its own from its share of every batch (DDP hands rank 0's to all at
        the start of the next forward), so without this the processes would evaluate slightly different
        models, and not the one rank 0 checkpoints and keeps as best.pt."""
        if self.distributed:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)


def launched_world_size() -> int:
    """The number of processes torchrun started (its WORLD_SIZE); 1 without torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_rank() -> int:
    """This process's rank among those torchrun started (its RANK); 0 without torchrun."""
    return int(os.environ.get("RANK", "0"))


def setup(device: str = "auto") -> Context:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); otherwise one process."""
    world_size = launched_world_size()
    if world_size <= 1:
        return Context(resolve_device(device))
    rank, local_rank = launched_rank(), int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        resolved = torch.device("cuda", local_rank)
        torch.cuda.set_device(resolved)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if resolved.type == "cuda" else "gloo")
    return Context(resolved, rank, world_size, local_rank)


def teardown(context: Context) -> None:
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()
