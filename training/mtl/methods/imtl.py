"""IMTL: impartial multi-task learning — IMTL-G (`imtl_g`), IMTL-L (`imtl_l`) and the hybrid (`imtl`).

Paper: L. Liu, Y. Li, Z. Kuang, J.-H. Xue, Y. Chen, W. Yang, Q. Liao, W. Zhang, "Towards Impartial
Multi-task Learning", ICLR 2021, https://openreview.net/forum?id=IMPnRXEWpvr.

IMTL-G (gradient combination, stateless): d = Σ α_i g_i with Σα = 1 and equal projections of d on
every unit gradient u_i = g_i/‖g_i‖. Gram form: v = M⁺n with n_i = ‖g_i‖, α = v/Σv (equivalent to the
paper's D, U closed form). α may be negative. Scale: Σα = 1 (mean-like, about 1/T of EW's G.sum(0)),
as LibMTL and torchjd.
  Edge cases: the pseudo-inverse (eigenvalues below λ_max·T·eps dropped, eps = float32's
  epsilon whatever the dtype of G, as torch.linalg.pinv on a float32 Gram matrix) gives a finite
  least-norm answer for parallel rows, and a zero row gets α_i = 0 (IMTL-G of the other tasks);
  when n lies in M's null space (|Σv| ≈ 0, e.g. exactly opposite gradients for T = 2, or all-zero G)
  no d ≠ 0 has equal projections: α = 0, d = 0.
IMTL-L (loss weighting, level-free): learnable s (init 0, a parameter the trainer optimises),
objective Σ_i (e^{s_i} L_i − s_i); weights e^{s}; stationary point e^{s_i} = 1/L_i.
IMTL (hybrid, LibMTL `IMTL`): the losses are scaled by IMTL-L (e^{s_i} L_i), IMTL-G combines the
gradients of the scaled losses (effective weights α_i e^{s_i} on the raw g_i), the heads get the
gradients of the scaled losses Σ e^{s_i} ∇_{θ_h} L_i, and s gets the IMTL-L gradient e^{s_i} L_i − 1.
State: s (parameter) for `imtl_l` and `imtl`, in `state_dict`.
Departures: the Gram/pseudo-inverse form replaces LibMTL's matrix inverse, which raises for parallel
gradients and returns NaN for a zero gradient.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from training.mtl.base import Combination, GramWeighting, GramWeights, Level, LossWeighting, StepReport
from training.mtl.context import StepContext
from training.mtl.registry import register
from training.mtl.solvers import RANK_EPS, normalized_gram

_PAPER = (
    "L. Liu, Y. Li, Z. Kuang, J.-H. Xue, Y. Chen, W. Yang, Q. Liao, W. Zhang, Towards Impartial "
    "Multi-task Learning, ICLR 2021, https://openreview.net/forum?id=IMPnRXEWpvr"
)


def imtl_g_weights(M: np.ndarray, eps: float) -> np.ndarray:
    """IMTL-G's α `[T]` (Σα = 1, or zeros when undefined) for a Gram matrix `M [T, T]`."""
    T = M.shape[0]
    Mn, s = normalized_gram(M)
    if s == 0.0:
        return np.zeros(T)
    lam, V = np.linalg.eigh(Mn)
    keep = lam > lam[-1] * T * eps
    n = np.sqrt(np.maximum(np.diag(Mn), 0.0))
    v = (V[:, keep] / lam[keep]) @ (V[:, keep].T @ n)  # M⁺ n on the kept eigenspace
    total = float(v.sum())
    if abs(total) <= 1e-12 * max(1.0, float(np.abs(v).sum())):
        return np.zeros(T)
    return v / total


@register
class IMTLG(GramWeighting):
    name = "imtl_g"
    paper = _PAPER + " (IMTL-G)"

    def gram_weights(self, M: np.ndarray) -> GramWeights:
        return GramWeights(imtl_g_weights(M, RANK_EPS))


@register
class IMTLL(LossWeighting):
    name = "imtl_l"
    paper = _PAPER + " (IMTL-L)"

    def __init__(self, num_tasks: int, level: Level | str = Level.PARAMETER) -> None:
        super().__init__(num_tasks, level)
        self.s = torch.nn.Parameter(torch.zeros(num_tasks))

    def weights(self, losses: Tensor) -> Tensor:
        return self.s.detach().exp().to(losses)

    def objective(self, losses: Tensor) -> Tensor:
        s = self.s.to(losses.dtype)
        return (s.exp() * losses - s).sum()


@register
class IMTL(GramWeighting):
    name = "imtl"
    paper = _PAPER + " (hybrid IMTL-L + IMTL-G)"

    def __init__(self, num_tasks: int, level: Level | str = Level.PARAMETER) -> None:
        super().__init__(num_tasks, level)
        self.s = torch.nn.Parameter(torch.zeros(num_tasks))

    def _scales(self) -> np.ndarray:
        return self.s.detach().double().exp().cpu().numpy()

    def gram_weights(self, M: np.ndarray) -> GramWeights:
        scale = self._scales()
        alpha = imtl_g_weights(M * np.outer(scale, scale), RANK_EPS)  # Gram of the scaled gradients
        return GramWeights(alpha * scale)  # weights on the raw gradients

    def head_weights(self, combination: Combination) -> Tensor:
        return self.s.detach().exp()

    def backward(self, ctx: StepContext) -> StepReport:
        report = super().backward(ctx)
        # IMTL-L's gradient for s: ∂/∂s_i Σ (e^{s_i} L_i − s_i) = e^{s_i} L_i − 1 (losses are constants here)
        s = self.s
        ((s.exp() * ctx.losses.detach().to(s.dtype) - s).sum()).backward()
        return report
