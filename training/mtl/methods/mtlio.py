"""MTL-IO: multi-task learning as independent optimisations — the STALE-GRADIENT variant only.

Paper: Lucas Pascal, Pietro Michiardi, Xavier Bost, Benoit Huet, Maria A. Zuluaga, "Improved
Optimization Strategies for Deep Multi-Task Networks", arXiv 2021, https://arxiv.org/abs/2109.11678

What the paper specifies (abstract; the method section was not reachable from this project): the
averaged objective is replaced by ALTERNATING independent gradient steps on each task's objective,
combined with state-of-the-art optimisers, and random task grouping trades the extra computation
against the benefit. "Alternating steps" at a cost in computational time means each task's step is
taken at the parameters the previous task's step produced, i.e. a fresh forward/backward per
sub-step (T/k forwards per batch).

What this module implements: every step, the tasks are put in a random order and cut into groups of
`group_size`; for each group one optimiser sub-step is applied to the shared parameters with the
group's gradient, using the run's rule (OptimizerSpec: sgd with momentum, adam or signsgd), with
- ``moments="task"`` (default): one moment slot per task;
- ``moments="shared"``: one slot advanced by every sub-step.
Heads take one standard step on Σ_i ∇L_i. But ALL sub-steps use the gradients of the step's single
forward pass (stale gradients): the StepContext offers no re-forward with a graph, so the paper's
exact alternation is NOT implemented (it needs the engine to re-run the forward after each sub-step).

Consequence (tested in tests/test_mtl_weighting_optim.py, `test_mtl_io_stale_variant_is_ew_or_adatask`):
with stale gradients the sub-steps of ``moments="task"`` commute, so
- with SGD (any momentum) the trajectory IS EW's (equal to round-off over many steps);
- with Adam it IS AdaTask's (`adatask`);
- only signsgd (Σ_i sign(m_i) ≠ sign(Σ_i m_i)) and ``moments="shared"`` with momentum/Adam differ
  from EW/AdaTask, and order/grouping matter only through weight decay or ``moments="shared"``.
So an "MTL-IO + SGD" or "MTL-IO + Adam" row is EW or AdaTask relabelled; do not report it as a
distinct result. `python -m training methods mtl_io` says so too.
Hyperparameters: group_size = 1, moments = "task".
Statefulness: the moments live in the optimiser returned by `configure_optimizer` (checkpointed by
the trainer); the order is drawn from torch's global RNG (`torch.randperm`), which checkpoints save.
Levels: none (per-parameter optimiser state). Scale: the sum over tasks, EW's `G.sum(0)` for SGD.
"""

from __future__ import annotations

import torch

from training.mtl.base import Level, OptimizerSpec
from training.mtl.methods.adatask import TaskGradientOptimizerMethod
from training.mtl.optimizers import PerTaskOptimizer
from training.mtl.registry import register


@register
class MTLIO(TaskGradientOptimizerMethod):
    name = "mtl_io"
    paper = (
        "Pascal, Michiardi, Bost, Huet, Zuluaga, Improved Optimization Strategies for Deep Multi-Task "
        "Networks, arXiv 2021, https://arxiv.org/abs/2109.11678"
    )
    stochastic = True
    #: shown by `python -m training methods`: what this implementation amounts to
    note = (
        "Stale-gradient variant (one forward per step), not the paper's alternation with a fresh "
        "forward per sub-step: with optimizer sgd (any momentum) it IS EW, with adam it IS adatask "
        "(moments='task'); only signsgd, or moments='shared' with momentum or adam, differ. Do not "
        "report an MTL-IO + SGD/Adam row as a distinct result."
    )

    def __init__(
        self, num_tasks: int, level: Level | str = Level.PARAMETER, group_size: int = 1, moments: str = "task"
    ) -> None:
        super().__init__(num_tasks, level)
        if not isinstance(group_size, int) or group_size < 1:
            raise ValueError(f"mtl_io: group_size must be a positive int, got {group_size!r}")
        if moments not in ("task", "shared"):
            raise ValueError(f"mtl_io: moments must be 'task' or 'shared', got {moments!r}")
        self.group_size = group_size
        self.moments = moments

    def groups(self) -> list[list[int]]:
        order = torch.randperm(self.num_tasks).tolist()
        k = self.group_size
        return [order[i : i + k] for i in range(0, self.num_tasks, k)]

    def _make_optimizer(
        self, shared: list[torch.nn.Parameter], task: list[torch.nn.Parameter], spec: OptimizerSpec
    ) -> PerTaskOptimizer:
        return PerTaskOptimizer(shared, task, spec, self.num_tasks, moments=self.moments)
