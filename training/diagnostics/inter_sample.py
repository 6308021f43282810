"""Inter-task vs inter-sample gradient similarity (the second study's measure, Elich et al.).

Given per-sample task gradients `G [T, B, n]` (row (i, b) = the gradient of task i's loss through
sample b), compare
- inter-task: tasks with each other on the same sample (T x T pairs per sample, averaged over samples);
- inter-sample: samples with each other on the same task (B x B pairs per task, averaged over tasks).
If tasks conflict more than samples do, the problem is a multi-task one; if samples disagree as much as
tasks, task balancing is not what limits training.

Two versions, by what the rows are gradients of:
- parameter level (the study's: gradients w.r.t. the SHARED PARAMETERS): `per_sample_param_grads`
  backpropagates each task's ∂L_i/∂Z, restricted to sample b's part of Z, through the backbone
  (T·B vector-Jacobian products, and T·B·P numbers held at once). With a backbone that treats samples
  independently (FrozenBatchNorm, as AmodalRCNN's default) Σ_b g_ib = ∂L_i/∂θ_s exactly (tested).
- feature level (cheap, NOT the study's): rows are ∂L_i/∂Z_b (`per_sample_view`); on the same batch
  the two can differ a lot (the review measured inter-sample cosine 0.13 at the feature level vs
  0.70 at the parameter level), so they are logged under different names.

Measures per pair of rows (conventions of `gradient_similarity`: cosine over pairs with non-zero
norms; magnitude similarity 1 for two zero rows and 0 for one) and the element-wise sign conflict
`#{k : g_k·g'_k < 0} / #{k : g_k ≠ 0 and g'_k ≠ 0}`, the share of the coordinates where both
gradients have a sign on which the signs differ (0.5 for independent random signs; a pair with no
such coordinate is left out). All pairs of all groups are pooled before averaging, so every pair
weighs the same. The study's text was not reachable from this project; the sign-conflict
denominator (coordinates where both are non-zero, so that sparsity does not read as agreement) is
this implementation's choice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
    inter_task_sign_conflict: float = math.nan
    inter_sample_sign_conflict: float = math.nan

    def as_dict(self, prefix: str = "diag/", suffix: str = "") -> dict[str, float]:
        return {f"{prefix}{k}{suffix}": v for k, v in self.__dict__.items()}


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


#: columns per chunk of the sign-conflict counts (float32 counts stay exact below 2^24)
_SIGN_CHUNK = 1 << 20


def _pooled_sign_conflict(G: Tensor) -> float:
    """Mean element-wise sign-conflict ratio over the off-diagonal pairs of each group of `G [K, R, n]`."""
    K, R, n = G.shape
    if R < 2:
        return math.nan
    conflicts = torch.zeros(K, R, R, dtype=torch.float64, device=G.device)
    signed = torch.zeros(K, R, R, dtype=torch.float64, device=G.device)
    for start in range(0, n, _SIGN_CHUNK):
        block = G[:, :, start : start + _SIGN_CHUNK]
        pos, neg = (block > 0).float(), (block < 0).float()
        conflicts += (torch.bmm(pos, neg.transpose(1, 2)) + torch.bmm(neg, pos.transpose(1, 2))).double()
        nonzero = pos + neg
        signed += torch.bmm(nonzero, nonzero.transpose(1, 2)).double()
    off = ~torch.eye(R, dtype=torch.bool, device=G.device)
    defined = off & (signed > 0)
    if not bool(defined.any()):
        return math.nan
    return float((conflicts[defined] / signed[defined]).mean())


def inter_task_vs_inter_sample(G_per_sample: Tensor, eps: float = EPS) -> InterSimilarity:
    """Similarity between tasks on the same sample vs between samples on the same task.

    G_per_sample: `[T, B, n]` per-task, per-sample gradients: w.r.t. the shared parameters
    (`per_sample_param_grads`, the study's definition) or the shared features (`per_sample_view`).
    """
    G = G_per_sample
    if not isinstance(G, Tensor) or G.dim() != 3:
        shape = tuple(G.shape) if isinstance(G, Tensor) else type(G).__name__
        raise ValueError(f"G_per_sample: expected a tensor [T, B, n], got {shape}")
    if G.shape[0] < 2:
        raise ValueError(f"G_per_sample: expected T >= 2 tasks in dim 0, got shape {tuple(G.shape)}")
    if not bool(torch.isfinite(G).all()):
        raise ValueError("G_per_sample: expected finite gradients, found NaN/inf")
    if G.dtype in (torch.float16, torch.bfloat16):
        G = G.float()  # never accumulate inner products in half precision
    with torch.no_grad():
        by_sample = G.transpose(0, 1)  # groups = samples, rows = tasks
        task_cos, task_gms = _pooled(by_sample, eps)
        sample_cos, sample_gms = _pooled(G, eps)  # groups = tasks, rows = samples
        task_sign, sample_sign = _pooled_sign_conflict(by_sample), _pooled_sign_conflict(G)
    return InterSimilarity(task_cos, task_gms, sample_cos, sample_gms, task_sign, sample_sign)


def per_sample_param_grads(
    G_Z: Tensor, features: Sequence[Tensor], shared_params: Sequence[torch.nn.Parameter]
) -> Tensor:
    """`[T, B, P]`: row (i, b) = task i's gradient w.r.t. the shared parameters through sample b.

    G_Z `[T, m]` are the per-task feature gradients flattened level after level (StepContext
    `feature_grads()`); `features` the tensors Z (each `[B, ...]`, with their graph to the shared
    parameters, which must still be alive). One vector-Jacobian product per (task, sample): T·B
    backbone backwards and T·B·P numbers in G_Z's dtype (at least float32). Unused parameters get zeros.
    """
    feats, shared = list(features), list(shared_params)
    view = per_sample_view(G_Z, feats)  # validates the shapes; [T, B, n]
    T, B = view.shape[:2]
    sizes = [f.numel() // B for f in feats]
    dtype = torch.float32 if G_Z.dtype in (torch.float16, torch.bfloat16) else G_Z.dtype
    P = sum(p.numel() for p in shared)
    out = torch.zeros(T, B, P, dtype=dtype, device=G_Z.device)
    for i in range(T):
        parts = torch.split(view[i], sizes, dim=1)  # per level [B, n_level]
        for b in range(B):
            cot = []
            for part, f in zip(parts, feats):
                c = torch.zeros_like(f)
                c[b] = part[b].reshape(f.shape[1:]).to(f.dtype)
                cot.append(c)
            grads = torch.autograd.grad(feats, shared, grad_outputs=cot, retain_graph=True, allow_unused=True)
            offset = 0
            for g, p in zip(grads, shared):
                if g is not None:
                    out[i, b, offset : offset + p.numel()] = g.reshape(-1).to(dtype)
                offset += p.numel()
    return out


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
