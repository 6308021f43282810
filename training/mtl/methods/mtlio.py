"""MTL-IO: multi-task learning as alternating independent optimisations (the paper's alternation by
default; the stale-gradient variant as `mode="stale"`).

Paper: Lucas Pascal, Pietro Michiardi, Xavier Bost, Benoit Huet, Maria A. Zuluaga, "Improved
Optimization Strategies for Deep Multi-Task Networks", arXiv 2021, https://arxiv.org/abs/2109.11678

What the paper specifies (abstract; the method section was not reachable from this project): the
averaged objective is replaced by ALTERNATING independent gradient steps on each task's objective,
combined with state-of-the-art optimisers, and random task grouping trades the extra computation
against the benefit. "Alternating steps" at a cost in computational time means each task's step is
taken at the parameters the previous task's step produced, i.e. a fresh forward/backward per
sub-step (T/k forwards per batch).

``mode="alternate"`` (default, the paper's alternation): every step, the tasks are put in a random
order (``shuffle``) and cut into groups of ``group_size``; each group takes one optimiser sub-step on
the gradient of its summed loss w.r.t. EVERY parameter (shared and heads; a head the group's loss does
not reach gets a zero gradient), computed by its own forward pass at the parameters the previous
sub-step produced. The method's `backward` takes sub-step 0 on the step's forward and reports
`substeps = number of groups`; the step then runs, for each further group, a fresh forward of the same
batch (the step's random draws replayed, so a detector samples the same anchors/ROIs),
`backward_substep` and an optimiser step (`training.engine.step.TrainStep.update`). The optimiser is
`AlternatingOptimizer`, the run's rule (sgd with momentum, adam, signsgd) with
- ``moments="task"`` (default): one moment slot per task on every parameter, so with ``group_size=1``
  the run is T independent optimisers, optimiser i stepped on L_i in task i's sub-step (weight decay
  is part of each task's objective, so every sub-step decays every parameter);
- ``moments="shared"``: one slot advanced by every sub-step (a plain optimiser taking T/k steps).
``group_size > 1`` with ``moments="task"`` is refused in this mode: a group's sub-step has one
gradient (its summed loss) and no per-task gradients to feed per-task slots.
Cost: T/k forwards and T/k backwards (heads + backbone) per step. Hooks (diagnostics) and the logged
losses see the step's first forward, i.e. the parameters at the start of the step.
Tested against a hand-written alternation (T torch optimisers, a forward/backward per task) for SGD
with momentum and Adam, and shown to differ from EW (tests/test_mtl_io_alternation.py).

``mode="stale"``: all sub-steps use the gradients of the step's single forward pass (per-task
gradients via the StepContext, one sub-step per group on the shared parameters with
`PerTaskOptimizer`; heads take one standard step on Σ_i ∇L_i). Then the sub-steps of
``moments="task"`` commute, so
- with SGD (any momentum) the trajectory IS EW's (equal to round-off over many steps);
- with Adam it IS AdaTask's (`adatask`);
- only signsgd (Σ_i sign(m_i) ≠ sign(Σ_i m_i)) and ``moments="shared"`` with momentum/Adam differ
  from EW/AdaTask (tested in tests/test_mtl_weighting_optim.py,
  `test_mtl_io_stale_variant_is_ew_or_adatask`). Do not report a stale "MTL-IO + SGD/Adam" row as a
  distinct result; `python -m training methods mtl_io` says so too.
Hyperparameters: mode = "alternate", group_size = 1, moments = "task", shuffle = True (False: tasks in
index order every step, for reproducible orders).
Statefulness: the moments live in the optimiser returned by `configure_optimizer` (checkpointed by
the trainer); the order is drawn from torch's global RNG (`torch.randperm`), seeded per step by the
trainer for stochastic methods.
Levels: none (per-parameter optimiser state). Scale: each sub-step is one full step of its group's
optimiser: with SGD about T × the EW step on the mean loss, the sum for EW's `G.sum(0)`.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from training.mtl.base import Level, OptimizerSpec, StepReport
from training.mtl.context import StepContext
from training.mtl.methods.adatask import TaskGradientOptimizerMethod
from training.mtl.optimizers import AlternatingOptimizer, PerTaskOptimizer
from training.mtl.registry import register

MODES = ("alternate", "stale")


@register
class MTLIO(TaskGradientOptimizerMethod):
    name = "mtl_io"
    paper = (
        "Pascal, Michiardi, Bost, Huet, Zuluaga, Improved Optimization Strategies for Deep Multi-Task "
        "Networks, arXiv 2021, https://arxiv.org/abs/2109.11678"
    )
    stochastic = True
    cost = "T, + T − 1 forwards (mode='alternate')"
    #: shown by `python -m training methods`: what this implementation amounts to
    note: ClassVar[str] = (
        "mode='alternate' (default) is the paper's alternation: one optimiser sub-step per task (group), "
        "each on a fresh forward at the parameters the previous sub-step produced (T forwards per step). "
        "mode='stale' is the Stale-gradient variant (one forward per step): with optimizer sgd (any "
        "momentum) it IS EW, with adam it IS adatask (moments='task'); only signsgd, or "
        "moments='shared' with momentum or adam, differ. Do not report a stale MTL-IO + SGD/Adam row "
        "as a distinct result."
    )

    def __init__(
        self,
        num_tasks: int,
        level: Level | str = Level.PARAMETER,
        group_size: int = 1,
        moments: str = "task",
        mode: str = "alternate",
        shuffle: bool = True,
    ) -> None:
        super().__init__(num_tasks, level)
        if not isinstance(group_size, int) or group_size < 1:
            raise ValueError(f"mtl_io: group_size must be a positive int, got {group_size!r}")
        if moments not in ("task", "shared"):
            raise ValueError(f"mtl_io: moments must be 'task' or 'shared', got {moments!r}")
        if mode not in MODES:
            raise ValueError(f"mtl_io: mode must be one of {MODES}, got {mode!r}")
        if mode == "alternate" and moments == "task" and group_size > 1 and num_tasks > 1:
            raise ValueError(
                f"mtl_io: mode='alternate' with group_size={group_size} needs moments='shared': a group's "
                "sub-step has one gradient (its summed loss), none per task to feed per-task moments"
            )
        if not isinstance(shuffle, bool):
            raise ValueError(f"mtl_io: shuffle must be a bool, got {shuffle!r}")
        self.group_size, self.moments, self.mode, self.shuffle = group_size, moments, mode, shuffle
        self._plan: list[list[int]] = []

    def groups(self) -> list[list[int]]:
        order = torch.randperm(self.num_tasks).tolist() if self.shuffle else list(range(self.num_tasks))
        k = self.group_size
        return [order[i : i + k] for i in range(0, self.num_tasks, k)]

    def _make_optimizer(
        self, shared: list[torch.nn.Parameter], task: list[torch.nn.Parameter], spec: OptimizerSpec
    ) -> PerTaskOptimizer:
        if self.mode == "alternate":
            return AlternatingOptimizer(shared + task, spec, self.num_tasks, moments=self.moments)
        return PerTaskOptimizer(shared, task, spec, self.num_tasks, moments=self.moments)

    def backward(self, ctx: StepContext) -> StepReport:
        if self.mode == "stale":
            return super().backward(ctx)
        self._plan = self.groups()  # drawn under the step's per-step RNG
        report = self.backward_substep(ctx, 0)
        report.substeps = len(self._plan)
        return report

    def backward_substep(self, ctx: StepContext, index: int) -> StepReport:
        """`.grad` of every parameter = ∇ of group `index`'s summed loss on this forward (zeros where it
        does not reach); the optimiser's next step uses the group's moment slot."""
        opt = self._optimizer
        if not isinstance(opt, AlternatingOptimizer):
            raise RuntimeError(
                "mtl_io: configure_optimizer(...) must be called before backward; the method replaces "
                "the optimiser"
            )
        if not 0 <= index < len(self._plan):
            raise RuntimeError(f"mtl_io: sub-step {index} requested, this step has {len(self._plan)}")
        group = self._plan[index]
        ctx.check_losses_finite()
        ctx.backward_loss(sum((ctx.task_loss(i) for i in group[1:]), ctx.task_loss(group[0])))
        for p in [*ctx.shared_params, *ctx.task_params]:
            if p.requires_grad and p.grad is None:
                p.grad = torch.zeros_like(p)  # this group's loss does not reach p: its gradient is 0
        ctx.release()
        opt.use_slot(group[0] if self.moments == "task" else 0)
        return StepReport(weights=None, extras={"substeps": float(len(self._plan))})

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, mode={self.mode!r}, group_size={self.group_size}, "
            f"moments={self.moments!r}, shuffle={self.shuffle}"
        )
