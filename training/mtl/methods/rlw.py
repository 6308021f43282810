"""RLW: random loss weighting.

Paper: Baijiong Lin, Feiyang Ye, Yu Zhang, Ivor W. Tsang, "Reasonable Effectiveness of Random
Weighting: A Litmus Test for Multi-Task Learning", TMLR 2022, https://arxiv.org/abs/2111.10603

Update: every step draw ε ~ N(0, I_T) and use λ = softmax(ε) (detached) on the losses: Σ λ_i L_i.
Hyperparameters: none (the Normal/softmax variant, the default of LibMTL and the only one of its later
versions and of the other reference codes).
Statefulness: stateless; stochastic — ε is drawn from torch's *global* RNG with `torch.randn(T)` in
the losses' dtype, so the trainer's checkpointed RNG state reproduces the draws.
Scale: λ sums to 1, i.e. on average 1/T of EW's `G.sum(0)`.
Departures: LibMTL's other distributions (uniform, Dirichlet, Bernoulli) are not offered.
"""

from __future__ import annotations

import torch
from torch import Tensor

from training.mtl.base import LossWeighting, StepReport
from training.mtl.context import StepContext
from training.mtl.registry import register


@register
class RLW(LossWeighting):
    name = "rlw"
    paper = (
        "Lin, Ye, Zhang, Tsang, Reasonable Effectiveness of Random Weighting: A Litmus Test for "
        "Multi-Task Learning, TMLR 2022, https://arxiv.org/abs/2111.10603"
    )
    stochastic = True

    def weights(self, losses: Tensor) -> Tensor:
        """Fresh random weights softmax(ε), ε ~ N(0, I) from the global RNG (one draw per call)."""
        eps = torch.randn(losses.shape[0], dtype=losses.dtype, device=losses.device)
        return torch.softmax(eps, dim=0)

    def backward(self, ctx: StepContext) -> StepReport:
        # One draw per step: the base class would call `weights` twice (objective and report).
        ctx.check_losses_finite()
        w = self.weights(ctx.losses.detach())
        ctx.backward_weighted(w)
        return StepReport(weights=w.detach())
