"""UW-O and UW-SO: analytical (optimal) uncertainty weighting.

Paper: Lukas Kirchdorfer, Cathrin Elich, Simon Kutsche, Heiner Stuckenschmidt, Lukas Schott, Jan M.
Köhler, "Analytical Uncertainty-Based Loss Weighting in Multi-Task Learning", GCPR 2024,
https://arxiv.org/abs/2408.07985

Idea: minimise Kendall's uncertainty objective over σ in closed form for the current losses, which
gives σ_i* ∝ L_i and hence weights ∝ 1/L_i.
- ``uw_o``:  w_i = 1 / (sg(L_i) + ε). The update Σ ∇L_i / L_i = ∇ Σ log L_i is invariant to a constant
  rescaling of any task loss (tested).
- ``uw_so``: w = softmax((1 / (sg(L) + ε)) / τ); the weights sum to 1.
Hyperparameters: ε = 1e-8 (both), τ = 1.0 (UW-SO) — the values of the only known implementation;
the paper tunes τ per data set, so treat it as a knob.
Statefulness: stateless, deterministic, one backward.
Scale: UW-O weights are 1/L (for L ≈ 1 like EW's sum; for small losses much larger); UW-SO weights sum
to 1 (1/T of EW's scale when uniform).
Guards: a loss below 0 is clamped to 0 before inverting, so its weight is the largest possible,
1/ε (never negative, never a division by zero). For UW-SO the softmax subtracts the maximum, so
the huge logits of near-zero losses give a finite (one-hot-like) distribution.
Departures: none known (no reference code was copied; formulas from the paper).
"""

from __future__ import annotations

import torch
from torch import Tensor

from training.mtl.base import Level, LossWeighting
from training.mtl.registry import register

PAPER = (
    "Kirchdorfer, Elich, Kutsche, Stuckenschmidt, Schott, Köhler, Analytical Uncertainty-Based Loss "
    "Weighting in Multi-Task Learning, GCPR 2024, https://arxiv.org/abs/2408.07985"
)


def _inverse_losses(losses: Tensor, eps: float) -> Tensor:
    # Computed in float64 so that 1/(L+ε) of tiny float32 losses does not overflow before the cast.
    return 1.0 / (losses.detach().double().clamp_min(0.0) + eps)


@register
class UWO(LossWeighting):
    name = "uw_o"
    paper = PAPER

    def __init__(self, num_tasks: int, level: Level | str = Level.PARAMETER, eps: float = 1e-8) -> None:
        super().__init__(num_tasks, level)
        if not eps > 0:
            raise ValueError(f"uw_o: eps must be > 0 (it guards 1/L at L = 0), got {eps!r}")
        self.eps = float(eps)

    def weights(self, losses: Tensor) -> Tensor:
        return _inverse_losses(losses, self.eps).to(losses.dtype)


@register
class UWSO(LossWeighting):
    name = "uw_so"
    paper = PAPER

    def __init__(
        self, num_tasks: int, level: Level | str = Level.PARAMETER, tau: float = 1.0, eps: float = 1e-8
    ) -> None:
        super().__init__(num_tasks, level)
        if not tau > 0:
            raise ValueError(f"uw_so: tau (softmax temperature) must be > 0, got {tau!r}")
        if not eps > 0:
            raise ValueError(f"uw_so: eps must be > 0 (it guards 1/L at L = 0), got {eps!r}")
        self.tau = float(tau)
        self.eps = float(eps)

    def weights(self, losses: Tensor) -> Tensor:
        return torch.softmax(_inverse_losses(losses, self.eps) / self.tau, dim=0).to(losses.dtype)
