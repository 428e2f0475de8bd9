"""Several processes, GPUs or machines through PyTorch's own engine (``torchrun``).

torchrun starts one process per GPU (or CPU share) and tells each who it is
through RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE. ``Ranks.from_env``
reads them (one process, rank 0, without torchrun), ``process_group`` joins the
others (gloo on CPU, NCCL on CUDA), and the rest are the pieces training needs:
a device per rank, a sampler that shares patches without duplicates, BatchNorm
synchronised across ranks, and sums over all ranks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

from ..errors import DeviceError, InputError


@dataclass(frozen=True)
class Ranks:
    """This process's place among the processes of one run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes checkpoints, curves and logs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    @property
    def tag(self) -> str:
        """The prefix of this rank's log lines, e.g. "[rank 1/4]"."""
        return f"[rank {self.rank}/{self.world_size}]"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Ranks:
        """RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE as torchrun sets them; rank 0 of 1 without torchrun."""
        if "RANK" not in env:
            return cls()
        try:
            world = int(env["WORLD_SIZE"])
            ranks = cls(int(env["RANK"]), world, int(env.get("LOCAL_RANK", "0")),
                        int(env.get("LOCAL_WORLD_SIZE", str(world))))
        except (KeyError, ValueError) as exc:
            raise InputError("RANK is set but WORLD_SIZE or LOCAL_RANK is missing or not a number. Start several "
                             "processes with torchrun, or unset RANK for one process.") from exc
        if not 0 <= ranks.rank < ranks.world_size:
            raise InputError(f"RANK {ranks.rank} is outside WORLD_SIZE {ranks.world_size}. Start with torchrun.")
        return ranks

    def __str__(self) -> str:
        return f"rank {self.rank} of {self.world_size}"


def cpu_cores() -> int:
    """The cores this process may run on."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def backend_for(device: torch.device) -> str:
    """NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


