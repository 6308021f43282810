"""MGDA: the min-norm point of the convex hull of the task gradients (MGDA-UB at the feature level).

Paper: O. Sener, V. Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018,
https://arxiv.org/abs/1810.04650.

Update: α* = argmin_{α∈Δ} αᵀMα with M = G Gᵀ, d = Gᵀα*. d = 0 means Pareto-stationary.
MGDA-UB is this method with `mtl.level=feature` (G = ∂L/∂Z flattened over the batch, as in the paper
and SamsungLabs; no batch reduction), then one backward of d_Z through the backbone.

Hyperparameters: `normalization` ("none" reference default | "l2": α is computed on unit gradients
g_i/‖g_i‖ and d = Σ α_i g_i/‖g_i‖, LibMTL's behaviour), `max_iter` 250 and `tol` 1e-10 (solver;
the official MinNormSolver uses 250 iterations).
Solver: accelerated projected gradient on the normalised Gram matrix, then an exact KKT solve on the
support (training/mtl/solvers.py); no cvxpy. Stateless.
Scale: α ∈ Δ (Σα = 1, the official/LibMTL/torchjd convention), i.e. about 1/T of EW's G.sum(0) when
gradients agree.
Heads (`heads`): "sum" (default) gives them the raw sum Σ_i ∇_{θ_h} L_i (convention (a): LibMTL,
torchjd); "weighted" gives them Σ_i α_i ∇_{θ_h} L_i with this step's weights (the ones reported and
applied to the shared part), as the official code (isl-org/MultiObjectiveOptimization,
`train_multi_task.py`: after solving for the scales it back-propagates Σ_t scale_t·L_t through the
representation and every task's head). On AmodalRCNN most heads serve several tasks (docs/mtl.md), so
the two differ in direction, not only in scale. With normalization="l2" the weights are α_i/‖g_i‖
(LibMTL's convention, for the shared part and the heads alike); the official code instead applies
the solver's α (found on the normalised gradients) to the raw losses, i.e. weights α_i everywhere.
Edge cases: a zero gradient row gets α = e_i and d = 0 (every task stalls: the published behaviour);
all-zero G returns uniform α (d = 0 either way).
Departures: the official solver clips the T=2 start to 0.001/0.999 and can stop early; ours converges
to KKT to round-off. `normalization` "loss"/"loss+" are not offered (they need the losses in `combine`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from training.mtl.base import Combination, GramWeighting, GramWeights, Level, check_head_mode
from training.mtl.registry import alias, register
from training.mtl.solvers import min_norm_simplex, normalized_gram

_NORMALIZATIONS = ("none", "l2")


@register
class MGDA(GramWeighting):
    name = "mgda"
    paper = (
        "O. Sener, V. Koltun, Multi-Task Learning as Multi-Objective Optimization, NeurIPS 2018, "
        "https://arxiv.org/abs/1810.04650 (MGDA-UB: mtl.level=feature)"
    )
    level_note = "MGDA-UB (Sener & Koltun) is mtl.level=feature."

    def __init__(
        self,
        num_tasks: int,
        level: Level | str = Level.PARAMETER,
        normalization: str = "none",
        max_iter: int = 250,
        tol: float = 1e-10,
        heads: str = "sum",
    ) -> None:
        super().__init__(num_tasks, level)
        self.heads = check_head_mode("mgda", heads)
        if normalization not in _NORMALIZATIONS:
            raise ValueError(f"mgda: normalization must be one of {_NORMALIZATIONS}, got {normalization!r}")
        if not isinstance(max_iter, int) or max_iter < 1:
            raise ValueError(f"mgda: max_iter must be a positive int, got {max_iter!r}")
        if not tol > 0:
            raise ValueError(f"mgda: tol must be > 0, got {tol!r}")
        self.normalization, self.max_iter, self.tol = normalization, max_iter, float(tol)

    def head_weights(self, combination: Combination) -> Tensor | None:
        """α (the reported weights) when `heads="weighted"`, else None (raw sum)."""
        if self.heads == "sum" or combination.weights is None:
            return None
        return combination.weights.detach().to(torch.float64)

    def gram_weights(self, M: np.ndarray) -> GramWeights:
        scale = np.ones(M.shape[0])
        if self.normalization == "l2":
            norms = np.sqrt(np.maximum(np.diag(M), 0.0))
            # a zero gradient stays zero: dividing by 1 instead of 0 keeps it out of the hull's interior
            scale = np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 1.0)
            M = M * np.outer(scale, scale)
        Mn, s = normalized_gram(M)
        if s == 0.0:
            alpha = np.full(M.shape[0], 1.0 / M.shape[0])
            return GramWeights(alpha * scale, {"solver_iters": 0.0, "kkt_gap": 0.0, "min_norm": 0.0})
        alpha, info = min_norm_simplex(Mn, self.max_iter, self.tol)
        extras = {
            "solver_iters": float(info.iterations),
            "kkt_gap": info.residual,
            "min_norm": float(np.sqrt(max(alpha @ M @ alpha, 0.0))),
        }
        return GramWeights(alpha * scale, extras)


# MGDA-UB (Sener & Koltun's upper-bound surrogate) is MGDA on the feature-level gradients
alias("mgda_ub", "mgda", Level.FEATURE,
      "mgda_ub is mgda at the feature level by definition; use `mgda` for the parameter level.")
