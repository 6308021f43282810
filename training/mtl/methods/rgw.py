"""RGW: random gradient weighting.

Paper: B. Lin, F. Ye, Y. Zhang, I. W. Tsang, "Reasonable Effectiveness of Random Weighting: A Litmus
Test for Multi-Task Learning", TMLR 2022, https://arxiv.org/abs/2111.10603.

Update: λ = softmax(ε), ε ~ N(0, I_T) drawn every step; d = Σ λ_i g_i (on per-task gradients; RLW is
the same on losses). No hyperparameters. Stochastic: ε is drawn with `torch.randn(T)` in float32 on
the CPU from torch's global RNG (checkpointed by the trainer), so a seed gives the same weights on any
device, equal to `softmax(torch.randn(T))` (the softmax is taken in float64 so Σλ = 1 to round-off).
No other state.
Scale: Σλ = 1 (mean-like, about 1/T of EW's G.sum(0)), as in LibMTL (b65bf41) and torchjd `Random`.
Both levels; at the feature level the weights apply to ∂L/∂Z (then one backward).
"""

from __future__ import annotations

import torch
from torch import Tensor

from training.mtl.base import Combination, GradientCombination
from training.mtl.registry import register


@register
class RGW(GradientCombination):
    name = "rgw"
    paper = (
        "B. Lin, F. Ye, Y. Zhang, I. W. Tsang, Reasonable Effectiveness of Random Weighting: A Litmus "
        "Test for Multi-Task Learning, TMLR 2022, https://arxiv.org/abs/2111.10603"
    )
    stochastic = True

    def combine(self, G: Tensor) -> Combination:
        self.check_task_matrix(G)
        # drawn on the CPU in float32 so the sequence is device-independent; no Gram matrix is needed
        eps = torch.randn(self.num_tasks).double()  # the seeded float32 draw; softmax in float64
        w = torch.softmax(eps, dim=0).to(G.device)
        return Combination(direction=w.to(G.dtype) @ G, weights=w)
