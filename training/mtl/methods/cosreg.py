"""CosReg: orthogonal-gradient regularisation.

Paper: Mihai Suteu, Yike Guo, "Regularizing Deep Multi-Task Networks using Orthogonal Gradients",
arXiv 2019, https://arxiv.org/abs/1912.06844

Update: total = Σ_i L_i + λ·R with R = mean_{i≠j} cos²(g_i, g_j), where the task gradients g_i are
built with `create_graph=True` so that backpropagating R is a true double backward (Pylon computes them
without a graph, so its R is a constant and it trains like EW — the pitfall avoided here).
- feature level (cheap): g_i = ∂L_i/∂Z (Z flattened over the batch); ∂R/∂θ flows back through the
  heads' second derivatives into Z and then through the backbone with the single final backward.
- parameter level: g_i = ∂L_i/∂θ_s = J_Zᵀ ∂L_i/∂Z built with a graph (a double backward through the
  backbone as well; about 2–3× the memory and time of the feature level).
Cosines are computed from the Gram matrix of row-rescaled gradients, cos²_ij = M_ij² / (M_ii M_jj + tiny)
with g̃_i = g_i / sg(max|g_i|): cos is invariant to a positive rescaling of each row, so the value and
its gradient are unchanged, while huge (1e8) or tiny (1e-8) gradients neither overflow nor underflow,
and a zero gradient row contributes cos = 0 with a zero (not NaN) derivative — no square root is taken.
Hyperparameters: λ = 10.0 (`penalty`; Pylon's default, the only known implementation; the paper's
value is not confirmed).
Statefulness: stateless, deterministic.
Scale: the loss part is EW's `G.sum(0)`; R is bounded in [0, 1].
Requirement: every op between Z and the losses must support double backward. torchvision's
`roi_align` does not; AmodalRCNN's ROI poolers therefore use a twice-differentiable roi_align while
training (training/model/roi_align_2nd.py), so CosReg runs on the real network at both levels. On a
network with an op lacking double backward, CosReg stops with a RuntimeError saying so instead of
silently dropping the regulariser's gradient.
Departures: the squared, mean-over-pairs form of R follows Pylon (the paper's exact form is not
confirmed). Heads receive ∇(Σ L_i + λR) (the regulariser is part of the loss).
"""

from __future__ import annotations

import torch
from torch import Tensor

from training.mtl.base import Level, MTLMethod, StepReport, working_precision
from training.mtl.context import NonFiniteError, StepContext
from training.mtl.registry import register

_TINY = 1e-30


def mean_squared_cosine(G: Tensor) -> Tensor:
    """R = mean over ordered pairs i≠j of cos²(g_i, g_j) for rows of `G [T, n]`; 0 when T = 1.

    Differentiable (keeps the graph of G); finite for zero rows and any scale.
    """
    T = G.shape[0]
    if T < 2:
        return G.sum() * 0.0
    scale = G.detach().abs().amax(dim=1, keepdim=True)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    Gs = G / scale
    M = Gs @ Gs.T
    diag = torch.diagonal(M)
    tiny = torch.finfo(G.dtype).tiny if G.dtype in (torch.float32, torch.float64) else _TINY
    cos2 = M.pow(2) / (diag[:, None] * diag[None, :] + tiny)
    off = ~torch.eye(T, dtype=torch.bool, device=G.device)
    return cos2[off].mean()


@register
class CosReg(MTLMethod):
    name = "cosreg"
    kind = "regularizer"
    levels = (Level.PARAMETER, Level.FEATURE)
    paper = (
        "Suteu, Guo, Regularizing Deep Multi-Task Networks using Orthogonal Gradients, arXiv 2019, "
        "https://arxiv.org/abs/1912.06844"
    )
    cost = "T with graph + 1 double backward (parameter level through the backbone)"

    def __init__(self, num_tasks: int, level: Level | str = Level.PARAMETER, penalty: float = 10.0) -> None:
        super().__init__(num_tasks, level)
        if not penalty >= 0:
            raise ValueError(f"cosreg: penalty (λ) must be >= 0, got {penalty!r}")
        self.penalty = float(penalty)

    def task_gradients(self, ctx: StepContext) -> Tensor:
        """Rows g_i `[T, n]` with a graph (feature or parameter level)."""
        leaves = list(ctx.feature_leaves)
        feats = list(ctx.features)
        shared = list(ctx.shared_params)
        rows = []
        for i in range(ctx.num_tasks):
            raw = torch.autograd.grad(
                ctx.losses[i], leaves, create_graph=True, retain_graph=True, allow_unused=True
            )
            gz = [g if g is not None else torch.zeros_like(z) for z, g in zip(leaves, raw)]
            if self.level is Level.FEATURE:
                rows.append(torch.cat([g.reshape(-1) for g in gz]))
                continue
            raw = torch.autograd.grad(feats, shared, grad_outputs=gz, create_graph=True, retain_graph=True,
                                      allow_unused=True)
            gp = [g if g is not None else torch.zeros_like(p) for p, g in zip(shared, raw)]
            rows.append(torch.cat([g.reshape(-1) for g in gp]))
        return torch.stack(rows)

    def backward(self, ctx: StepContext) -> StepReport:
        ctx.check_losses_finite()
        G = self.task_gradients(ctx)
        if not bool(torch.isfinite(G.detach()).all()):
            raise NonFiniteError("cosreg: non-finite task gradient")
        R = mean_squared_cosine(working_precision(G))  # never in bf16/fp16 (differentiable cast)
        total = ctx.losses.sum() + self.penalty * R.to(ctx.losses.dtype)
        if not torch.isfinite(total):
            raise NonFiniteError(f"cosreg: non-finite total loss {float(total)}")
        leaves = list(ctx.feature_leaves)
        for z in leaves:
            z.grad = None
        # retain_graph: at the parameter level R's graph runs through the backbone's forward graph,
        # which the second backward (leaf gradients through the backbone) still needs.
        try:
            total.backward(retain_graph=True)
        except RuntimeError as exc:
            if "double backward" not in str(exc):
                raise
            raise RuntimeError(
                f"cosreg: the network does not support the double backward CosReg needs ({exc}). "
                "CosReg differentiates the task gradients, i.e. backpropagates through the backward of "
                "every head op, so it runs only on networks whose heads are twice differentiable "
                "(torchvision's roi_align is not; AmodalRCNN's training-time ROI poolers use "
                "training.model.roi_align_2nd instead)."
            ) from exc
        grads = [z.grad if z.grad is not None else torch.zeros_like(z) for z in leaves]
        torch.autograd.backward(list(ctx.features), grad_tensors=grads)
        ctx.release()
        return StepReport(weights=None, extras={"cosreg_R": float(R.detach())})
