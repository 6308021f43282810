"""What the engine needs from a model family: a batch, a model split into features and heads, and an
evaluator (the family that builds them from a config: `training.engine.assembly.ModelFamily`).

A model family plugs into the one training step (`training.engine.step.TrainStep`) and the one run
assembly (`training.engine.assembly`) by implementing these protocols; nothing in the engine names a
family, a dataset or a metric. The bin-picking family (`training.families.amodal`) is the reference:

    batch  = RGBDBatch(rgb [B,3,H,W], depth [B,1,H,W], targets)       (training.data.batch)
    Z      = model.features(batch)                                    shared representation
    losses = model.heads(Z, batch)                                    {loss name: scalar}
    TaskSpec(loss names -> tasks) -> the T task losses of the MTL method

Z is a tensor or a sequence of tensors; the step detaches it into leaves of the same structure and
calls `heads` on those, so per-task gradients w.r.t. Z cost a backward through the heads only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar, Union, runtime_checkable

import torch
from torch import Tensor, nn

#: the shared representation Z: one tensor or a sequence of tensors (e.g. FPN levels)
Features = Union[Tensor, Sequence[Tensor]]

B = TypeVar("B", bound="Batch")


@runtime_checkable
class Batch(Protocol):
    """A training batch: whatever `features`/`heads` of its family read; it only has to move."""

    def to(self: B, device: torch.device) -> B:
        """The same batch with every tensor on `device` (non-blocking from pinned memory on CUDA)."""
        ...


@runtime_checkable
class MTLModel(Protocol):
    """A network split at its shared representation, as the training step drives it.

    `module` is the `nn.Module` that holds every parameter: checkpoints save its state_dict, the
    trainer switches it between train() and eval(), evaluators run it. A family whose network already
    has `features(batch)`/`heads(Z, batch)` returns itself; otherwise a thin adapter wraps it.
    `shared_parameters()` (everything that produces Z) and `task_parameters()` (everything after Z) are
    disjoint and together cover every trainable parameter of `module`.
    """

    @property
    def module(self) -> nn.Module: ...

    def features(self, batch: Any) -> Features:
        """Z for `batch` (graph to the shared parameters)."""
        ...

    def heads(self, Z: Features, batch: Any) -> Mapping[str, Tensor]:
        """Training mode: {loss name: scalar loss} computed from Z (of `features`' structure)."""
        ...

    def shared_parameters(self) -> list[nn.Parameter]: ...

    def task_parameters(self) -> list[nn.Parameter]: ...


@runtime_checkable
class Evaluator(Protocol):
    """`evaluator(module) -> {metric key: value}` on a fixed split; `keys` are the columns of eval.csv.

    It must leave the module in the mode it found it and must not change the global RNG (fork it), so
    an evaluation in the middle of training does not change the run.
    """

    @property
    def keys(self) -> tuple[str, ...]: ...

    def __call__(self, module: nn.Module) -> dict[str, float]: ...
