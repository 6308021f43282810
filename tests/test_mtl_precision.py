"""Gradient combinations do not depend on the autocast dtype (issue 13, defect 1).

Under `amp: bf16` the feature-level gradients G_Z are bf16. Every gradient-combination method (and
GradNorm, which combines G too) must return the direction of the same matrix in float32: the combination
is computed in at least float32, and rank decisions use float32's epsilon whatever G's dtype (as the
reference code). The step is driven like the trainer's under autocast: float32 shared parameters, a
half-precision Z, heads on half-precision leaves, so ∂L_i/∂Z arrives as bf16/fp16.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_mtl_combination import edge_matrices

from training.mtl import GradientCombination, StepContext, build, get, names
from training.mtl.methods.alignedmtl import AlignedMTL

#: every registered method that combines a task-gradient matrix (registry driven), plus GradNorm
COMBINING = sorted(
    n for n in names() if issubclass(get(n), GradientCombination) or n == "gradnorm"
)
HALF = [torch.bfloat16, torch.float16]


def _feature_level_step(name: str, G: torch.Tensor, z_dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """The Z-space direction a feature-level step hands to the backbone backward, for losses
    L_i = G_i·Z + h_i (Z = θ cast to `z_dtype`); also checks θ.grad is that direction (in Z's dtype)."""
    T, n = G.shape
    theta = torch.nn.Parameter(torch.zeros(n, dtype=torch.float32))
    heads = torch.nn.Parameter(torch.ones(T, dtype=torch.float32))
    Z = theta.to(z_dtype)  # what autocast does to the backbone's output
    leaf = Z.detach().requires_grad_()
    Gz = G.to(z_dtype)
    losses = [(Gz[i] * leaf).sum() + heads[i].to(z_dtype) for i in range(T)]
    ctx = StepContext(losses=losses, features=[Z], feature_leaves=[leaf], shared_params=[theta],
                      task_params=[heads])  # fmt: skip
    method = build(name, T, level="feature")
    seen: list[torch.Tensor] = []
    original = ctx.backward_feature_direction

    def spy(d_z: torch.Tensor, **kwargs) -> None:
        seen.append(d_z.detach().clone())
        original(d_z, **kwargs)

    ctx.backward_feature_direction = spy  # type: ignore[method-assign]
    torch.manual_seed(seed)
    method.backward(ctx)
    (d_z,) = seen
    assert d_z.dtype in (torch.float32, torch.float64), f"{name}: direction in {d_z.dtype}"
    # the backbone receives the direction in Z's dtype (fp16 may underflow tiny values: its range)
    torch.testing.assert_close(theta.grad, d_z.to(z_dtype).float(), rtol=0, atol=0)
    return d_z.double()


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    na, nb = float(a.norm()), float(b.norm())
    if nb == 0.0:
        return 1.0 if na == 0.0 else -1.0
    return float(a @ b) / (na * nb) if na > 0 else 0.0


@pytest.mark.parametrize("dtype", HALF, ids=["bf16", "fp16"])
@pytest.mark.parametrize("name", COMBINING)
def test_half_precision_feature_gradients_give_the_float32_direction(name: str, dtype: torch.dtype) -> None:
    """bf16/fp16 G_Z gives the direction the same matrix gives in float32 (cosine ≥ 0.999)."""
    checked = 0
    for T in (2, 3, 5, 7):
        for case, G in edge_matrices(T, torch.float64).items():
            Gh = G.to(dtype)
            if not bool(torch.isfinite(Gh).all()):
                continue  # fp16 cannot hold the 1e8 case at all: no method can be asked to
            d_half = _feature_level_step(name, Gh, dtype)
            d_ref = _feature_level_step(name, Gh.float(), torch.float32)
            cos = _cosine(d_half, d_ref)
            assert cos >= 0.999, f"{name} T={T} {case} {dtype}: cosine {cos:.4f} to the float32 direction"
            if float(d_ref.norm()) > 0:
                ratio = float(d_half.norm() / d_ref.norm())
                assert abs(ratio - 1.0) < 1e-2, f"{name} T={T} {case} {dtype}: norm ratio {ratio:.4f}"
            checked += 1
    assert checked >= 28


def test_rank_cut_off_uses_float32_epsilon_whatever_the_dtype() -> None:
    """λ_min/λ_max = 1e-10 lies between float64's and float32's T·eps: the reference drops it."""
    G = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1e-5, 0.0]], dtype=torch.float64)
    for dtype in (torch.float64, torch.float32, torch.bfloat16):
        assert AlignedMTL(2).combine(G.to(dtype)).extras["rank"] == 1.0, dtype
    # a well separated second direction (λ ratio 1e-4) is kept at every dtype, bf16 included
    G[1, 1] = 1e-2
    for dtype in (torch.float64, torch.float32, torch.bfloat16):
        assert AlignedMTL(2).combine(G.to(dtype)).extras["rank"] == 2.0, dtype


def test_direct_combine_of_half_matrix_returns_float32() -> None:
    G = torch.from_numpy(np.random.default_rng(0).standard_normal((3, 8)))
    for name in ("alignedmtl", "imtl_g", "mgda", "cagrad", "nashmtl", "pcgrad"):
        torch.manual_seed(0)
        d = build(name, 3).combine(G.to(torch.bfloat16)).direction
        assert d.dtype == torch.float32, name
