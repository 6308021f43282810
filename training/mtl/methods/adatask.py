"""AdaTask: task-aware adaptive learning rates (per-task Adam statistics on the shared parameters).

Paper: Enneng Yang, Junwei Pan, Ximei Wang, Haibin Yu, Li Shen, Xihua Chen, Lei Xiao, Jie Jiang,
Guibing Guo, "AdaTask: A Task-Aware Adaptive Learning Rate Approach to Multi-Task Learning",
AAAI 2023, https://arxiv.org/abs/2211.15055

Update (an optimiser, not a weighting): every shared parameter keeps one Adam state (m_i, v_i, step)
per task, fed with that task's own gradient g_i = ∂L_i/∂θ_s; the shared update is the sum of the T
per-task Adam updates, θ_s ← θ_s − lr Σ_i m̂_i / (√v̂_i + ε). Task-specific (head) parameters take a
plain Adam step on the summed gradient Σ_i ∇L_i. With T = 1 this is exactly `torch.optim.Adam`, and
for any T the shared update equals the sum of T independent `torch.optim.Adam` updates (tested).
Because Adam normalises each task's gradient by its own second moment, the update is invariant (up
to ε) to a constant rescaling of any task loss when the heads are disjoint (tested).
Hyperparameters: none of its own; lr, betas, eps and weight_decay come from the run's OptimizerSpec
(the reference `Adam_with_AdaTask` defaults are Adam's: lr 1e-3, betas (0.9, 0.999), eps 1e-8). The
rule is always Adam — that is the method; `spec.name` is not consulted.
Statefulness: the per-task moments live in the optimiser returned by `configure_optimizer` (its
`state_dict()` is checkpointed by the trainer); the method itself holds no state.
Levels: none — per-parameter optimiser state has no feature-level counterpart.
Scale: about T × Adam on the sum (each task contributes a unit-scale step); retune lr.
Departures: the reference accepts but ignores weight_decay; here it is applied as L2 to every task's
gradient (what T independent Adams would do). The reference's `task_weight` (default all ones) is not
offered. Gradient clipping by the trainer does not affect the shared update (the per-task gradients
are handed to the optimiser directly); `.grad` of the shared parameters holds Σ_i g_i for logging.
"""

from __future__ import annotations

import torch

from training.mtl.base import Level, MTLMethod, OptimizerSpec, StepReport
from training.mtl.context import StepContext
from training.mtl.optimizers import PerTaskOptimizer
from training.mtl.registry import register


class TaskGradientOptimizerMethod(MTLMethod):
    """Shared plumbing of the optimiser-level methods: per-task gradients go to a `PerTaskOptimizer`."""

    kind = "optimizer"
    levels = ()
    level_note = (
        "Per-parameter optimiser state has no feature-level counterpart, so the level does not apply."
    )
    cost = "T"

    def __init__(self, num_tasks: int, level: Level | str = Level.PARAMETER) -> None:
        super().__init__(num_tasks, level)
        self._optimizer: PerTaskOptimizer | None = None

    def _make_optimizer(
        self, shared: list[torch.nn.Parameter], task: list[torch.nn.Parameter], spec: OptimizerSpec
    ) -> PerTaskOptimizer:  # pragma: no cover - abstract
        raise NotImplementedError

    def configure_optimizer(
        self,
        shared_params: list[torch.nn.Parameter],
        task_params: list[torch.nn.Parameter],
        spec: OptimizerSpec,
    ) -> torch.optim.Optimizer:
        self._optimizer = self._make_optimizer(list(shared_params), list(task_params), spec)
        return self._optimizer

    def groups(self) -> list[list[int]]:
        """Task groups of this step's sub-steps, in order."""
        return [list(range(self.num_tasks))]

    def backward(self, ctx: StepContext) -> StepReport:
        if self._optimizer is None:
            raise RuntimeError(
                f"{self.name}: configure_optimizer(...) must be called before backward; the method "
                "replaces the optimiser"
            )
        ctx.check_losses_finite()
        G = ctx.param_grads()  # [T, P]
        grads = _unflatten_rows(G, list(ctx.shared_params))
        groups = self.groups()
        self._optimizer.set_task_grads(grads, groups)
        ctx.backward_shared_direction(G.sum(0))
        return StepReport(weights=None, extras={"substeps": float(len(groups))})


def _unflatten_rows(G: torch.Tensor, like: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    """Split `G [T, P]` into one `[T, *p.shape]` tensor per parameter."""
    out, offset = [], 0
    for p in like:
        n = p.numel()
        out.append(G[:, offset : offset + n].reshape(G.shape[0], *p.shape).to(p.dtype))
        offset += n
    return out


@register
class AdaTask(TaskGradientOptimizerMethod):
    name = "adatask"
    paper = (
        "Yang, Pan, Wang, Yu, Shen, Chen, Xiao, Jiang, Guo, AdaTask: A Task-Aware Adaptive Learning "
        "Rate Approach to Multi-Task Learning, AAAI 2023, https://arxiv.org/abs/2211.15055"
    )

    def __init__(self, num_tasks: int, level: Level | str = Level.PARAMETER) -> None:
        super().__init__(num_tasks, level)

    def _make_optimizer(
        self, shared: list[torch.nn.Parameter], task: list[torch.nn.Parameter], spec: OptimizerSpec
    ) -> PerTaskOptimizer:
        adam = OptimizerSpec(
            name="adam", lr=spec.lr, momentum=spec.momentum, betas=spec.betas, eps=spec.eps,
            weight_decay=spec.weight_decay,
        )
        return PerTaskOptimizer(shared, task, adam, self.num_tasks, moments="task")
