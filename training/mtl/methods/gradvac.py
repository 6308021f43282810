"""GradVac: gradient vaccine (adaptive gradient-similarity targets).

Paper: Z. Wang, Y. Tsvetkov, O. Firat, Y. Cao, "Gradient Vaccine: Investigating and Improving
Multi-task Optimization in Massively Multilingual Models", ICLR 2021, https://arxiv.org/abs/2010.05874.

Update: for each task i, g_i' = g_i; for j ≠ i in a random order: φ = cos(g_i', g_j); if φ < φ̂_ij,
g_i' += ‖g_i'‖ (φ̂_ij √(1−φ²) − φ √(1−φ̂_ij²)) / (‖g_j‖ √(1−φ̂_ij²) + eps) · g_j; then (always)
φ̂_ij ← (1−β) φ̂_ij + β φ. d = Σ_i g_i'. With φ̂ = 0 this is exactly PCGrad.
Computed exactly in Gram space (g_i' = Gᵀc_i), so the weights are Σ_i c_i.
Hyperparameters: beta 0.5 (LibMTL, torchjd, SamsungLabs), eps 1e-8 (torchjd; applied on the Gram
matrix normalised by its largest diagonal, so it is scale-free).
State: the targets φ̂ `[T, T]` (float64 buffer `targets`, init 0) — in `state_dict`.
Stochastic: the order of j from `torch.randperm` on the CPU (global RNG, checkpointed by the trainer).
Scale: sum (without adjustments d = G.sum(0), like EW).
Edge cases: a pair where either gradient is zero is skipped (no adjustment, no EMA update): its
cosine is undefined. |φ̂| → 1 is kept finite by eps.
Departures: the EMA is updated for every pair (LibMTL HEAD, torchjd, the paper's rule), not only
inside the `if` as LibMTL 1.1.5 does; one φ̂ for the whole model (LibMTL HEAD's group_type 0).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from training.mtl.base import GramWeighting, GramWeights, Level
from training.mtl.registry import register
from training.mtl.solvers import normalized_gram


@register
class GradVac(GramWeighting):
    name = "gradvac"
    # buffers registered in __init__ (declared for the type checker)
    targets: Tensor
    paper = (
        "Z. Wang, Y. Tsvetkov, O. Firat, Y. Cao, Gradient Vaccine: Investigating and Improving "
        "Multi-task Optimization in Massively Multilingual Models, ICLR 2021, https://arxiv.org/abs/2010.05874"
    )
    stochastic = True

    def __init__(
        self, num_tasks: int, level: Level | str = Level.PARAMETER, beta: float = 0.5, eps: float = 1e-8
    ) -> None:
        super().__init__(num_tasks, level)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"gradvac: beta must be in [0, 1], got {beta!r}")
        if not eps > 0.0:
            raise ValueError(f"gradvac: eps must be > 0, got {eps!r}")
        self.beta, self.eps = float(beta), float(eps)
        self.register_buffer("targets", torch.zeros(num_tasks, num_tasks, dtype=torch.float64))

    def gram_weights(self, M: np.ndarray) -> GramWeights:
        T = M.shape[0]
        Mn, _ = normalized_gram(M)
        targets = self.targets.cpu().numpy().copy()
        C = np.eye(T)
        for i in range(T):
            for j in [j for j in torch.randperm(T).tolist() if j != i]:
                norm_i2 = float(C[i] @ Mn @ C[i])
                if norm_i2 <= 0.0 or Mn[j, j] <= 0.0:
                    continue  # a zero gradient has no direction: nothing to align, no EMA update
                norm_i, norm_j = np.sqrt(norm_i2), np.sqrt(Mn[j, j])
                phi = float(np.clip((Mn[j] @ C[i]) / (norm_i * norm_j), -1.0, 1.0))
                target = targets[i, j]
                if phi < target:
                    root_t = np.sqrt(max(1.0 - target * target, 0.0))
                    numer = target * np.sqrt(1.0 - phi * phi) - phi * root_t
                    coef = norm_i * numer / (norm_j * root_t + self.eps)
                    C[i, j] += coef
                targets[i, j] = (1.0 - self.beta) * target + self.beta * phi
        # the new targets are returned as a value; `combine` stores them once α is known to be valid
        return GramWeights(C.sum(0), state={"targets": torch.from_numpy(targets)})

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, beta={self.beta}, eps={self.eps}"
