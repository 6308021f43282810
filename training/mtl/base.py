"""The MTL method interface and its two thin bases.

The trainer only calls, for any method:
    opt = method.configure_optimizer(shared_params, task_params, spec)  # None -> standard optimiser
    report = method.backward(ctx)        # writes .grad of every trainable parameter
    optimizer.step()
    if method.needs_post_step: method.after_step(ctx)
It never branches on a method's name; needs are declared as class attributes (capabilities).

Two bases carry the plumbing so a method module is only its algorithm:
- LossWeighting: `weights(losses [T]) -> [T]` (or `objective(losses) -> scalar` when the method owns
  learnable parameters, like UW), applied with one backward.
- GradientCombination: `combine(G [T, n]) -> Combination(direction [n], weights [T] | None, extras)`
  on a task-gradient matrix, at the parameter level (G = ∂L/∂θ_s) or the feature level (G = ∂L/∂Z,
  then one backward of the direction through the backbone): results are values, never attributes.
  Scale convention: EW's direction is `G.sum(0)`; each method documents its scale.
State that must survive a resume lives in buffers/parameters or in `get_extra_state`, so
`state_dict()` round trips reproduce the next step exactly.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from training.mtl.context import NonFiniteError, StepContext
from training.mtl.solvers import gram

#: dtypes a gradient combination never computes in (autocast gives bf16/fp16 feature gradients)
_HALF = (torch.float16, torch.bfloat16)


def working_precision(G: Tensor) -> Tensor:
    """`G` as every gradient combination sees it: float16/bfloat16 promoted to float32, else unchanged.

    Under `amp: bf16` the feature-level gradients G_Z are bf16; combining them in bf16 would make the
    result depend on the autocast dtype (rank cut-offs, sums of T rows). The direction is therefore
    computed in at least float32 for every method (solvers run in float64 on the Gram matrix anyway).
    """
    return G.float() if G.dtype in _HALF else G


class Level(str, enum.Enum):
    """Where per-task gradients are taken."""

    PARAMETER = "parameter"  # w.r.t. the shared parameters θ_s
    FEATURE = "feature"  # w.r.t. the shared representation Z (the "feature-level surrogate", -UB)


@dataclass(frozen=True)
class OptimizerSpec:
    """The plain optimiser settings from the config (used by methods that replace the optimiser)."""

    name: str = "sgd"  # sgd | adam | signsgd
    lr: float = 1e-4
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0


@dataclass
class StepReport:
    """What a method reports after its backward (logged by the trainer).

    weights: effective task weights `[T]` where the update is a combination Σ w_i g_i (None otherwise).
    extras: scalar method internals worth logging (e.g. a solver's iterations, the MGDA min-norm).
    shared_max_norm: > 0 asks the step to clip the shared parameters' final gradient to this norm once
        it is final (after the cross-rank average), before the optimiser step; the step scales
        `weights` by the same factor and logs the norm before clipping as `shared_grad_norm`
        (Nash-MTL at the feature level, whose shared gradient exists only after the backbone backward).
    substeps: > 1 asks the step for an alternation: after the optimiser step it runs a fresh forward of
        the same batch (the step's random draws replayed), `method.backward_substep(ctx, j)` and an
        optimiser step, for j = 1 .. substeps − 1 (MTL-IO's exact alternation).
    """

    weights: Tensor | None = None
    extras: dict[str, float] = field(default_factory=dict)
    shared_max_norm: float = 0.0
    substeps: int = 1


class MTLMethod(torch.nn.Module):
    """Base of every MTL method. Subclasses set the class attributes below and implement `backward`."""

    #: registry name (lower-case)
    name: ClassVar[str] = ""
    #: "loss weighting" | "gradient combination" | "optimizer" | "regularizer"
    kind: ClassVar[str] = ""
    #: levels the method supports; () = level-free (a weighted-loss backward, no per-task gradients)
    levels: ClassVar[tuple[Level, ...]] = ()
    #: the level used when the config does not name one
    default_level: ClassVar[Level] = Level.PARAMETER
    #: why a level is not offered (shown by `python -m training methods`)
    level_note: ClassVar[str] = ""
    #: citation: "Authors, Title, Venue Year, URL"
    paper: ClassVar[str] = ""
    #: per-step randomness (drawn from torch's global RNG, which checkpoints save and restore)
    stochastic: ClassVar[bool] = False
    #: needs `after_step(ctx)` after the optimiser step (e.g. FAMO's loss-change update)
    needs_post_step: ClassVar[bool] = False
    #: how many backward passes through the backbone a step costs, for the docs ("1", "T", "T+1")
    cost: ClassVar[str] = "1"

    def __init__(self, num_tasks: int, level: Level | str = Level.PARAMETER) -> None:
        super().__init__()
        if not isinstance(num_tasks, int) or num_tasks < 1:
            raise ValueError(f"{self.name}: num_tasks must be a positive int, got {num_tasks!r}")
        self.num_tasks = num_tasks
        try:
            lvl = Level(level)
        except ValueError:
            raise ValueError(
                f"{self.name}: level must be one of {[lv.value for lv in Level]}, got {level!r}"
            ) from None
        if self.levels and lvl not in self.levels:
            raise ValueError(
                f"{self.name}: level {lvl.value!r} is not supported; supported: "
                f"{[lv.value for lv in self.levels]}. {self.level_note}".strip()
            )
        self.level = lvl if self.levels else None

    def backward(self, ctx: StepContext) -> StepReport:  # pragma: no cover - abstract
        raise NotImplementedError

    def after_step(self, ctx: StepContext) -> None:
        """Called after the optimiser step when `needs_post_step` is set."""

    def backward_substep(self, ctx: StepContext, index: int) -> StepReport:
        """Sub-step `index` >= 1 of a step whose `backward` reported `substeps` > 1: write `.grad` from
        `ctx`, a fresh forward at the parameters the previous sub-step produced (see `StepReport`)."""
        raise NotImplementedError(f"{self.name}: reported substeps > 1 but has no backward_substep")

    def schedule_warnings(self, total_steps: int, steps_per_epoch: int) -> list[str]:
        """Warnings about the run's length for this method (e.g. DWA's warm-up outlasting the run).

        Called once by the trainer before training; the default has none.
        """
        return []

    def configure_optimizer(
        self,
        shared_params: list[torch.nn.Parameter],
        task_params: list[torch.nn.Parameter],
        spec: OptimizerSpec,
    ) -> torch.optim.Optimizer | None:
        """Return an optimiser that replaces the standard one (AdaTask, MTL-IO), else None."""
        return None

    def method_parameters(self) -> list[torch.nn.Parameter]:
        """Learnable parameters the method owns (UW's log-variances); the trainer optimises them."""
        return [p for p in self.parameters() if p.requires_grad]

    def extra_repr(self) -> str:
        lvl = self.level.value if self.level is not None else "n/a"
        return f"num_tasks={self.num_tasks}, level={lvl}"


class LossWeighting(MTLMethod):
    """A method whose update is the gradient of a weighted sum of the task losses (one backward)."""

    kind = "loss weighting"
    levels = ()
    level_note = "A loss weighting needs no per-task gradients, so the level does not apply."

    def weights(self, losses: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Task weights `[T]` for the current (detached) task losses `[T]`."""
        raise NotImplementedError

    def objective(self, losses: Tensor) -> Tensor:
        """The scalar to backpropagate; override when the method owns learnable parameters."""
        return (self.weights(losses.detach()).detach() * losses).sum()

    def backward(self, ctx: StepContext) -> StepReport:
        ctx.check_losses_finite()
        total = self.objective(ctx.losses)
        ctx.backward_loss(total)
        with torch.no_grad():
            w = self.weights(ctx.losses.detach())
        return StepReport(weights=w.detach())


@dataclass(frozen=True)
class Combination:
    """What a gradient combination returns for a task-gradient matrix G `[T, n]` (torchjd's shape:
    the aggregated direction together with the weights that produced it).

    direction: the update direction `[n]` in G's dtype; EW's would be `G.sum(0)`.
    weights: effective task weights α `[T]` when direction = αᵀG (float64 for Gram methods), else None.
    extras: scalar internals worth logging (solver iterations, residuals, ranks).
    """

    direction: Tensor
    weights: Tensor | None = None
    extras: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class GramWeights:
    """What `GramWeighting.gram_weights` returns: the weights and, as values, what the step changed.

    alpha: task weights `[T]` (float64). extras: scalar internals to log. state: new values of the
    method's buffers ({buffer name: tensor}); `GramWeighting.combine` copies them into the buffers
    after checking `alpha`, so the weight function itself never mutates the method.
    """

    alpha: np.ndarray
    extras: dict[str, float] = field(default_factory=dict)
    state: dict[str, Tensor] = field(default_factory=dict)


class GradientCombination(MTLMethod):
    """A method that maps the task-gradient matrix G `[T, n]` to one update direction `[n]`."""

    kind = "gradient combination"
    levels: ClassVar[tuple[Level, ...]] = (Level.PARAMETER, Level.FEATURE)
    cost = "T (parameter level) / 1 + T head-only (feature level)"

    def combine(self, G: Tensor) -> Combination:  # pragma: no cover - abstract
        """The combination of task gradients `G [T, n]`; EW's direction would be `G.sum(0)`."""
        raise NotImplementedError

    def combine_features(self, G_Z: Tensor, ctx: StepContext) -> Combination:
        """Feature-level variant; default is `combine`. (GradDrop overrides it: it needs sign(Z).)"""
        return self.combine(G_Z)

    def check_task_matrix(self, G: Tensor) -> None:
        """Raise a ValueError naming `G` unless it is a floating `[num_tasks, n]` matrix."""
        if not isinstance(G, Tensor):
            raise ValueError(f"{self.name}: G must be a torch.Tensor [T, n], got {type(G).__name__}")
        if G.dim() != 2 or G.shape[0] != self.num_tasks:
            raise ValueError(
                f"{self.name}: G must have shape [num_tasks={self.num_tasks}, n], got {tuple(G.shape)}"
            )
        if not G.is_floating_point():
            raise ValueError(f"{self.name}: G must be floating point, got dtype {G.dtype}")

    def head_weights(self, combination: Combination) -> Tensor | None:
        """Weights `[T]` of the task losses for the head parameters, given this step's combination (α
        is known only after combining); None = the raw sum Σ_i ∇_{θ_h} L_i (convention (a))."""
        return None

    def backward(self, ctx: StepContext) -> StepReport:
        ctx.check_losses_finite()
        if self.level is Level.PARAMETER:
            result = self.combine(working_precision(ctx.param_grads()))
            ctx.backward_shared_direction(result.direction, head_weights=self.head_weights(result))
        else:
            result = self.combine_features(working_precision(ctx.feature_grads()), ctx)
            ctx.backward_feature_direction(result.direction, head_weights=self.head_weights(result))
        w = result.weights
        return StepReport(weights=None if w is None else w.detach().float(), extras=dict(result.extras))


#: what a combination's heads may receive (`heads` hyperparameter of MGDA and Nash-MTL, docs/mtl.md)
HEAD_MODES = ("sum", "weighted")


def check_head_mode(method: str, heads: str) -> str:
    """`heads` if it is one of `HEAD_MODES`, else a ValueError naming the method and the argument."""
    if heads not in HEAD_MODES:
        raise ValueError(
            f"{method}: heads must be one of {HEAD_MODES} ('sum': Σ_i ∇L_i, convention (a); 'weighted': "
            f"Σ_i α_i ∇L_i as the official code), got {heads!r}"
        )
    return heads


class GramWeighting(GradientCombination):
    """A combination `d = Gᵀα` whose weights α depend only on the Gram matrix `M = G Gᵀ`.

    Subclasses implement `gram_weights(M) -> GramWeights` on the float64 `[T, T]` Gram matrix without
    changing the method; the base builds M in float64 (chunked), checks α is finite, then stores the
    returned buffer values and applies α in G's dtype (at least float32: half-precision G is promoted
    first). Working on M makes the cost of the method itself O(T²n) for M plus O(Tn) for d. Rank
    decisions use float32's epsilon whatever G's dtype (`solvers.RANK_EPS`, as the reference code),
    so bf16/fp16/float64 G give the same rank.
    """

    def gram_weights(self, M: np.ndarray) -> GramWeights:  # pragma: no cover - abstract
        """Task weights α `[T]` (float64) for the Gram matrix `M [T, T]` (float64), and what the step
        changes (extras to log, new buffer values) as values."""
        raise NotImplementedError

    def combine(self, G: Tensor) -> Combination:
        self.check_task_matrix(G)
        G = working_precision(G)
        M = gram(G)
        if not np.all(np.isfinite(M)):
            raise NonFiniteError(f"{self.name}: the Gram matrix of G is not finite (gradients too large?)")
        out = self.gram_weights(M)
        alpha = np.asarray(out.alpha, dtype=np.float64)
        if alpha.shape != (self.num_tasks,) or not np.all(np.isfinite(alpha)):
            raise NonFiniteError(f"{self.name}: solver returned invalid weights {alpha!r}")
        with torch.no_grad():
            for name, value in out.state.items():
                getattr(self, name).copy_(value)
        w = torch.as_tensor(alpha, dtype=torch.float64, device=G.device)
        return Combination(direction=w.to(G.dtype) @ G, weights=w, extras=dict(out.extras))


def hyperparameters(cls: type[MTLMethod]) -> dict[str, tuple[Any, Any]]:
    """{name: (annotation, default)} of a method's constructor hyperparameters."""
    import inspect

    sig = inspect.signature(cls.__init__)
    out: dict[str, tuple[Any, Any]] = {}
    for pname, p in sig.parameters.items():
        if pname in ("self", "num_tasks", "level") or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        out[pname] = (p.annotation, p.default)
    return out
