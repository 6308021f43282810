"""FAMO: fast adaptive multitask optimisation.

Paper: Bo Liu, Yihao Feng, Peter Stone, Qiang Liu, "FAMO: Fast Adaptive Multitask Optimization",
NeurIPS 2023, https://arxiv.org/abs/2306.03792

Update, before the model step (`backward`), with logits ξ ∈ R^T and z = softmax(ξ):
    ℓ_i = L_i − b_i + 1e-8,  c = sg(Σ_i z_i/ℓ_i),  total = Σ_i z_i log(ℓ_i) / c,
whose gradient is Σ_i w_i ∇L_i with the effective weights w_i = (z_i/ℓ_i) / Σ_j (z_j/ℓ_j) (a convex
combination); it is applied as `ctx.backward_weighted(w)` (heads weighted too, as the reference).
After the optimiser step (`after_step`, `needs_post_step = True`): the losses ℓ' of the *same batch*
are recomputed with `ctx.reevaluate()` (no grad; the step replays its random draws, so a detector
samples the same anchors/ROIs and δ measures the step, not sampling noise), δ = log ℓ − log ℓ', and
the gradient on ξ is
Jᵀδ = z∘δ − z (zᵀδ) with J = diag(z) − zzᵀ (the Jacobian of the softmax, symmetric). One Adam step
(torch's formula, L2 weight decay γ added to the gradient as `torch.optim.Adam(weight_decay=γ)`) on ξ.
Hyperparameters: w_lr = 0.025 (all references), gamma = 1e-3 (the official experiment scripts for
NYUv2/CelebA/QM9, LibMTL's `FAMO_w_gamma` and torchjd's default; the standalone famo.py uses 0.01),
min_loss = 0 (the lower bound b of every task loss; all losses here are ≥ 0).
Statefulness: stateful — ξ, Adam's moments and step count, and the ℓ of the last backward are buffers.
Scale: the weights sum to 1 (1/T of EW's `G.sum(0)`).
Guards: a loss below its bound makes log(ℓ) undefined, so it is an error naming the task (the bound
is a configuration choice). A re-evaluated loss below the bound is clamped to 1e-8 above it (the step
overshot the bound; δ is then large but finite). Non-finite re-evaluated losses (a diverged step)
leave ξ unchanged for that step instead of feeding NaN into Adam.
Departures: no gradient clipping (the official `famo.py` clips at max_norm 1.0; this library leaves
clipping to the trainer's config, like every other method). Adam on ξ is written out in buffers
instead of a `torch.optim.Adam`, so that `state_dict()` carries it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from training.mtl.base import Level, LossWeighting, StepReport
from training.mtl.context import StepContext
from training.mtl.registry import register

_SHIFT = 1e-8
_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8


@register
class FAMO(LossWeighting):
    name = "famo"
    # buffers registered in __init__ (declared for the type checker)
    logits: Tensor
    adam_m: Tensor
    adam_v: Tensor
    adam_step: Tensor
    last_losses: Tensor
    pending: Tensor
    paper = (
        "Liu, Feng, Stone, Liu, FAMO: Fast Adaptive Multitask Optimization, NeurIPS 2023, "
        "https://arxiv.org/abs/2306.03792"
    )
    needs_post_step = True
    cost = "1 + one no-grad forward"

    def __init__(
        self,
        num_tasks: int,
        level: Level | str = Level.PARAMETER,
        w_lr: float = 0.025,
        gamma: float = 1e-3,
        min_loss: float = 0.0,
    ) -> None:
        super().__init__(num_tasks, level)
        if not w_lr > 0:
            raise ValueError(f"famo: w_lr must be > 0, got {w_lr!r}")
        if not gamma >= 0:
            raise ValueError(f"famo: gamma (weight decay of ξ) must be >= 0, got {gamma!r}")
        self.w_lr, self.gamma, self.min_loss = float(w_lr), float(gamma), float(min_loss)
        T = num_tasks
        self.register_buffer("logits", torch.zeros(T, dtype=torch.float64))  # ξ
        self.register_buffer("adam_m", torch.zeros(T, dtype=torch.float64))
        self.register_buffer("adam_v", torch.zeros(T, dtype=torch.float64))
        self.register_buffer("adam_step", torch.zeros((), dtype=torch.int64))
        self.register_buffer("last_losses", torch.zeros(T, dtype=torch.float64))  # ℓ of the last backward
        self.register_buffer("pending", torch.zeros((), dtype=torch.bool))

    def _shifted(self, losses: Tensor, names: list[str]) -> Tensor:
        L = losses.detach().double().to(self.logits.device)
        below = [names[i] for i in range(L.shape[0]) if L[i] < self.min_loss]
        if below:
            raise ValueError(
                f"famo: losses of tasks {below} are below min_loss={self.min_loss} "
                f"({L.tolist()}); expected every loss >= its lower bound"
            )
        return L - self.min_loss + _SHIFT

    def weights(self, losses: Tensor) -> Tensor:
        """Effective weights (z/ℓ)/Σ(z/ℓ) for the current logits."""
        names = [f"task{i}" for i in range(losses.shape[0])]
        ell = self._shifted(losses, names)
        q = torch.softmax(self.logits, dim=0) / ell
        return (q / q.sum()).to(device=losses.device, dtype=losses.dtype)

    def backward(self, ctx: StepContext) -> StepReport:
        ctx.check_losses_finite()
        names = [ctx.task_names[i] if i < len(ctx.task_names) else f"task{i}" for i in range(ctx.num_tasks)]
        ell = self._shifted(ctx.losses, names)
        w = self.weights(ctx.losses)
        ctx.backward_weighted(w)
        self.last_losses.copy_(ell)
        self.pending.fill_(True)
        return StepReport(weights=w.detach())

    def logits_gradient(self, new_losses: Tensor) -> Tensor:
        """Jᵀδ for the re-evaluated losses `[T]` of the same batch (δ = log ℓ − log ℓ')."""
        new = (new_losses.detach().double().to(self.logits.device) - self.min_loss).clamp_min(0.0) + _SHIFT
        delta = torch.log(self.last_losses) - torch.log(new)
        z = torch.softmax(self.logits, dim=0)
        return z * delta - z * torch.dot(z, delta)

    @torch.no_grad()
    def after_step(self, ctx: StepContext) -> None:
        if ctx.reevaluate is None:
            raise ValueError(
                "famo: ctx.reevaluate is None; FAMO needs the losses of the same batch after the step"
            )
        if not bool(self.pending):
            raise RuntimeError("famo: after_step called without a preceding backward")
        new = ctx.reevaluate()
        if not bool(torch.isfinite(new).all()):
            # The model step diverged on this batch; ξ is not updated from a meaningless δ.
            self.pending.fill_(False)
            return
        g = self.logits_gradient(new) + self.gamma * self.logits
        # Adam with torch.optim.Adam's formula (bias-corrected step size, eps outside the sqrt).
        b1, b2 = _BETAS
        self.adam_step += 1
        t = float(self.adam_step)
        self.adam_m.lerp_(g, 1 - b1)
        self.adam_v.mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = (self.adam_v.sqrt() / (1 - b2**t) ** 0.5).add_(_ADAM_EPS)
        self.logits.addcdiv_(self.adam_m, denom, value=-self.w_lr / (1 - b1**t))
        self.pending.fill_(False)
