"""Data parallelism (torchrun / torch.multiprocessing) with identical updates on every rank.

The trainer calls `model.features` and `model.heads` separately (the MTL split), which the
`DistributedDataParallel` wrapper cannot see (it hooks `forward`), so the same semantics are made
explicit here, in three places:

1. Loss values: every rank replaces its task losses' *values* by the mean over ranks while keeping its
   local graph (`global_losses`), so loss-weighting methods compute identical weights and keep
   identical state on every rank, equal to a single process on the global batch.
2. Per-task gradients (`DistributedStepContext`): the parameter-level matrix G [T, P] is averaged over
   ranks before the method combines it; the feature-level matrix G_Z is the ranks' feature gradients
   gathered into the column layout a single process would have for the global batch (level after
   level, each level's samples rank after rank), scaled as the global-batch mean loss, so every rank
   combines the same matrix as one process would and back-propagates its own columns of the
   direction. `feature_values()` gathers Z the same way (GradDrop's sign(Z)). `local_feature_grads()`
   are this rank's columns, with which the diagnostics measure FD and the inter-sample similarities on
   the local part of Z and pool the sums over ranks (`sum_over_ranks`; docs/diagnostics.md).
3. Final gradients: every trainable gradient is averaged over ranks after `method.backward` (what DDP
   does), in one flat all-reduce.
With per-image mean losses this reproduces a single process on the global batch (tests/test_ddp.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from training.mtl.context import StepContext


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (world_size 1 = no distribution)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(device_type: str) -> DistInfo:
    """Join the torchrun job described by the environment (WORLD_SIZE > 1), else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def current() -> DistInfo:
    """The DistInfo of an already initialised process group (or a single process)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo()


def mean_over_ranks(x: Tensor) -> Tensor:
    """All-reduce mean of a tensor (a new tensor; no-op without a process group)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y / dist.get_world_size()


def sum_over_ranks(x: Tensor) -> Tensor:
    """All-reduce sum of a tensor (a new tensor; no-op without a process group)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when `flag` is true on any rank (so every rank takes the same branch)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def global_losses(losses: list[Tensor]) -> list[Tensor]:
    """Per task: value = the mean over ranks, gradient = the local graph (module docstring, point 1)."""
    mean = mean_over_ranks(torch.stack([v.detach() for v in losses]))  # one all-reduce for all tasks
    # (v − v.detach()) is exactly 0, so every rank's value is exactly the mean (v + (mean − v) is not)
    return [(v - v.detach()) + mean[i] for i, v in enumerate(losses)]


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Average `.grad` over ranks in one flat all-reduce; params without a grad get zeros first."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1 or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    for p, g in zip(params, grads):
        p.grad = g
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


class DistributedStepContext(StepContext):
    """StepContext whose per-task gradients are those of the global batch (module docstring, point 2)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._gathered: Tensor | None = None
        self._local_features = False
        self._param_reduced = False

    def _rank_columns(self) -> list[tuple[int, int]]:
        """(start, size) of this rank's columns in the global layout, one pair per feature level."""
        world, rank = dist.get_world_size(), dist.get_rank()
        out, offset = [], 0
        for z in self.feature_leaves:
            n = z.numel()
            out.append((offset + rank * n, n))
            offset += world * n
        return out

    def feature_grads(self) -> Tensor:
        local = super().feature_grads()  # [T, m_local], cached by the base class
        if self._local_features:
            return local
        if self._gathered is None:
            world = dist.get_world_size()
            parts = [torch.empty_like(local) for _ in range(world)]
            dist.all_gather(parts, local.contiguous())
            blocks, offset = [], 0
            for z in self.feature_leaves:  # level-major: level l = [rank 0's samples, rank 1's, ...]
                n = z.numel()
                blocks += [part[:, offset : offset + n] for part in parts]
                offset += n
            # the global loss is the mean over ranks of the local (per-image mean) losses
            self._gathered = torch.cat(blocks, dim=1) / world  # [T, world * m_local]
        return self._gathered

    def local_feature_grads(self) -> Tensor:
        G = self.feature_grads()
        return torch.cat([G[:, start : start + n] for start, n in self._rank_columns()], dim=1)

    def feature_values(self) -> list[Tensor]:
        out = []
        for z in self.feature_leaves:
            parts = [torch.empty_like(z) for _ in range(dist.get_world_size())]
            dist.all_gather(parts, z.detach().contiguous())
            out.append(torch.cat(parts, dim=0))  # [world * B, ...]
        return out

    def param_grads(self) -> Tensor:
        if not self._param_reduced:
            self._local_features = True  # the base VJP needs this rank's own feature gradients
            try:
                local = super().param_grads()
            finally:
                self._local_features = False
            self._param_grads = mean_over_ranks(local)
            self._param_reduced = True
        assert self._param_grads is not None
        return self._param_grads

    def backward_feature_direction(self, d_z: Tensor, head_weights: Tensor | None = None) -> None:
        world = dist.get_world_size()
        local = torch.cat([d_z[start : start + n] for start, n in self._rank_columns()])
        # times world: the final gradient all-reduce averages, but the global backward is a sum over ranks
        super().backward_feature_direction(local * world, head_weights=head_weights)

    def release(self) -> None:
        super().release()
        self._gathered = None
        self._param_reduced = False
