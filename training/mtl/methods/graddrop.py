"""GradDrop: gradient sign dropout.

Paper: Z. Chen, J. Ngiam, Y. Huang, T. Luong, H. Kretzschmar, Y. Chai, D. Anguelov, "Just Pick a
Sign: Optimizing Deep Multitask Models with Gradient Sign Dropout", NeurIPS 2020,
https://arxiv.org/abs/2010.06808.

Feature level (the paper's form, the natural level): with ∇_i = ∂L_i/∂Z per FPN level `[B, ...]`,
ĝ_i = Σ_batch sign(Z) ∘ ∇_i; purity P = ½(1 + Σ_i ĝ_i / Σ_i |ĝ_i|) element-wise; U ~ Unif(0, 1) per
element; M_i = 1[P > U]·1[ĝ_i > 0] + 1[P < U]·1[ĝ_i < 0]; the gradient at Z is
Σ_i (ℓ + (1 − ℓ) M_i) ∘ ∇_i (masks broadcast over the batch), then one backward through the backbone.
Parameter level (documented form, torchjd `GradDrop`): the same on the rows of G = ∂L/∂θ_s with
sign(Z) ≡ 1 and no batch reduction (ĝ_i = g_i, one U per parameter element).
Under data parallelism the feature level uses Z and ∂L/∂Z of the global batch (`ctx.feature_values()`
and the gathered G_Z share one column layout), so every rank draws the same masks as one process.
Hyperparameters: leak ℓ 0.0 (LibMTL, torchjd). Stochastic: U from `torch.rand` on G's device (torch's
global/CUDA RNG, checkpointed by the trainer). Stateless. Not a linear combination: no weights.
Scale: sum (ℓ = 1 gives EW's G.sum(0) exactly; with ℓ = 0, each element keeps the tasks of one sign).
Edge cases: where Σ_i |ĝ_i| = 0 the purity is 0.5 and every mask is 0 there (all ĝ_i are 0), so no
division by zero and no ε; a zero row contributes nothing.
Departures: no ε in P's denominator (LibMTL adds 1e-7, which biases P towards ½ for gradients of
norm ≲ 1e-7); masks use sign(Z) only to decide, the gradients passed on are the raw ∇_i (Pylon
multiplies them by sign(Z) in place, which flips them where Z < 0).
"""

from __future__ import annotations

import torch
from torch import Tensor

from training.mtl.base import Combination, GradientCombination, Level
from training.mtl.context import StepContext
from training.mtl.registry import register


def _drop(signed: Tensor, grads: Tensor, leak: float) -> Tensor:
    """Σ_i (ℓ + (1−ℓ)M_i) ∘ grads_i for sign-corrected gradients `signed [T, k]`, `grads [T, B, k]`."""
    pos = signed.sum(0)
    mag = signed.abs().sum(0)
    purity = 0.5 * (1.0 + torch.where(mag > 0, pos / torch.where(mag > 0, mag, torch.ones_like(mag)), 0.0))
    u = torch.rand(purity.shape, dtype=signed.dtype, device=signed.device)
    keep = ((purity > u) & (signed > 0)) | ((purity < u) & (signed < 0))  # [T, k]
    factor = leak + (1.0 - leak) * keep.to(grads.dtype)
    return (factor.unsqueeze(1) * grads).sum(0)  # [B, k]


@register
class GradDrop(GradientCombination):
    name = "graddrop"
    paper = (
        "Z. Chen, J. Ngiam, Y. Huang, T. Luong, H. Kretzschmar, Y. Chai, D. Anguelov, Just Pick a Sign: "
        "Optimizing Deep Multitask Models with Gradient Sign Dropout, NeurIPS 2020, "
        "https://arxiv.org/abs/2010.06808"
    )
    stochastic = True
    level_note = (
        "feature level is the paper's form (masks from sign(Z), batch-reduced); parameter level is the "
        "documented torchjd form (sign(Z) = 1, no batch reduction)."
    )

    def __init__(self, num_tasks: int, level: Level | str = Level.PARAMETER, leak: float = 0.0) -> None:
        super().__init__(num_tasks, level)
        if not 0.0 <= leak <= 1.0:
            raise ValueError(f"graddrop: leak must be in [0, 1], got {leak!r}")
        self.leak = float(leak)

    def combine(self, G: Tensor) -> Combination:
        """Parameter-level form: sign(Z) ≡ 1, no batch reduction."""
        self.check_task_matrix(G)
        return Combination(direction=_drop(G, G.unsqueeze(1), self.leak).reshape(-1))

    def combine_features(self, G_Z: Tensor, ctx: StepContext) -> Combination:
        """Paper form on ∂L/∂Z: masks from Σ_batch sign(Z) ∘ ∇_i per FPN level."""
        self.check_task_matrix(G_Z)
        feats = ctx.feature_values()  # laid out like G_Z's columns (the global batch under DDP)
        total = sum(z.numel() for z in feats)
        if G_Z.shape[1] != total:
            raise ValueError(
                f"graddrop: G_Z has {G_Z.shape[1]} columns but the features hold {total} elements"
            )
        out, offset = [], 0
        for z in feats:
            batch = z.shape[0] if z.dim() > 1 else 1
            grads = G_Z[:, offset : offset + z.numel()].reshape(self.num_tasks, batch, -1)  # [T, B, k]
            sign = torch.sign(z).reshape(1, batch, -1).to(grads.dtype)
            out.append(_drop((sign * grads).sum(1), grads, self.leak).reshape(-1))
            offset += z.numel()
        return Combination(direction=torch.cat(out))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, leak={self.leak}"
