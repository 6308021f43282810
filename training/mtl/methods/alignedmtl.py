"""Aligned-MTL: align the task gradients to an orthogonal, equal-norm system (Aligned-MTL-UB at the
feature level).

Paper: D. Senushkin, N. Patakin, A. Kuznetsov, A. Konushin, "Independent Component Alignment for
Multi-Task Learning", CVPR 2023, https://arxiv.org/abs/2305.19000.

Update: eigendecompose M = G Gᵀ = VΛVᵀ (float64 `eigh`), keep the rank R with λ > λ_max·T·eps, eps =
float32's epsilon whatever the dtype of G (the reference's `torch.finfo().eps`; `solvers.RANK_EPS`);
balance matrix B = √λ_s · V_R Λ_R^{-1/2} V_Rᵀ with λ_s = min kept λ ("min"), their lower median
("median", as torch.median) or mean ("rmse"). The aligned gradients Ĝ = BG satisfy
ĜĜᵀ = λ_s V_R V_Rᵀ: orthogonal with equal norms √λ_s on the row space (condition number 1).
d = Ĝᵀ1 = Gᵀ(B1), weights α = B1.
Aligned-MTL-UB is this method with `mtl.level=feature` (G = ∂L/∂Z flattened over the batch, as
SamsungLabs `amtlub`), then one backward of d_Z.
Hyperparameters: scale_mode "min" (SamsungLabs, torchjd). Stateless.
Scale: sum over the aligned gradients (SamsungLabs, LibMTL HEAD: preference 1); when the gradients
are already orthogonal with equal norms B = I and d = G.sum(0), EW's scale. torchjd's default
weights are these divided by T.
Edge cases: rank truncation handles parallel rows and zero rows (those directions get no weight);
all-zero G (rank 0) gives α = 0, d = 0. "min" gives small steps when the gradients are nearly
dependent (the published behaviour).
Departures: `torch.symeig` (reference code) is replaced by `torch.linalg.eigh`-equivalent numpy eigh.
"""

from __future__ import annotations

import numpy as np

from training.mtl.base import GramWeighting, GramWeights, Level
from training.mtl.registry import alias, register
from training.mtl.solvers import RANK_EPS

_SCALE_MODES = ("min", "median", "rmse")


def balance_matrix(M: np.ndarray, scale_mode: str, eps: float) -> np.ndarray:
    """B `[T, T]` of Aligned-MTL for a Gram matrix `M` (zero matrix when M has rank 0)."""
    lam, V = np.linalg.eigh(M)
    lam_max = float(lam[-1]) if lam.size else 0.0
    keep = lam > lam_max * M.shape[0] * eps
    if lam_max <= 0.0 or not np.any(keep):
        return np.zeros_like(M)
    lam_r, V_r = lam[keep], V[:, keep]
    # "median": the lower middle eigenvalue for an even count, as torch.median (the reference code is
    # torch-based; numpy's median would average the two middle ones)
    lower_median = np.sort(lam_r)[(lam_r.size - 1) // 2]
    scales = {"min": lam_r.min(), "median": lower_median, "rmse": lam_r.mean()}
    scale = float(scales[scale_mode])
    return np.sqrt(scale) * (V_r / np.sqrt(lam_r)) @ V_r.T


@register
class AlignedMTL(GramWeighting):
    name = "alignedmtl"
    paper = (
        "D. Senushkin, N. Patakin, A. Kuznetsov, A. Konushin, Independent Component Alignment for "
        "Multi-Task Learning, CVPR 2023, https://arxiv.org/abs/2305.19000 (Aligned-MTL-UB: mtl.level=feature)"
    )
    level_note = "Aligned-MTL-UB (Senushkin et al.) is mtl.level=feature."

    def __init__(self, num_tasks: int, level: Level | str = Level.PARAMETER, scale_mode: str = "min") -> None:
        super().__init__(num_tasks, level)
        if scale_mode not in _SCALE_MODES:
            raise ValueError(f"alignedmtl: scale_mode must be one of {_SCALE_MODES}, got {scale_mode!r}")
        self.scale_mode = scale_mode

    def gram_weights(self, M: np.ndarray) -> GramWeights:
        B = balance_matrix(M, self.scale_mode, RANK_EPS)
        rank = float(np.linalg.matrix_rank(B)) if np.any(B) else 0.0
        return GramWeights(B @ np.ones(M.shape[0]), {"rank": rank})

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale_mode={self.scale_mode}"


# Aligned-MTL-UB (Senushkin et al.) is Aligned-MTL on the feature-level gradients
alias("alignedmtl_ub", "alignedmtl", Level.FEATURE,
      "alignedmtl_ub is alignedmtl at the feature level by definition; use `alignedmtl` for the "
      "parameter level.")
