"""CAGrad: conflict-averse gradient descent.

Paper: B. Liu, X. Liu, X. Jin, P. Stone, Q. Liu, "Conflict-Averse Gradient Descent for Multi-task
Learning", NeurIPS 2021, https://arxiv.org/abs/2110.14048.

Update: g0 = mean_i g_i, √φ = c‖g0‖; w* = argmin_{w∈Δ} g_wᵀg0 + √φ‖g_w‖ (g_w = Gᵀw), i.e. in Gram
form wᵀM1/T + c√(1ᵀM1)/T · √(wᵀMw); d = g0 + (√φ/‖g_w*‖) g_w*. Rescale: 0 keeps d, 1 divides by
1 + c², 2 by 1 + c. Finally ×T, as the official NYUv2 code ("to match the sum loss"), so that c = 0
gives exactly EW's G.sum(0). Weights: α = T(1/T + (√φ/‖g_w‖) w*)/rescale.
Solver: projected gradient with Armijo backtracking on the simplex in float64 on the Gram matrix
normalised by its largest diagonal (training/mtl/solvers.py), 500 iterations max; no scipy.
Hyperparameters: c 0.4 (official run.sh, nash-mtl), rescale 1 (official, nash-mtl). LibMTL uses
c 0.5; set `mtl.c=0.5` to match it. Stateless.
Scale: sum-based (official ×T): c = 0 → G.sum(0); with conflicts the /(1+c²) rescale keeps ‖d‖ in
EW's range.
Edge cases: when ‖g_w*‖ ≈ 0 (the hull contains 0, e.g. a zero gradient row or exactly opposite
rows), the √φ g_w/‖g_w‖ term is dropped (the official code's +1e-8 denominator has the same effect):
d = T·g0/rescale. All-zero G gives d = 0.
Departures: SLSQP is replaced by projected gradient (same convex problem; tests compare the
objective with a brute-force grid for T = 2, 3).
"""

from __future__ import annotations

import numpy as np

from training.mtl.base import GramWeighting, GramWeights, Level
from training.mtl.registry import register
from training.mtl.solvers import cagrad_weights, normalized_gram

#: ‖g_w‖² below this (relative to the largest ‖g_i‖²) counts as the hull containing 0
_ZERO_NORM2 = 1e-16


@register
class CAGrad(GramWeighting):
    name = "cagrad"
    paper = (
        "B. Liu, X. Liu, X. Jin, P. Stone, Q. Liu, Conflict-Averse Gradient Descent for Multi-task "
        "Learning, NeurIPS 2021, https://arxiv.org/abs/2110.14048"
    )

    def __init__(
        self, num_tasks: int, level: Level | str = Level.PARAMETER, c: float = 0.4, rescale: int = 1
    ) -> None:
        super().__init__(num_tasks, level)
        if not c >= 0.0:
            raise ValueError(f"cagrad: c must be >= 0, got {c!r}")
        if rescale not in (0, 1, 2):
            raise ValueError(f"cagrad: rescale must be 0, 1 or 2, got {rescale!r}")
        self.c, self.rescale = float(c), int(rescale)

    def gram_weights(self, M: np.ndarray) -> GramWeights:
        T = M.shape[0]
        divisor = (1.0, 1.0 + self.c**2, 1.0 + self.c)[self.rescale]
        alpha = np.full(T, 1.0 / T)
        extras: dict[str, float] = {}
        Mn, s = normalized_gram(M)
        if s > 0.0 and self.c > 0.0:
            w, info = cagrad_weights(Mn, self.c)
            gw_norm2 = float(w @ Mn @ w)
            kappa = self.c * np.sqrt(max(float(Mn.sum()), 0.0)) / T  # √φ on the normalised scale
            extras = {"objective": info.residual, "solver_iters": float(info.iterations)}
            if gw_norm2 > _ZERO_NORM2:
                alpha = alpha + (kappa / np.sqrt(gw_norm2)) * w
        return GramWeights(T * alpha / divisor, extras)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, c={self.c}, rescale={self.rescale}"
