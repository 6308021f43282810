"""Plain optimisers selectable for any MTL method, and the per-task optimiser of AdaTask / MTL-IO.

`build_optimizer(spec, param_groups)` returns, for `OptimizerSpec.name`:
- ``sgd``: `torch.optim.SGD` with `spec.momentum` (heavy ball, no dampening, no Nesterov);
- ``adam``: `torch.optim.Adam` with `spec.betas`, `spec.eps` (L2 weight decay as torch's Adam);
- ``signsgd``: `SignSGD` below (Signum of Bernstein et al., ICML 2018, with momentum β = `spec.momentum`).

`PerTaskOptimizer` applies the *same* update rules as torch's SGD/Adam (bit-for-bit for one task) and
SignSGD, but keeps one moment buffer per task (slot) for the shared parameters, fed with per-task
gradients that the method hands over with `set_task_grads` before `step()`. Task-specific (head)
parameters use one slot fed with their `.grad`. AdaTask = Adam rule, one group holding every task;
MTL-IO `mode='stale'` = any rule, one sub-step per (random) group of tasks. `AlternatingOptimizer`
(MTL-IO's alternation) has the slots on every parameter and applies `.grad` with the slot the
method selects before each sub-step's `step()`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from training.mtl.base import OptimizerSpec

OPTIMIZERS = ("sgd", "adam", "signsgd")


def check_spec(spec: OptimizerSpec) -> None:
    """Raise a ValueError naming the field when an `OptimizerSpec` value is out of range."""
    if spec.name not in OPTIMIZERS:
        raise ValueError(f"optimizer.name: expected one of {list(OPTIMIZERS)}, got {spec.name!r}")
    if not spec.lr > 0:
        raise ValueError(f"optimizer.lr: expected a positive learning rate, got {spec.lr!r}")
    if not 0.0 <= spec.momentum < 1.0:
        raise ValueError(f"optimizer.momentum: expected 0 <= momentum < 1, got {spec.momentum!r}")
    if len(spec.betas) != 2 or not all(0.0 <= b < 1.0 for b in spec.betas):
        raise ValueError(f"optimizer.betas: expected two values in [0, 1), got {spec.betas!r}")
    if not spec.eps >= 0:
        raise ValueError(f"optimizer.eps: expected eps >= 0, got {spec.eps!r}")
    if not spec.weight_decay >= 0:
        raise ValueError(f"optimizer.weight_decay: expected >= 0, got {spec.weight_decay!r}")


class SignSGD(torch.optim.Optimizer):
    """Signum: `m ← β m + (1−β)(g + wd·θ)`; `θ ← θ − lr·sign(m)` with sign(0) = 0.

    With `momentum=0` this is plain signSGD, `θ ← θ − lr·sign(g)`. The step size does not depend on the
    gradient scale, so lr must be small (about 1e-4). Momentum buffers start at zero, so the first
    step already has the sign of the first gradient.
    """

    def __init__(
        self, params: Iterable[Any], lr: float = 1e-4, momentum: float = 0.9, weight_decay: float = 0.0
    ) -> None:
        if not lr > 0:
            raise ValueError(f"SignSGD: lr must be > 0, got {lr!r}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"SignSGD: momentum must be in [0, 1), got {momentum!r}")
        if not weight_decay >= 0:
            raise ValueError(f"SignSGD: weight_decay must be >= 0, got {weight_decay!r}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # noqa: D102 - torch.optim protocol
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                wd = group["weight_decay"]
                d = p.grad if wd == 0 else p.grad.add(p, alpha=wd)
                _signum_update(p, d, state["momentum_buffer"], group)
        return loss


def _signum_update(p: Tensor, d: Tensor, buf: Tensor, group: dict[str, Any]) -> None:
    """m ← βm + (1−β)d; θ ← θ − lr·sign(m) (d already includes any weight decay)."""
    buf.mul_(group["momentum"]).add_(d, alpha=1.0 - group["momentum"])
    p.add_(torch.sign(buf), alpha=-group["lr"])


def build_optimizer(spec: OptimizerSpec, param_groups: Iterable[Any]) -> torch.optim.Optimizer:
    """The standard optimiser for `spec` over `param_groups` (a list of params or of group dicts)."""
    check_spec(spec)
    groups = list(param_groups)
    if not groups:
        raise ValueError("build_optimizer: param_groups is empty; expected at least one parameter")
    if spec.name == "sgd":
        return torch.optim.SGD(groups, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
    if spec.name == "adam":
        betas = (spec.betas[0], spec.betas[1])
        return torch.optim.Adam(groups, lr=spec.lr, betas=betas, eps=spec.eps, weight_decay=spec.weight_decay)
    return SignSGD(groups, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)


class PerTaskOptimizer(torch.optim.Optimizer):
    """One update rule (sgd | adam | signsgd of `spec`) with per-task moment slots on shared parameters.

    Protocol: the method calls `set_task_grads(grads, groups)` in its backward, where `grads[k]` is
    `[T, *p.shape]` for the k-th shared parameter and `groups` a list of task-index lists; `step()` then,
    for each group in order, updates every shared parameter once in place with the group's tasks:
    - ``moments="task"``: each task i of the group advances its own slot i with its gradient g_i and
      its update is applied (AdaTask's rule; with one group of all tasks, the sum of T independent
      optimisers' updates);
    - ``moments="shared"``: one slot advanced with Σ_{i∈group} g_i (a plain optimiser that takes one
      sub-step per group).
    Weight decay is added to each slot's gradient (as T independent optimisers would do). Head
    parameters take one standard step on their `.grad` (slot 0). The task gradients are consumed by
    `step()`: a second `step()` without a new `set_task_grads` is an error, never a stale update.
    """

    def __init__(
        self,
        shared_params: Sequence[torch.nn.Parameter],
        task_params: Sequence[torch.nn.Parameter],
        spec: OptimizerSpec,
        num_tasks: int,
        moments: str = "task",
    ) -> None:
        check_spec(spec)
        if moments not in ("task", "shared"):
            raise ValueError(f"PerTaskOptimizer: moments must be 'task' or 'shared', got {moments!r}")
        defaults = dict(
            lr=spec.lr, momentum=spec.momentum, betas=(spec.betas[0], spec.betas[1]), eps=spec.eps,
            weight_decay=spec.weight_decay,
        )
        groups = [{"params": list(shared_params), "per_task": True}]
        heads = [p for p in task_params if p.requires_grad]
        if heads:
            groups.append({"params": heads, "per_task": False})
        super().__init__(groups, defaults)
        self.rule = spec.name
        self.num_tasks = num_tasks
        self.moments = moments
        self._task_grads: list[Tensor] | None = None
        self._groups: list[list[int]] | None = None

    def set_task_grads(self, grads: Sequence[Tensor], groups: Sequence[Sequence[int]]) -> None:
        """Hand over per-task gradients `[T, *p.shape]` of the shared parameters and the sub-step groups."""
        shared = self.param_groups[0]["params"]
        if len(grads) != len(shared):
            raise ValueError(f"set_task_grads: expected {len(shared)} gradient tensors, got {len(grads)}")
        for k, (g, p) in enumerate(zip(grads, shared)):
            if tuple(g.shape) != (self.num_tasks, *p.shape):
                raise ValueError(
                    f"set_task_grads: grads[{k}] must have shape {(self.num_tasks, *p.shape)}, got "
                    f"{tuple(g.shape)}"
                )
        flat = sorted(i for grp in groups for i in grp)
        if flat != list(range(self.num_tasks)):
            raise ValueError(
                f"set_task_grads: groups must partition tasks 0..{self.num_tasks - 1}, got {groups}"
            )
        self._task_grads = [g.detach() for g in grads]
        self._groups = [list(grp) for grp in groups]

    def _slots(self) -> int:
        return self.num_tasks if self.moments == "task" else 1

    def _state(self, p: Tensor, slots: int) -> dict[str, Tensor]:
        state = self.state[p]
        if not state:
            state["step"] = torch.zeros(slots, dtype=torch.float64)
            shape = (slots, *p.shape)
            if self.rule == "adam":
                state["exp_avg"] = torch.zeros(shape, dtype=p.dtype, device=p.device)
                state["exp_avg_sq"] = torch.zeros(shape, dtype=p.dtype, device=p.device)
            elif self.rule == "signsgd" or (self.rule == "sgd" and self.param_groups[0]["momentum"] > 0):
                state["momentum_buffer"] = torch.zeros(shape, dtype=p.dtype, device=p.device)
        return state

    def _update(
        self,
        p: Tensor,
        grad: Tensor,
        state: dict[str, Tensor],
        s: int,
        group: dict[str, Any],
        decay_at: Tensor | None = None,
    ) -> None:
        """Advance slot `s` with `grad` and apply its update to `p` in place (torch's formulas).

        decay_at: the parameter value weight decay is evaluated at (default: `p` itself).
        """
        wd = group["weight_decay"]
        d = grad if wd == 0 else grad.add(p if decay_at is None else decay_at, alpha=wd)
        state["step"][s] += 1
        if self.rule == "sgd":
            mu = group["momentum"]
            if mu > 0:
                buf = state["momentum_buffer"][s]
                # torch.optim.SGD: the first step copies the gradient into the buffer.
                if state["step"][s] == 1:
                    buf.copy_(d)
                else:
                    buf.mul_(mu).add_(d)
                d = buf
            p.add_(d, alpha=-group["lr"])
        elif self.rule == "adam":
            beta1, beta2 = group["betas"]
            m, v = state["exp_avg"][s], state["exp_avg_sq"][s]
            m.lerp_(d, 1 - beta1)
            v.mul_(beta2).addcmul_(d, d, value=1 - beta2)
            t = float(state["step"][s])
            bc1 = 1 - beta1**t
            bc2_sqrt = (1 - beta2**t) ** 0.5
            denom = (v.sqrt() / bc2_sqrt).add_(group["eps"])
            p.addcdiv_(m, denom, value=-group["lr"] / bc1)
        else:
            _signum_update(p, d, state["momentum_buffer"][s], group)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # noqa: D102 - torch.optim protocol
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        shared_group = self.param_groups[0]
        if self._task_grads is None or self._groups is None:
            raise RuntimeError(
                "PerTaskOptimizer.step: no per-task gradients; the method's backward(ctx) must run "
                "before every step"
            )
        grads, groups = self._task_grads, self._groups
        self._task_grads = self._groups = None
        for grp in groups:
            for p, g in zip(shared_group["params"], grads):
                state = self._state(p, self._slots())
                if self.moments == "task":
                    # The tasks of one group update from the same θ (as independent optimisers
                    # would), so weight decay is evaluated at the group's starting point.
                    start = p.detach().clone() if shared_group["weight_decay"] else None
                    for i in grp:
                        self._update(p, g[i], state, i, shared_group, decay_at=start)
                else:
                    self._update(p, g[grp].sum(0), state, 0, shared_group)
        for group in self.param_groups[1:]:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, p.grad, self._state(p, 1), 0, group)
        return loss


class AlternatingOptimizer(PerTaskOptimizer):
    """MTL-IO's alternation: one update rule with moment slots on EVERY parameter, applied to `.grad`.

    Protocol: before each `step()` the method calls `use_slot(s)`; the step then applies the rule of
    `spec` to the `.grad` of every parameter with slot s (``moments="task"``: s = the sub-step's task,
    so slot i of every parameter is task i's own optimiser; ``moments="shared"``: always slot 0).
    Parameters without a `.grad` are left alone (the method zero-fills the ones its loss does not
    reach). A `step()` without a new `use_slot` is an error, never a step with a stale slot.
    """

    def __init__(
        self, params: Sequence[torch.nn.Parameter], spec: OptimizerSpec, num_tasks: int, moments: str = "task"
    ) -> None:
        super().__init__(params, [], spec, num_tasks, moments=moments)
        self._slot: int | None = None

    def use_slot(self, slot: int) -> None:
        """The moment slot of the next `step()` (a task index; 0 with ``moments="shared"``)."""
        if not 0 <= slot < self._slots():
            n = self._slots()
            raise ValueError(f"AlternatingOptimizer.use_slot: expected 0 <= slot < {n}, got {slot!r}")
        self._slot = slot

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # noqa: D102 - torch.optim protocol
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self._slot is None:
            raise RuntimeError(
                "AlternatingOptimizer.step: no slot; the method's backward / backward_substep must run "
                "before every step"
            )
        slot, self._slot = self._slot, None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, p.grad, self._state(p, self._slots()), slot, group)
        return loss
