"""Nash-MTL: the Nash bargaining solution of the tasks' utilities.

Paper: A. Navon, A. Shamsian, I. Achituve, H. Maron, K. Kawaguchi, G. Chechik, E. Fetaya,
"Multi-Task Learning as a Bargaining Game", ICML 2022, https://arxiv.org/abs/2202.01017.

Update: α > 0 with α_i (Mα)_i = 1 for all i (M = G Gᵀ), d = Gᵀα, so ‖d‖² = T before clipping; then
(official: `clip_grad_norm_(shared_parameters, max_norm)` right after its backward) the shared
parameters' gradient is clipped to norm `max_norm`. Parameter level: d IS that gradient, so α is
rescaled by min(1, max_norm/‖d‖) in the combination (torchjd does the same). Feature level: d lives in
Z-space and the shared gradient Σ α_i ∂L_i/∂θ_s exists only after the backbone backward, so the
combination keeps the raw α and the method asks the step (`StepReport.shared_max_norm`) to clip the
shared parameters' gradient once it is final (after the cross-rank average under DDP); the reported
weights are then α times the clipping factor. (Clipping the Z-space direction instead, as before,
left the shared step effectively unclipped: norm 2284 vs 1.0 in the review's measurement.)
Solver: no cvxpy. α solves the strictly convex problem min_{α>0} ½αᵀMα − Σ log α_i (its
stationarity condition is exactly α ⊙ Mα = 1), by damped Newton in float64 on M/s (s = largest
diagonal; the solution for M is then α/√s), warm-started from the previous step's solution, at most
`optim_niter` Newton iterations (tolerance 1e-10 on max|α⊙Mα − 1|, usually reached in < 10).
Hyperparameters (official defaults, nash-mtl `NashMTL`, LibMTL HEAD, torchjd): optim_niter 20,
max_norm 1.0 (0 disables clipping), update_weights_every 1 (in between, the last α is reused).
State (buffers, in `state_dict`): `alpha` (last raw α), `warm` (normalised warm start), `step`; the
weight function returns their new values and `GramWeighting.combine` stores them (after checking α).
Scale: raw α (official); ‖d‖ = √T before clipping, i.e. unrelated to EW's G.sum(0) scale; with
max_norm 1 every shared update has norm ≤ 1.
Edge cases (documented behaviour): a zero row (‖g_i‖ < 1e-8·max‖g_j‖) has no finite Nash solution
(α_i → ∞ times a zero vector): it gets α_i = 0 and the other tasks bargain among themselves. Any
other vanishing non-negative combination (exactly opposite rows) has no finite solution either; a
ridge 1e-12·I on the normalised M keeps α finite (large) and d finite. All-zero G: α = 0, d = 0.
Heads (`heads`): "sum" (default, convention (a)) gives them Σ_i ∇_{θ_h} L_i; "weighted" gives them
Σ_i α_i ∇_{θ_h} L_i with the raw (unclipped) α, as the official code (AvivNavon/nash-mtl,
`NashMTL.backward`: `loss = Σ α_i L_i; loss.backward()`, then the clip of the shared parameters only).
Departures: Newton instead of the official CCCP loop of ECOS solves (same fixed point: torchjd's α is
reproduced to ~1e-6 relative per the reference notes); the heads' default is the raw sum.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from training.mtl.base import Combination, GramWeighting, GramWeights, Level, StepReport, check_head_mode
from training.mtl.context import StepContext
from training.mtl.registry import register
from training.mtl.solvers import nash_bargaining, normalized_gram

#: ‖g_i‖² below this fraction of the largest ‖g_j‖² counts as a zero gradient (‖g_i‖ < 1e-8 max‖g_j‖)
_ZERO_NORM2 = 1e-16


@register
class NashMTL(GramWeighting):
    name = "nashmtl"
    # buffers registered in __init__ (declared for the type checker)
    alpha: Tensor
    warm: Tensor
    step: Tensor
    paper = (
        "A. Navon, A. Shamsian, I. Achituve, H. Maron, K. Kawaguchi, G. Chechik, E. Fetaya, Multi-Task "
        "Learning as a Bargaining Game, ICML 2022, https://arxiv.org/abs/2202.01017"
    )

    def __init__(
        self,
        num_tasks: int,
        level: Level | str = Level.PARAMETER,
        optim_niter: int = 20,
        max_norm: float = 1.0,
        update_weights_every: int = 1,
        heads: str = "sum",
    ) -> None:
        super().__init__(num_tasks, level)
        self.heads = check_head_mode("nashmtl", heads)
        if not isinstance(optim_niter, int) or optim_niter < 1:
            raise ValueError(f"nashmtl: optim_niter must be a positive int, got {optim_niter!r}")
        if not max_norm >= 0.0:
            raise ValueError(f"nashmtl: max_norm must be >= 0 (0 disables clipping), got {max_norm!r}")
        if not isinstance(update_weights_every, int) or update_weights_every < 1:
            raise ValueError(
                f"nashmtl: update_weights_every must be a positive int, got {update_weights_every!r}"
            )
        self.optim_niter, self.max_norm = optim_niter, float(max_norm)
        self.update_weights_every = update_weights_every
        self.register_buffer("alpha", torch.zeros(num_tasks, dtype=torch.float64))
        self.register_buffer("warm", torch.zeros(num_tasks, dtype=torch.float64))
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))

    def gram_weights(self, M: np.ndarray) -> GramWeights:
        """α for M; the solver state of this step (step count, α, warm start) is returned as values."""
        step = int(self.step)
        state = {"step": torch.tensor(step + 1, dtype=torch.int64)}
        Mn, s = normalized_gram(M)
        if s == 0.0:
            return GramWeights(np.zeros(M.shape[0]), {"nash_residual": 0.0, "solver_iters": 0.0}, state)
        extras: dict[str, float] = {}
        raw = self.alpha.cpu().numpy().copy()  # the last solution, reused between updates
        if step % self.update_weights_every == 0 or not np.any(raw > 0):
            # a zero gradient has no utility to bargain with: α_i = 0, the others solve among themselves
            active = np.diag(Mn) > _ZERO_NORM2
            warm = self.warm.cpu().numpy()[active]
            beta = np.zeros(M.shape[0])
            beta[active], info = nash_bargaining(
                Mn[np.ix_(active, active)], warm if np.all(warm > 0) else None, max_iter=self.optim_niter
            )
            raw = beta / np.sqrt(s)
            state.update(warm=torch.from_numpy(beta), alpha=torch.from_numpy(raw))
            extras = {"nash_residual": info.residual, "solver_iters": float(info.iterations)}
        alpha = raw.copy()
        norm = float(np.sqrt(max(alpha @ M @ alpha, 0.0)))
        # parameter level: d is the shared gradient, clip it here; feature level: the step clips the
        # shared gradient after the backbone backward (`backward`)
        if self.level is Level.PARAMETER and self.max_norm > 0.0 and norm > self.max_norm:
            alpha *= self.max_norm / norm
        extras["direction_norm"] = norm
        return GramWeights(alpha, extras, state)

    def head_weights(self, combination: Combination) -> Tensor | None:
        """This step's raw α (before the clipping of the shared update) when `heads="weighted"`."""
        if self.heads == "sum" or combination.weights is None:
            return None
        w = combination.weights.detach().to(torch.float64)
        norm = combination.extras.get("direction_norm", 0.0)
        if self.level is Level.PARAMETER and self.max_norm > 0.0 and norm > self.max_norm:
            w = w * (norm / self.max_norm)  # undo the clipping folded into α above
        return w

    def backward(self, ctx: StepContext) -> StepReport:
        report = super().backward(ctx)
        if self.level is Level.FEATURE and self.max_norm > 0.0:
            report.shared_max_norm = self.max_norm
        return report

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, optim_niter={self.optim_niter}, max_norm={self.max_norm}, "
            f"update_weights_every={self.update_weights_every}, heads={self.heads!r}"
        )