def device_for(device: torch.device, ranks: Ranks) -> torch.device:
    """This rank's device: GPU ``LOCAL_RANK`` when ``device`` is plain CUDA, else ``device`` unchanged.

    On the CPU each local process gets an equal share of the cores (torchrun's
    own OMP_NUM_THREADS=1 would leave most of them idle).
    """
    if ranks.distributed and device.type == "cuda":
        count = torch.cuda.device_count()
        if device.index is not None and ranks.local_world_size > 1:
            raise DeviceError(
                f"Device {device} would put all {ranks.local_world_size} processes of this machine on one GPU. "
                "Use device auto or cuda: each process then takes GPU LOCAL_RANK."
            )
        if device.index is None and ranks.local_rank >= count:
            raise DeviceError(
                f"{ranks.local_world_size} processes per machine but only {count} GPU(s) here: start torchrun "
                f"with --nproc-per-node {count} or fewer, or use device cpu."
            )
        if device.index is None:
            device = torch.device("cuda", ranks.local_rank)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    elif device.type == "cpu" and ranks.distributed:
        torch.set_num_threads(max(1, cpu_cores() // ranks.local_world_size))
    return device


@contextmanager
def process_group(device: torch.device, ranks: Ranks, timeout: timedelta | None = None) -> Iterator[None]:
    """Join the other ranks for the duration (nothing to do for one process).

    ``timeout`` bounds how long a collective (a barrier) waits for the slowest
    rank; PyTorch's default is 30 minutes on gloo, 10 on NCCL. A group that
    already exists (a caller set it up) is used and left open.
    """
    if not ranks.distributed:
        yield
        return
    if not dist.is_available():
        raise DeviceError("This PyTorch build has no torch.distributed; run with one process.")
    if dist.is_initialized():
        yield
        return
    kwargs: dict[str, Any] = {"device_id": device} if device.type == "cuda" else {}
    if timeout is not None:
        kwargs["timeout"] = timeout
    dist.init_process_group(backend_for(device), init_method="env://", rank=ranks.rank,
                            world_size=ranks.world_size, **kwargs)
    try:
        yield
    finally:
        dist.destroy_process_group()


def active() -> bool:
    """Whether this process is one of several in an initialised process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def sum_across(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over all ranks (in place; unchanged for one process)."""
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier() -> None:
    """Wait for every rank (nothing for one process)."""
    if active():
        dist.barrier()


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` for one process."""
    if not active():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


class ShardSampler(Sampler[tuple[int, int]]):
    """This rank's share of a dataset, as (index, augmentation seed) pairs.

    The order is a permutation seeded by (seed, epoch) when shuffling, the same
    on every rank and for any number of ranks; rank r takes every world_size-th
    item from position r. So N processes with batch B see, step by step, the
    same patches as one process with batch N x B. ``even`` (training) drops the
    last ``len % world_size`` items of the order so all ranks take the same
    number of steps (a different few each epoch); otherwise (validation) every
    item is taken exactly once and shares differ by at most one.
    """

    def __init__(self, size: int, ranks: Ranks, *, shuffle: bool, even: bool, seed: int = 0) -> None:
        self.size, self.ranks, self.shuffle, self.even, self.seed = size, ranks, shuffle, even, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch``: a new order and new augmentation seeds."""
        self.epoch = epoch

    def order(self) -> list[int]:
        """The dataset order of this epoch, before sharing it out."""
        if not self.shuffle:
            return list(range(self.size))
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.size, generator=generator).tolist()

    def indices(self) -> list[int]:
        """This rank's items of the epoch, in order."""
        order = self.order()
        if self.even:
            order = order[: len(order) - len(order) % self.ranks.world_size]
        return order[self.ranks.rank :: self.ranks.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        base = (self.seed * 1_000_003 + self.epoch) * 1_000_003
        return iter([(i, base + i) for i in self.indices()])

    def __len__(self) -> int:
        if self.even:
            return self.size // self.ranks.world_size
        return len(range(self.ranks.rank, self.size, self.ranks.world_size))


def check_shares(train_patches: int, ranks: Ranks) -> None:
    """Every rank needs a batch of at least 2 training patches (DeepLab's ASPP BatchNorm)."""
    share = train_patches // ranks.world_size
    if share < 2:
        raise InputError(
            f"{train_patches} training patches cannot feed {ranks.world_size} processes: each needs at least 2. "
            f"Use at most {max(1, train_patches // 2)} processes, or make more patches."
        )


class _SumAcrossRanks(torch.autograd.Function):
    """All-reduce (sum) with a gradient: each rank's input gets the sum of all ranks' output gradients."""

    @staticmethod
    def forward(ctx: object, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def differentiable_sum(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over all ranks, differentiably."""
    return _SumAcrossRanks.apply(tensor)


class CrossRankBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose training statistics cover the batches of all ranks, on any device.

    PyTorch's SyncBatchNorm runs only on GPUs; this one uses differentiable
    all-reduces (gloo or NCCL), so N CPU processes with batch B normalise like
    one process with batch N x B. It has BatchNorm2d's parameters and buffers,
    so checkpoints are unchanged; in eval mode, or alone, it is BatchNorm2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and active()):
            return super().forward(x)
        self._check_input_dim(x)
        dims = (0, 2, 3)
        count = torch.tensor([x.shape[0] * x.shape[2] * x.shape[3]], dtype=torch.float64, device=x.device)
        total = differentiable_sum(torch.cat([x.sum(dims, dtype=torch.float64), count]))
        n = total[-1]
        mean = (total[:-1] / n).to(x.dtype)
        centred = x - mean.view(1, -1, 1, 1)
        var = (differentiable_sum(centred.pow(2).sum(dims, dtype=torch.float64)) / n).to(x.dtype)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)  # type: ignore[union-attr, operator]
                factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var.detach() * (n / max(n - 1, 1)).to(x.dtype)
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
        out = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            out = out * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return out


def synchronise_batchnorm(net: nn.Module, device: torch.device) -> nn.Module:
    """Let every BatchNorm layer that trains take its statistics over all ranks.

    On CUDA this is PyTorch's SyncBatchNorm; elsewhere ``CrossRankBatchNorm2d``.
    Frozen layers (no trainable parameter) stay as they are: they run in eval mode
    on their running statistics. Parameters and buffers are moved, not copied,
    so the state dict keeps its keys and values.
    """
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(net)
    for name, child in list(net.named_children()):
        trains = isinstance(child, nn.BatchNorm2d) and any(p.requires_grad for p in child.parameters(recurse=False))
        if trains and type(child) is nn.BatchNorm2d:
            synced = CrossRankBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                          child.track_running_stats, device=child.weight.device,
                                          dtype=child.weight.dtype)
            synced.load_state_dict(child.state_dict())
            synced.weight, synced.bias = child.weight, child.bias  # the very parameters, not copies
            synced.train(child.training)
            setattr(net, name, synced)
        else:
            synchronise_batchnorm(child, device)
    return net
