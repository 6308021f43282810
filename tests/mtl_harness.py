"""The linear MTL test harness shared by the method tests, run through the trainer's step object.

One shared parameter θ ∈ R^d (at 0) and one head scalar per task (at 1): L_i = G_i·Z + c_i·h_i with
Z = θ, so L = c and ∂L_i/∂θ = G_i exactly (the recipe of the MTL reference doc, section 1.1). The
StepContext comes from `TrainStep.forward`, the step the trainer runs; the tests then call the method
under test on it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from training.engine.step import TrainStep
from training.mtl import StepContext, build
from training.tasks import TaskSpec


class LinearBatch(NamedTuple):
    G: Tensor  # [T, d]
    c: Tensor  # [T]

    def to(self, device: torch.device) -> LinearBatch:
        return LinearBatch(self.G.to(device), self.c.to(device))


class LinearModel(nn.Module):
    """L_i = G_i·Z + c_i·h_i with Z = θ (an engine `MTLModel`). Under no_grad (a method's
    `ctx.reevaluate()` after the optimiser step) it returns `after` when given: the losses the
    harness declares for "after the step" (FAMO)."""

    def __init__(self, T: int, d: int, dtype: torch.dtype, after: Tensor | None = None) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(d, dtype=dtype))
        self.head = nn.Parameter(torch.ones(T, dtype=dtype))
        self.after = after

    @property
    def module(self) -> nn.Module:
        return self

    def features(self, batch: LinearBatch) -> Tensor:
        return self.theta * 1.0

    def heads(self, Z: Tensor, batch: LinearBatch) -> dict[str, Tensor]:
        if self.after is not None and not torch.is_grad_enabled():
            return {f"task{i}": v for i, v in enumerate(self.after)}
        losses = batch.G @ Z + batch.c * self.head  # [T]
        return {f"task{i}": losses[i] for i in range(losses.shape[0])}

    def shared_parameters(self) -> list[nn.Parameter]:
        return [self.theta]

    def task_parameters(self) -> list[nn.Parameter]:
        return [self.head]


def linear_ctx(G, c, epoch: int = 0, new_losses=None, dtype=torch.float64):
    """(StepContext, θ, heads) of `TrainStep.forward`; `new_losses` is what `reevaluate` returns."""
    G = torch.as_tensor(G, dtype=dtype)
    c = torch.as_tensor(c, dtype=dtype)
    T = G.shape[0]
    after = torch.as_tensor(new_losses, dtype=dtype) if new_losses is not None else None
    model = LinearModel(T, G.shape[1], dtype, after)
    spec = TaskSpec.one_per_loss([f"task{i}" for i in range(T)])
    # the method under test runs on the returned context; the step only needs one to be built
    placeholder = build("ew", T)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    step = TrainStep(model, spec, placeholder, optimizer, torch.device("cpu"))
    ctx: StepContext = step.forward(LinearBatch(G, c), step=0, epoch=epoch).ctx
    if new_losses is None:
        ctx.reevaluate = None  # as before: methods that need it must say so
    return ctx, model.theta, model.head
