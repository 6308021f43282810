"""PCGrad: projecting conflicting gradients ("gradient surgery").

Paper: T. Yu, S. Kumar, A. Gupta, S. Levine, K. Hausman, C. Finn, "Gradient Surgery for Multi-Task
Learning", NeurIPS 2020, https://arxiv.org/abs/2001.06782.

Update: for each task i, g_i' = g_i; for j ≠ i in a random order, if g_i'·g_j < 0 then
g_i' ← g_i' − (g_i'·g_j / ‖g_j‖²) g_j (projection onto the normal plane of the ORIGINAL g_j).
d = Σ_i g_i'. Computed exactly in Gram space: g_i' = Gᵀc_i with coefficients c_i, g_i'·g_j = (Mc_i)_j,
so the method is a linear combination d = Gᵀ(Σ_i c_i) with weights Σ_i c_i (torchjd's
weighting form). No hyperparameters.
Stochastic: one permutation of the other tasks per task i per step from `torch.randperm` on the CPU
(torch's global RNG, checkpointed by the trainer). For T = 2 the order is irrelevant. No other state.
Scale: sum (like the official code and EW's G.sum(0)): without conflicts d = G.sum(0) exactly.
Both levels (the feature-level form projects ∂L/∂Z rows, as Pylon's `wrt_rep`).
Edge cases: a zero row conflicts with nothing (its dot products are 0) and is never a projection
target; parallel rows never conflict; exactly opposite rows (T = 2) cancel to d = 0.
Departures: the official TF code's shuffle is discarded (fixed order); we shuffle as the paper says.
No +1e-8 in ‖g_j‖² is needed: a zero g_j never has a negative dot product.
"""

from __future__ import annotations

import numpy as np
import torch

from training.mtl.base import GramWeighting, GramWeights
from training.mtl.registry import register
from training.mtl.solvers import normalized_gram


@register
class PCGrad(GramWeighting):
    name = "pcgrad"
    paper = (
        "T. Yu, S. Kumar, A. Gupta, S. Levine, K. Hausman, C. Finn, Gradient Surgery for Multi-Task "
        "Learning, NeurIPS 2020, https://arxiv.org/abs/2001.06782"
    )
    stochastic = True

    def gram_weights(self, M: np.ndarray) -> GramWeights:
        T = M.shape[0]
        Mn, _ = normalized_gram(M)  # scale-free: the projection coefficients are ratios of M entries
        C = np.eye(T)
        for i in range(T):
            others = [j for j in torch.randperm(T).tolist() if j != i]
            for j in others:
                dot = float(Mn[j] @ C[i])  # g_i'·g_j
                if dot < 0.0 and Mn[j, j] > 0.0:
                    C[i, j] -= dot / Mn[j, j]
        return GramWeights(C.sum(0))
