"""The one training step: features -> detach -> heads -> task losses -> StepContext -> method -> optimiser.

    state = step.forward(batch, step=k, epoch=e)    # Z = model.features(batch); leaves = detached Z;
                                                    # named = model.heads(leaves, batch); T task losses;
                                                    # the StepContext (the only place one is built)
    metrics = hook.on_gradients(state.ctx)          # hooks that read per-task gradients (diagnostics),
                                                    # before the method, so they are computed once
    report = step.backward(state)                   # method.backward(ctx), under the per-step RNG
    result = step.update(state, report)             # all finite? (clip) optimizer.step(); sub-steps;
                                                    # after_step
    result = step(batch, k, e, hooks)               # all of the above

The trainer, every benchmark (`python -m training bench methods|diagnostics`) and the method contract
tests run this object, so a test failure means training is broken and a benchmark times what trains.
A non-finite loss or gradient never reaches the optimiser: the step is skipped and the result names the
offending losses/parameters. Nothing here depends on which method or model family runs; what a method
needs from the step it says in its `StepReport` (values): `shared_max_norm` (clip the shared gradient
once it is final, e.g. Nash-MTL at the feature level) and `substeps` (an alternation: fresh forwards
of the same batch between optimiser sub-steps, MTL-IO). The forward records the random generators'
state (`RNGState`): the re-evaluation `ctx.reevaluate()` (FAMO) and the sub-step forwards replay it,
so a detector draws the same anchor/ROI samples, and leave the training stream as it was.
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


@dataclass(frozen=True)
class RNGState:
    """torch's CPU generator and the step device's CUDA generator as they were before a forward pass.

    The detector's samplers (anchors, ROIs) draw from these generators, so replaying them makes a
    second forward of the same batch draw the same samples.
    """

    cpu: Tensor
    cuda: Tensor | None
    device: torch.device

    @classmethod
    def capture(cls, device: torch.device) -> RNGState:
        cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        return cls(torch.get_rng_state(), cuda, device)

    @contextlib.contextmanager
    def replay(self) -> Iterator[None]:
        """Inside: the generators as captured. Afterwards: as they were on entry (the training stream
        continues as if the block had not run)."""
        with torch.random.fork_rng(devices=_rng_devices(self.device)):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda, self.device)
            yield


@dataclass
class StepState:
    """One step between its forward pass and its optimiser update (`rng`: the generators before it)."""

    batch: Any
    step: int
    epoch: int
    ctx: StepContext
    result: StepResult
    rng: RNGState | None = None


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
        rng = RNGState.capture(self.device)
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
            # same batch and the same random draws (anchor / ROI samples) as this forward, no graph:
            # at unchanged parameters it returns exactly these losses, so a method that looks again
            # (FAMO) measures the parameter change, not sampling noise; the training stream is untouched
            with torch.no_grad(), rng.replay():
                again = self.task_spec.stack(self.losses(batch)[2])
            return D.mean_over_ranks(again) if self.dist.enabled else again

        ctx = self.context_cls(
            losses=task_losses, features=Z, feature_leaves=leaves, shared_params=self.shared,
            task_params=self.task_params, step=step, epoch=epoch, reevaluate=reevaluate,
            batched_vjp=self.batched_vjp, task_names=self.task_spec.names,
        )  # fmt: skip
        return StepState(batch, step, epoch, ctx, result, rng)

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
        """Average over ranks, refuse non-finite gradients, clip, step the optimiser (then the method's
        further sub-steps, if it asked for them), post-step update."""
        result = state.result
        extras = {k: float(v) for k, v in report.extras.items()}
        skipped = self._optimizer_step(report, extras)
        if skipped:
            return self.skip(result, f"{skipped}; losses: {result.named_losses}")
        for j in range(1, report.substeps):
            skipped = self._substep(state, j)
            if skipped:
                why = f"sub-step {j} of {report.substeps} ({j} already applied): {skipped}"
                return self.skip(result, f"{why}; losses: {result.named_losses}")
        if self.method.needs_post_step:
            self.method.after_step(state.ctx)
        if report.weights is not None:
            result.weights = [float(w) for w in report.weights.detach().float()]
        result.extras = extras
        return result

    def _optimizer_step(self, report: StepReport, extras: dict[str, float]) -> str:
        """Average over ranks, refuse non-finite gradients, the method's shared clip (which scales
        `report.weights` by its factor), the run's clip, `optimizer.step()`. Returns why the step was
        refused, or ""."""
        if self.dist.enabled:
            D.average_gradients(self.all_params)
        bad = [n for n, p in self._named_params() if p.grad is not None and not torch.isfinite(p.grad).all()]
        if D.any_rank(bool(bad), self.device):
            return f"non-finite gradients in {bad[:5]}"
        if report.shared_max_norm > 0:
            # the shared gradient is final only now (after the backbone backward and the rank average)
            norm = float(torch.nn.utils.clip_grad_norm_(self.shared, report.shared_max_norm))
            extras["shared_grad_norm"] = norm
            factor = min(1.0, report.shared_max_norm / (norm + 1e-6))  # clip_grad_norm_'s coefficient
            if report.weights is not None:
                report.weights = report.weights * factor  # the effective weights of the shared update
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.all_params, self.grad_clip)
        self.optimizer.step()
        return ""

    def _substep(self, state: StepState, index: int) -> str:
        """Sub-step `index` of an alternating method: a fresh forward of the step's batch at the current
        parameters with the step's random draws replayed, the method's sub-step backward, an optimiser
        step. Returns why it was refused, or ""."""
        assert state.rng is not None, "StepState.rng: the forward records it"
        with state.rng.replay():
            sub = self.forward(state.batch, state.step, state.epoch)
        bad = sorted(k for k, v in sub.result.named_losses.items() if not math.isfinite(v))
        if bad:
            return f"non-finite losses {bad}"
        try:
            report = self.method.backward_substep(sub.ctx, index)
        except NonFiniteError as exc:
            sub.ctx.release()
            return str(exc)
        return self._optimizer_step(report, {})

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
