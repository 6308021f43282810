"""Inter-task vs inter-sample gradient similarity (the second study's measure).

Given per-sample feature gradients `G [T, B, n]` (row (i, b) = ∂L_i/∂Z_b, the part of Z that sample b
produced), compare
- inter-task: tasks with each other on the same sample (T x T pairs per sample, averaged over samples);
- inter-sample: samples with each other on the same task (B x B pairs per task, averaged over tasks).
If tasks conflict more than samples do, the problem is a multi-task one; if samples disagree as much as
tasks, task balancing is not what limits training.

Both use the conventions of `gradient_similarity` (cosine over pairs with non-zero norms; magnitude
similarity 1 for two zero rows and 0 for one). All pairs of all groups are pooled before averaging, so
every pair weighs the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from training.diagnostics.gradient_similarity import EPS


@dataclass(frozen=True)
class InterSimilarity:
    """Mean cosine and magnitude similarity between tasks (same sample) and between samples (same task).

    Values are NaN where undefined (B < 2 for inter-sample; no pair with non-zero norms for cosine).
    """

    inter_task_cos: float
    inter_task_gms: float
    inter_sample_cos: float
    inter_sample_gms: float

    def as_dict(self, prefix: str = "diag/") -> dict[str, float]:
        return {f"{prefix}{k}": v for k, v in self.__dict__.items()}


def _pooled(G: Tensor, eps: float) -> tuple[float, float]:
    """Mean cosine / magnitude similarity over the off-diagonal pairs of each group of `G [K, R, n]`."""
    K, R, _ = G.shape
    if R < 2:
        return math.nan, math.nan
    M = torch.bmm(G, G.transpose(1, 2)).double()  # [K, R, R]
    norms = M.diagonal(dim1=1, dim2=2).clamp_min(0).sqrt()  # [K, R]
    zero = norms <= eps
    off = ~torch.eye(R, dtype=torch.bool, device=G.device)
    outer = norms[:, :, None] * norms[:, None, :]
    defined = off & ~(zero[:, :, None] | zero[:, None, :])
    cos = (M / outer.clamp_min(eps * eps)).clamp(-1, 1)
    cos_mean = float(cos[defined].mean()) if bool(defined.any()) else math.nan
    squares = norms[:, :, None] ** 2 + norms[:, None, :] ** 2
    both_zero = zero[:, :, None] & zero[:, None, :]
    mag = torch.where(both_zero, torch.ones_like(M), 2 * outer / squares.clamp_min(eps * eps))
    return cos_mean, float(mag[off.expand(K, R, R)].mean())


def inter_task_vs_inter_sample(G_Z_per_sample: Tensor, eps: float = EPS) -> InterSimilarity:
    """Similarity between tasks on the same sample vs between samples on the same task.

    G_Z_per_sample: `[T, B, n]` per-task, per-sample feature gradients (see `per_sample_view`).
    """
    G = G_Z_per_sample
    if not isinstance(G, Tensor) or G.dim() != 3:
        shape = tuple(G.shape) if isinstance(G, Tensor) else type(G).__name__
        raise ValueError(f"G_Z_per_sample: expected a tensor [T, B, n], got {shape}")
    if G.shape[0] < 2:
        raise ValueError(f"G_Z_per_sample: expected T >= 2 tasks in dim 0, got shape {tuple(G.shape)}")
    if not bool(torch.isfinite(G).all()):
        raise ValueError("G_Z_per_sample: expected finite gradients, found NaN/inf")
    if G.dtype in (torch.float16, torch.bfloat16):
        G = G.float()  # never accumulate inner products in half precision
    with torch.no_grad():
        task_cos, task_gms = _pooled(G.transpose(0, 1), eps)  # groups = samples, rows = tasks
        sample_cos, sample_gms = _pooled(G, eps)  # groups = tasks, rows = samples
    return InterSimilarity(task_cos, task_gms, sample_cos, sample_gms)


def per_sample_view(G_Z: Tensor, features: list[Tensor] | tuple[Tensor, ...]) -> Tensor:
    """`[T, m]` feature gradients (flattened over the batch, level after level) -> `[T, B, n]`.

    `features` are the tensors Z was flattened from (each `[B, ...]`, same B); n = Σ_levels numel/B.
    """
    if not features:
        raise ValueError("features: expected the list of shared feature tensors [B, ...], got none")
    B = features[0].shape[0]
    sizes = [f.numel() for f in features]
    if any(f.shape[0] != B for f in features):
        raise ValueError(
            f"features: expected the same batch size in dim 0, got {[f.shape[0] for f in features]}"
        )
    if G_Z.dim() != 2 or G_Z.shape[1] != sum(sizes):
        raise ValueError(
            f"G_Z: expected [T, {sum(sizes)}] (the flattened features), got shape {tuple(G_Z.shape)}"
        )
    T = G_Z.shape[0]
    parts = torch.split(G_Z, sizes, dim=1)
    return torch.cat([p.reshape(T, B, -1) for p in parts], dim=2)
