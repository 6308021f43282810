"""Gradient similarity between tasks: GDS (direction), GMS (magnitude) and the conflict ratio.

All measures take a task-gradient matrix `G [T, n]`: parameter-level rows ∂L_i/∂θ_s or feature-level
rows ∂L_i/∂Z flattened over the batch. Everything is derived from the Gram matrix `G Gᵀ`, computed
once (one [T, n] x [n, T] product, the only cost that grows with n).

Zero-norm conventions (a row with ‖g‖ <= eps is "zero"; it happens when a task's loss has no
gradient in that step, e.g. no positive ROI for the mask losses):
- cosine: a pair with a zero row is undefined; the pairwise matrix holds NaN there and GDS averages
  over the defined pairs only; GDS is NaN when no pair is defined.
- GMS: both rows zero -> 1 (equal magnitudes), exactly one zero -> 0 (PCGrad paper's definition).
- conflict: a pair conflicts iff g_i·g_j < 0 strictly, so pairs with a zero row never conflict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

EPS = 1e-12


def _check_matrix(G: Tensor, name: str = "G", min_rows: int = 2) -> None:
    if not isinstance(G, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor [T, n], got {type(G).__name__}")
    if G.dim() != 2:
        raise ValueError(f"{name}: expected a 2-D task-gradient matrix [T, n], got shape {tuple(G.shape)}")
    if G.shape[0] < min_rows:
        raise ValueError(
            f"{name}: expected at least {min_rows} rows (tasks) to compare, got shape {tuple(G.shape)}"
        )


def gram(G: Tensor) -> Tensor:
    """`G Gᵀ` in float64 `[T, T]` (accumulated in G's dtype, at least float32, then widened).

    Raises ValueError if G holds NaN/inf. Checked on the Gram matrix, not on G: its diagonal
    Σ g² is finite iff the row is (barring float32 overflow, itself an error), and a full
    `isfinite(G)` pass over a `[T, 25M]` parameter-level matrix costs 4x the product itself.
    """
    _check_matrix(G, min_rows=1)
    if G.dtype in (torch.float16, torch.bfloat16):
        G = G.float()  # under autocast the gradients may be half precision; never accumulate in it
    M = (G @ G.T).double()
    if not bool(torch.isfinite(M).all()):
        rows = [i for i in range(M.shape[0]) if not bool(torch.isfinite(M[i, i]))]
        raise ValueError(f"G: expected finite gradients, found NaN/inf (or overflow) in rows {rows}")
    return M


def _off_diagonal(T: int, device: torch.device) -> Tensor:
    return ~torch.eye(T, dtype=torch.bool, device=device)


@dataclass(frozen=True)
class GradientSimilarity:
    """Pairwise matrices and their summaries for one task-gradient matrix (see module docstring).

    cosine / magnitude: `[T, T]` float64 (diagonal 1 where defined); conflict: `[T, T]` bool.
    gds / gms / conflict_ratio: means over unordered pairs i < j.
    """

    cosine: Tensor
    magnitude: Tensor
    conflict: Tensor
    norms: Tensor
    gds: float
    gms: float
    conflict_ratio: float

    @classmethod
    def from_gram(cls, M: Tensor, eps: float = EPS) -> GradientSimilarity:
        """Build from a Gram matrix `M = G Gᵀ` `[T, T]` (e.g. one a method already computed)."""
        if M.dim() != 2 or M.shape[0] != M.shape[1] or M.shape[0] < 2:
            raise ValueError(
                f"M: expected a square Gram matrix [T, T] with T >= 2, got shape {tuple(M.shape)}"
            )
        M = M.double()
        T = M.shape[0]
        norms = M.diagonal().clamp_min(0).sqrt()
        zero = norms <= eps
        outer = norms[:, None] * norms[None, :]
        defined = ~(zero[:, None] | zero[None, :])
        cosine = torch.where(defined, M / outer.clamp_min(eps * eps), torch.full_like(M, math.nan))
        cosine = torch.where(defined, cosine.clamp(-1.0, 1.0), cosine)
        squares = norms[:, None] ** 2 + norms[None, :] ** 2
        both_zero = zero[:, None] & zero[None, :]
        magnitude = torch.where(both_zero, torch.ones_like(M), 2 * outer / squares.clamp_min(eps * eps))
        conflict = M < 0
        off = _off_diagonal(T, M.device)
        pairs = T * (T - 1)
        cos_pairs = cosine[off & defined]
        gds = float(cos_pairs.mean()) if cos_pairs.numel() else math.nan
        gms = float(magnitude[off].sum() / pairs)
        cr = float((conflict & off).sum() / pairs)
        return cls(cosine, magnitude, conflict, norms, gds, gms, cr)

    @classmethod
    def from_gradients(cls, G: Tensor, eps: float = EPS) -> GradientSimilarity:
        """Build from a task-gradient matrix `G [T, n]` (T >= 2)."""
        _check_matrix(G)
        return cls.from_gram(gram(G), eps=eps)


def pairwise_cosine(G: Tensor, eps: float = EPS) -> Tensor:
    """`[T, T]` cosine similarities; NaN where either row has zero norm."""
    return GradientSimilarity.from_gradients(G, eps).cosine


def pairwise_gms(G: Tensor, eps: float = EPS) -> Tensor:
    """`[T, T]` magnitude similarities `2‖g_i‖‖g_j‖ / (‖g_i‖² + ‖g_j‖²)` (both zero -> 1, one zero -> 0)."""
    return GradientSimilarity.from_gradients(G, eps).magnitude


def pairwise_conflict(G: Tensor) -> Tensor:
    """`[T, T]` bool: g_i·g_j < 0 (the diagonal is never a conflict)."""
    return GradientSimilarity.from_gradients(G).conflict


def gds(G: Tensor, eps: float = EPS) -> float:
    """Gradient direction similarity: mean cosine over task pairs with non-zero norms (NaN if none)."""
    return GradientSimilarity.from_gradients(G, eps).gds


def gms(G: Tensor, eps: float = EPS) -> float:
    """Gradient magnitude similarity: mean over task pairs of `2‖g_i‖‖g_j‖ / (‖g_i‖² + ‖g_j‖²)`."""
    return GradientSimilarity.from_gradients(G, eps).gms


def conflict_ratio(G: Tensor) -> float:
    """Fraction of unordered task pairs with a strictly negative inner product."""
    return GradientSimilarity.from_gradients(G).conflict_ratio
