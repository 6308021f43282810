"""The linear MTL test harness shared by the method tests.

One shared parameter θ ∈ R^d (at 0) and one head scalar per task (at 1): L_i = G_i·Z + c_i·h_i with
Z = θ, so L = c and ∂L_i/∂θ = G_i exactly (the recipe of the MTL reference doc, section 1.1).
"""

from __future__ import annotations

import torch

from training.mtl import StepContext


def linear_ctx(G, c, epoch: int = 0, new_losses=None, dtype=torch.float64):
    """(StepContext, θ, heads); `new_losses` is what `reevaluate` returns (FAMO)."""
    G = torch.as_tensor(G, dtype=dtype)
    c = torch.as_tensor(c, dtype=dtype)
    theta = torch.nn.Parameter(torch.zeros(G.shape[1], dtype=dtype))
    heads = torch.nn.Parameter(torch.ones(G.shape[0], dtype=dtype))
    Z = theta * 1.0
    leaf = Z.detach().requires_grad_()
    losses = G @ leaf + c * heads
    reev = (lambda: torch.as_tensor(new_losses, dtype=dtype)) if new_losses is not None else None
    ctx = StepContext(losses=losses, features=[Z], feature_leaves=[leaf], shared_params=[theta],
                      task_params=[heads], epoch=epoch, reevaluate=reev)  # fmt: skip
    return ctx, theta, heads
