"""The one training step: features -> detach -> heads -> task losses -> StepContext -> method -> optimiser.

    state = step.forward(batch, step=k, epoch=e)    # Z = model.features(batch); leaves = detached Z;
                                                    # named = model.heads(leaves, batch); T task losses;
                                                    # the StepContext (the only place one is built)
    metrics = hook.on_gradients(state.ctx)          # hooks that read per-task gradients (diagnostics),
                                                    # before the method, so they are computed once
    report = step.backward(state)                   # method.backward(ctx), under the per-step RNG
    result = step.update(state, report)             # all finite? (clip) optimizer.step(); after_step
    result = step(batch, k, e, hooks)               # all of the above

The trainer, every benchmark (`python -m training bench methods|diagnostics`) and the method contract
tests run this object, so a test failure means training is broken and a benchmark times what trains.
A non-finite loss or gradient never reaches the optimiser: the step is skipped and the result names the
offending losses/parameters. Nothing here depends on which method or model family runs.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from training.engine import distributed as D
from training.engine.protocols import Batch, Features, MTLModel
from training.mtl import MTLMethod, NonFiniteError, StepContext, StepReport
from training.tasks import TaskSpec


@dataclass
class StepResult:
    """What one step did (logged by the hooks).

    named_losses: the model's named losses (mean over ranks); task_losses: the T task losses;
    weights: the method's effective task weights `[T]` (None when it has none); extras: the method's
    scalar internals; metrics: what hooks measured in `on_gradients` (e.g. diag/*).
    """

    named_losses: dict[str, float]
    task_losses: list[float]
    weights: list[float] | None = None
    extras: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    skipped: bool = False
    reason: str = ""


@dataclass
class StepState:
    """One step between its forward pass and its optimiser update."""

    batch: Any
    step: int
    epoch: int
    ctx: StepContext
    result: StepResult


class GradientHook(Protocol):
    """The step's hook phase (see `training.engine.hooks.Hook.on_gradients`)."""

    def on_gradients(self, ctx: StepContext) -> Mapping[str, float]: ...


def autocast_context(device: torch.device, amp: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA when asked; CPU runs fp32 (CPU autocast is slower than fp32 on most CPUs)."""
    if device.type == "cuda" and amp == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _rng_devices(device: torch.device) -> list[torch.device]:
    return [device] if device.type == "cuda" else []


def _as_list(Z: Features) -> list[Tensor]:
    return [Z] if isinstance(Z, Tensor) else list(Z)


def _float(loss: Tensor) -> Tensor:
    """A loss in float32 or wider (autocast may give half precision; float64 models stay float64)."""
    return loss if loss.dtype in (torch.float32, torch.float64) else loss.float()


class TrainStep:
    """Callable doing one step; holds the pieces that do not change between steps.

    model: the family's `MTLModel`; task_spec: named losses -> the T tasks; optimizer: from
    `training.engine.assembly.build_optimizer`; seed: stochastic methods draw from an RNG seeded by
    (seed, step), identical on every rank and independent of the model's own draws.
    """

    def __init__(
        self,
        model: MTLModel,
        task_spec: TaskSpec,
        method: MTLMethod,
        optimizer: torch.optim.Optimizer,
        device: torch.device,
        amp: str = "none",
        grad_clip: float = 0.0,
        batched_vjp: bool = False,
        seed: int = 0,
    ) -> None:
        self.model, self.task_spec, self.method, self.optimizer = model, task_spec, method, optimizer
        self.device, self.amp, self.grad_clip, self.batched_vjp = device, amp, grad_clip, batched_vjp
        self.seed = seed
        self.shared = list(model.shared_parameters())
        self.task_params = list(model.task_parameters())
        self.dist = D.current()
        self.context_cls = D.DistributedStepContext if self.dist.enabled else StepContext
        # every parameter the optimiser may step: the network's and the method's own (UW's log-variances)
        self.all_params = self.shared + self.task_params + list(method.method_parameters())

    # ---- phases ----------------------------------------------------------------------------------
    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        for p in self.all_params:
            p.grad = None

    def losses(self, batch: Batch) -> tuple[list[Tensor], list[Tensor], dict[str, Tensor]]:
        """(Z, detached leaves of Z, named losses computed from the leaves) for a batch on the device."""
        with autocast_context(self.device, self.amp):
            Z = self.model.features(batch)
            leaves = [z.detach().requires_grad_() for z in _as_list(Z)]
            named = self.model.heads(leaves[0] if isinstance(Z, Tensor) else leaves, batch)
        return _as_list(Z), leaves, {k: _float(v) for k, v in named.items()}

    def forward(self, batch: Batch, step: int, epoch: int) -> StepState:
        """Zero the gradients, run the model and build this step's StepContext."""
        batch = batch.to(self.device)
        self.zero_grad()
        Z, leaves, named = self.losses(batch)
        # one scalar per task, unstacked: per-task gradients then skip the stack's backward
        task_losses = self.task_spec.task_losses(named)
        if self.dist.enabled:
            task_losses = D.global_losses(task_losses)
            named = {k: D.mean_over_ranks(v.detach()) for k, v in named.items()}
        result = StepResult(
            named_losses={k: float(v.detach()) for k, v in named.items()},
            task_losses=[float(v.detach()) for v in task_losses],
        )

        def reevaluate() -> Tensor:
            # same batch, no graph; fork the RNG so a method that looks again does not shift the
            # training RNG stream (detector samplers draw from it)
            with torch.no_grad(), torch.random.fork_rng(devices=_rng_devices(self.device)):
                again = self.task_spec.stack(self.losses(batch)[2])
            return D.mean_over_ranks(again) if self.dist.enabled else again

        ctx = self.context_cls(
            losses=task_losses, features=Z, feature_leaves=leaves, shared_params=self.shared,
            task_params=self.task_params, step=step, epoch=epoch, reevaluate=reevaluate,
            batched_vjp=self.batched_vjp, task_names=self.task_spec.names,
        )  # fmt: skip
        return StepState(batch, step, epoch, ctx, result)

    @contextlib.contextmanager
    def method_rng(self, step: int) -> Iterator[None]:
        """For a stochastic method: torch's RNG seeded by (seed, step) inside, restored afterwards."""
        if not self.method.stochastic:
            yield
            return
        # the method's randomness is a function of (seed, step): identical on every rank and
        # independent of how many numbers the detector's samplers drew on this rank
        with torch.random.fork_rng(devices=_rng_devices(self.device)):
            torch.manual_seed(self.seed * 1_000_003 + step)
            yield

    def backward(self, state: StepState) -> StepReport:
        """`method.backward(ctx)`: writes .grad of every trainable parameter (NonFiniteError: skip)."""
        with self.method_rng(state.step):
            return self.method.backward(state.ctx)

    def update(self, state: StepState, report: StepReport) -> StepResult:
        """Average over ranks, refuse non-finite gradients, clip, step the optimiser, post-step update."""
        result = state.result
        if self.dist.enabled:
            D.average_gradients(self.all_params)
        bad = [n for n, p in self._named_params() if p.grad is not None and not torch.isfinite(p.grad).all()]
        if D.any_rank(bool(bad), self.device):
            return self.skip(result, f"non-finite gradients in {bad[:5]}; losses: {result.named_losses}")
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.all_params, self.grad_clip)
        self.optimizer.step()
        if self.method.needs_post_step:
            self.method.after_step(state.ctx)
        if report.weights is not None:
            result.weights = [float(w) for w in report.weights.detach().float()]
        result.extras = {k: float(v) for k, v in report.extras.items()}
        return result

    def __call__(
        self, batch: Batch, step: int, epoch: int, hooks: Sequence[GradientHook] = ()
    ) -> StepResult:
        state = self.forward(batch, step, epoch)
        result = state.result
        bad = sorted(k for k, v in result.named_losses.items() if not math.isfinite(v))
        if bad:
            detail = ", ".join(f"{k}={result.named_losses[k]}" for k in bad)
            return self.skip(result, f"non-finite losses {bad}: {detail}")
        try:
            for hook in hooks:
                result.metrics.update(hook.on_gradients(state.ctx))
            report = self.backward(state)
        except NonFiniteError as exc:
            state.ctx.release()
            return self.skip(result, f"{exc}; losses: {result.named_losses}")
        return self.update(state, report)

    # ---- helpers ---------------------------------------------------------------------------------
    def skip(self, result: StepResult, reason: str) -> StepResult:
        """Drop every gradient of this step; the optimiser does not step."""
        self.zero_grad()
        result.skipped, result.reason = True, reason
        return result

    def _named_params(self) -> list[tuple[str, torch.nn.Parameter]]:
        names = {id(p): n for n, p in self.model.module.named_parameters()}
        names.update({id(p): f"method.{n}" for n, p in self.method.named_parameters()})
        return [(names.get(id(p), "?"), p) for p in self.all_params]
