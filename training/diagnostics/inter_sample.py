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

    @classmethod
    def from_sums(cls, sums: Tensor) -> InterSimilarity:
        """The measures from `inter_similarity_sums` (possibly summed over parts of a batch / ranks)."""
        v = [float(x) for x in sums.detach().double().cpu()]
        n = 2 * len(_ORDER)
        if len(v) != n:
            raise ValueError(f"sums: expected {n} values (sum, count per measure), got {len(v)}")
        means = {k: (v[2 * i] / v[2 * i + 1] if v[2 * i + 1] > 0 else math.nan) for i, k in enumerate(_ORDER)}
        return cls(**means)


#: the measures in the order of `inter_similarity_sums`
_ORDER = (
    "inter_task_cos", "inter_task_gms", "inter_task_sign_conflict",
    "inter_sample_cos", "inter_sample_gms", "inter_sample_sign_conflict",
)  # fmt: skip


def _pooled(G: Tensor, eps: float) -> list[float]:
    """[Σ cos, #pairs, Σ magnitude similarity, #pairs] over the off-diagonal pairs of each group of
    `G [K, R, n]` (cosine: pairs with non-zero norms only)."""
    K, R, _ = G.shape
    if R < 2:
        return [0.0, 0.0, 0.0, 0.0]
    M = torch.bmm(G, G.transpose(1, 2)).double()  # [K, R, R]
    norms = M.diagonal(dim1=1, dim2=2).clamp_min(0).sqrt()  # [K, R]
    zero = norms <= eps
    off = ~torch.eye(R, dtype=torch.bool, device=G.device)
    outer = norms[:, :, None] * norms[:, None, :]
    defined = off & ~(zero[:, :, None] | zero[:, None, :])
    cos = (M / outer.clamp_min(eps * eps)).clamp(-1, 1)
    squares = norms[:, :, None] ** 2 + norms[:, None, :] ** 2
    both_zero = zero[:, :, None] & zero[:, None, :]
    mag = torch.where(both_zero, torch.ones_like(M), 2 * outer / squares.clamp_min(eps * eps))
    pairs = off.expand(K, R, R)
    return [float(cos[defined].sum()), float(defined.sum()), float(mag[pairs].sum()), float(pairs.sum())]


#: columns per chunk of the sign-conflict counts (float32 counts stay exact below 2^24)
_SIGN_CHUNK = 1 << 20


def _pooled_sign_conflict(G: Tensor) -> list[float]:
    """[Σ sign-conflict ratio, #pairs] over the off-diagonal pairs (with a coordinate where both have a
    sign) of each group of `G [K, R, n]`."""
    K, R, n = G.shape
    if R < 2:
        return [0.0, 0.0]
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
    return [float((conflicts[defined] / signed[defined]).sum()), float(defined.sum())]


def _checked(G: Tensor) -> Tensor:
    if not isinstance(G, Tensor) or G.dim() != 3:
        shape = tuple(G.shape) if isinstance(G, Tensor) else type(G).__name__
        raise ValueError(f"G_per_sample: expected a tensor [T, B, n], got {shape}")
    if G.shape[0] < 2:
        raise ValueError(f"G_per_sample: expected T >= 2 tasks in dim 0, got shape {tuple(G.shape)}")
    if not bool(torch.isfinite(G).all()):
        raise ValueError("G_per_sample: expected finite gradients, found NaN/inf")
    return G.float() if G.dtype in (torch.float16, torch.bfloat16) else G  # never accumulate in half


def inter_similarity_sums(G_per_sample: Tensor, eps: float = EPS) -> Tensor:
    """float64 `[12]`: (sum, number of pairs) of each measure of `InterSimilarity`, in the order of its
    fields. Sums of parts of a batch (e.g. one per rank) pool their pairs: `InterSimilarity.from_sums`."""
    G = _checked(G_per_sample)
    with torch.no_grad():
        by_sample = G.transpose(0, 1)  # groups = samples, rows = tasks
        task = _pooled(by_sample, eps)
        sample = _pooled(G, eps)  # groups = tasks, rows = samples
        values = task + _pooled_sign_conflict(by_sample) + sample + _pooled_sign_conflict(G)
    return torch.tensor(values, dtype=torch.float64)


def inter_task_vs_inter_sample(G_per_sample: Tensor, eps: float = EPS) -> InterSimilarity:
    """Similarity between tasks on the same sample vs between samples on the same task.

    G_per_sample: `[T, B, n]` per-task, per-sample gradients: w.r.t. the shared parameters
    (`per_sample_param_grads`, the study's definition) or the shared features (`per_sample_view`).
    """
    return InterSimilarity.from_sums(inter_similarity_sums(G_per_sample, eps))


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
