"""GradNorm: gradient normalisation for adaptive loss balancing.

Paper: Zhao Chen, Vijay Badrinarayanan, Chen-Yu Lee, Andrew Rabinovich, "GradNorm: Gradient
Normalization for Adaptive Loss Balancing in Deep Multitask Networks", ICML 2018,
https://arxiv.org/abs/1711.02257

Update (per step, with the current weights w ≥ 0, Σw = T):
    n_i = ‖∇ L_i‖ (feature level: w.r.t. the shared representation Z, via `ctx.feature_grads()`; the
    paper's "last shared layer" — parameter level: w.r.t. all shared parameters),
    G_i = w_i n_i,  Ḡ = mean_i G_i,  L̃_i = L_i / L_i(0),  r_i = L̃_i / mean(L̃),
    L_grad = Σ_i |G_i − sg(Ḡ r_i^α)|,  ∂L_grad/∂w_i = sign(G_i − target_i) · n_i  (w enters linearly).
The network is updated with Σ w_i L_i (w before this step's update; heads weighted too). Then w is
updated explicitly: w ← w − w_lr · (∂L_grad/∂w) / mean(n), clamped at 0 (no negative weights) and
renormalised to Σw = T. Half-precision gradients (bf16 autocast) are promoted to float32 first.
Hyperparameters: α = 1.5 (the paper's NYUv2 value; LibMTL and Pylon use 1.5), w_lr = 0.025.
Statefulness: stateful — buffers w, L(0) (the task losses of the first step) and an "initialised" flag.
Scale: Σw = T, the scale of EW's `G.sum(0)`.
Guards: L(0) and mean(L̃) are clamped to ≥ 1e-12 (no division by zero; a zero initial loss gives a
huge but finite ratio); negative losses are clamped to 0 inside r^α; when every gradient norm is 0
there is no signal and w is left unchanged. The clamp-then-renormalise cannot reach Σw = 0: the step
removes at most w_lr·T from a total of T and w_lr < 1 is enforced.
Departures: the reference implementations train w with the model's optimiser (LibMTL parametrises
w = T·softmax(s) and takes L(0) from the first epoch's mean, using EW during epoch 0). Here w is
updated by its own normalised gradient step — dividing by mean(n) makes the step independent of the
gradient scale, so one w_lr works for any loss scale — and L(0) is the first step's losses.
"""

from __future__ import annotations

import torch
from torch import Tensor

from training.mtl.base import Level, MTLMethod, StepReport, working_precision
from training.mtl.context import StepContext
from training.mtl.registry import register

_TINY = 1e-12


@register
class GradNorm(MTLMethod):
    name = "gradnorm"
    # buffers registered in __init__ (declared for the type checker)
    w: Tensor
    initial_losses: Tensor
    initialised: Tensor
    kind = "loss weighting"
    levels = (Level.PARAMETER, Level.FEATURE)
    paper = (
        "Chen, Badrinarayanan, Lee, Rabinovich, GradNorm: Gradient Normalization for Adaptive Loss "
        "Balancing in Deep Multitask Networks, ICML 2018, https://arxiv.org/abs/1711.02257"
    )
    cost = "T (parameter level) / 1 + T head-only (feature level)"

    def __init__(
        self, num_tasks: int, level: Level | str = Level.PARAMETER, alpha: float = 1.5, w_lr: float = 0.025
    ) -> None:
        super().__init__(num_tasks, level)
        if not alpha >= 0:
            raise ValueError(f"gradnorm: alpha must be >= 0, got {alpha!r}")
        if not 0 < w_lr < 1:
            raise ValueError(f"gradnorm: w_lr must be in (0, 1) (keeps Σw > 0), got {w_lr!r}")
        self.alpha = float(alpha)
        self.w_lr = float(w_lr)
        self.register_buffer("w", torch.ones(num_tasks, dtype=torch.float64))
        self.register_buffer("initial_losses", torch.ones(num_tasks, dtype=torch.float64))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def update_direction(self, losses: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
        """∂L_grad/∂w for losses `[T]` and gradient norms n `[T]` (float64), at the current w."""
        L0 = self.initial_losses.clamp_min(_TINY)
        ratio = losses.clamp_min(0.0) / L0
        r = ratio / ratio.mean().clamp_min(_TINY)
        G = self.w * norms
        target = G.mean() * r.pow(self.alpha)
        return torch.sign(G - target) * norms

    def backward(self, ctx: StepContext) -> StepReport:
        ctx.check_losses_finite()
        if ctx.num_tasks != self.num_tasks:
            raise ValueError(f"gradnorm: built for {self.num_tasks} tasks, ctx has {ctx.num_tasks}")
        G = working_precision(ctx.feature_grads() if self.level is Level.FEATURE else ctx.param_grads())
        norms = torch.linalg.vector_norm(G.double(), dim=1)
        losses = ctx.losses.detach().double().to(self.w.device)
        norms = norms.to(self.w.device)
        w_used = self.w.clone()
        # Σ w_i g_i from the gradients already computed (no second backbone pass at the parameter
        # level); heads get Σ w_i ∇L_i, as a loss weighting's heads do.
        w_dev = w_used.to(device=G.device, dtype=G.dtype)
        if self.level is Level.FEATURE:
            ctx.backward_feature_direction(w_dev @ G, head_weights=w_dev)
        else:
            ctx.backward_shared_direction(w_dev @ G, head_weights=w_dev)
        if not bool(self.initialised):
            self.initial_losses.copy_(losses)
            self.initialised.fill_(True)
        mean_norm = norms.mean()
        if mean_norm > 0:
            grad_w = self.update_direction(losses, norms) / mean_norm
            w = (self.w - self.w_lr * grad_w).clamp_min(0.0)
            self.w.copy_(w * (self.num_tasks / w.sum()))
        return StepReport(weights=w_used.float(), extras={"gradnorm_mean_norm": float(mean_norm)})
