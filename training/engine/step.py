"""One optimisation step of the MTL split: features -> heads -> task losses -> method -> optimiser.

    Z = model.features(rgb, depth); leaves = [z.detach().requires_grad_() for z in Z]
    losses = task_spec.task_losses(model.heads(leaves, (H, W), targets))   # T scalars
    diagnostics(ctx) (on due steps, BEFORE the method, so per-task gradients are computed once)
    report = method.backward(ctx); all gradients finite? -> optimizer.step(); method.after_step(ctx)

A non-finite loss or gradient never reaches the optimiser: the step is skipped and the result names
the offending losses/parameters. Nothing here depends on which method runs.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from training.engine import distributed as D
from training.mtl import MTLMethod, NonFiniteError, StepContext
from training.tasks import TaskSpec


@dataclass
class StepResult:
    """What one step did (logged by the hooks)."""

    named_losses: dict[str, float]
    task_losses: list[float]
    weights: list[float] | None = None
    extras: dict[str, float] = field(default_factory=dict)
    diagnostics: dict[str, float] = field(default_factory=dict)
    skipped: bool = False
    reason: str = ""


def to_device(batch: Sequence, device: torch.device) -> tuple[Tensor, Tensor, list[dict[str, Tensor]]]:
    rgb, depth, targets = batch
    nb = device.type == "cuda"
    moved = [{k: (v.to(device, non_blocking=nb) if isinstance(v, Tensor) else v) for k, v in t.items()}
             for t in targets]
    return rgb.to(device, non_blocking=nb), depth.to(device, non_blocking=nb), moved


def autocast_context(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when asked; CPU runs fp32 (CPU autocast is slower than fp32 on most CPUs)."""
    if device.type == "cuda" and amp == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _rng_devices(device: torch.device) -> list:
    return [device] if device.type == "cuda" else []


class TrainStep:
    """Callable doing one step; holds the pieces that do not change between steps."""

    def __init__(
        self,
        model: torch.nn.Module,
        task_spec: TaskSpec,
        method: MTLMethod,
        optimizer: torch.optim.Optimizer,
        device: torch.device,
        amp: str = "none",
        grad_clip: float = 0.0,
        batched_vjp: bool = False,
        diagnostics: Callable[[StepContext], dict[str, float]] | None = None,
        diagnostics_due: Callable[[int], bool] | None = None,
        seed: int = 0,
    ) -> None:
        self.model, self.task_spec, self.method, self.optimizer = model, task_spec, method, optimizer
        self.device, self.amp, self.grad_clip, self.batched_vjp = device, amp, grad_clip, batched_vjp
        self.diagnostics, self.diagnostics_due, self.seed = diagnostics, diagnostics_due, seed
        self.shared = list(model.shared_parameters())
        self.task_params = list(model.task_parameters())
        self.dist = D.current()
        self.context_cls = D.DistributedStepContext if self.dist.enabled else StepContext
        # every parameter the optimiser may step: the network's and the method's own (UW's log-variances)
        self.all_params = self.shared + self.task_params + list(method.method_parameters())

    def _named_params(self) -> list[tuple[str, torch.nn.Parameter]]:
        names = {id(p): n for n, p in self.model.named_parameters()}
        names.update({id(p): f"method.{n}" for n, p in self.method.named_parameters()})
        return [(names.get(id(p), "?"), p) for p in self.all_params]

    def _losses(self, rgb: Tensor, depth: Tensor, targets: list) -> tuple[list[Tensor], list[Tensor], dict]:
        with autocast_context(self.device, self.amp):
            Z = self.model.features(rgb, depth)
            leaves = [z.detach().requires_grad_() for z in Z]
            named = self.model.heads(leaves, (rgb.shape[-2], rgb.shape[-1]), targets)
        return list(Z), leaves, named

    def __call__(self, batch: Sequence, step: int, epoch: int) -> StepResult:
        rgb, depth, targets = to_device(batch, self.device)
        self.optimizer.zero_grad(set_to_none=True)
        for p in self.all_params:
            p.grad = None
        Z, leaves, named = self._losses(rgb, depth, targets)
        # one scalar per task, unstacked: per-task gradients then skip the stack's backward
        task_losses = self.task_spec.task_losses({k: v.float() for k, v in named.items()})
        if self.dist.enabled:
            task_losses = D.global_losses(task_losses)
            named = {k: D.mean_over_ranks(v.detach().float()) for k, v in named.items()}
        losses = torch.stack([v.detach() for v in task_losses])  # [T], values for logging
        named_values = {k: float(v.detach()) for k, v in named.items()}
        result = StepResult(named_losses=named_values, task_losses=[float(v) for v in losses.detach()])
        bad = sorted(k for k, v in named_values.items() if not math.isfinite(v))
        if bad:
            detail = ", ".join(f"{k}={named_values[k]}" for k in bad)
            return self._skip(result, f"non-finite losses {bad}: {detail}")

        def reevaluate() -> Tensor:
            # same batch, no graph; fork the RNG so a method that looks again does not shift the
            # training RNG stream (detector samplers draw from it)
            with torch.no_grad(), torch.random.fork_rng(devices=_rng_devices(self.device)):
                _, _, again = self._losses(rgb, depth, targets)
                out = self.task_spec.stack({k: v.float() for k, v in again.items()})
            return D.mean_over_ranks(out) if self.dist.enabled else out

        ctx = self.context_cls(
            losses=task_losses, features=Z, feature_leaves=leaves, shared_params=self.shared,
            task_params=self.task_params, step=step, epoch=epoch, reevaluate=reevaluate,
            batched_vjp=self.batched_vjp, task_names=self.task_spec.names,
        )  # fmt: skip
        try:
            due = self.diagnostics_due is not None and self.diagnostics_due(step)
            if self.diagnostics is not None and due:
                result.diagnostics = self.diagnostics(ctx)
            rng = contextlib.nullcontext()
            if self.method.stochastic:
                # the method's randomness is a function of (seed, step): identical on every rank and
                # independent of how many numbers the detector's samplers drew on this rank
                rng = torch.random.fork_rng(devices=_rng_devices(self.device))
            with rng:
                if self.method.stochastic:
                    torch.manual_seed(self.seed * 1_000_003 + step)
                report = self.method.backward(ctx)
        except NonFiniteError as exc:
            ctx.release()
            return self._skip(result, f"{exc}; losses: {named_values}")
        if self.dist.enabled:
            D.average_gradients(self.all_params)
        bad_params = [
            n for n, p in self._named_params() if p.grad is not None and not torch.isfinite(p.grad).all()
        ]
        if D.any_rank(bool(bad_params), self.device):
            return self._skip(result, f"non-finite gradients in {bad_params[:5]}; losses: {named_values}")
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.all_params, self.grad_clip)
        self.optimizer.step()
        if self.method.needs_post_step:
            self.method.after_step(ctx)
        if report.weights is not None:
            result.weights = [float(w) for w in report.weights.detach().float()]
        result.extras = {k: float(v) for k, v in report.extras.items()}
        return result

    def _skip(self, result: StepResult, reason: str) -> StepResult:
        self.optimizer.zero_grad(set_to_none=True)
        for p in self.all_params:
            p.grad = None
        result.skipped, result.reason = True, reason
        return result
