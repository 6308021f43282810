"""StepContext on a tiny real torch model: per-task gradients, final backwards, non-finite checks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from training.mtl import Combination, GradientCombination, NonFiniteError, StepContext, build


class TinyMTL(nn.Module):
    """Two conv layers produce Z (two 'FPN levels'); each task has a linear head on pooled Z."""

    def __init__(self, num_tasks: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 3, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 3, 3, stride=2, padding=1)
        self.task_heads = nn.ModuleList(nn.Linear(6, 2) for _ in range(num_tasks))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        z1 = torch.tanh(self.conv1(x))  # tanh: Z has both signs (GradDrop's sign(Z) matters)
        return [z1, torch.tanh(self.conv2(z1))]

    def losses(self, Z: list[torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([z.mean(dim=(2, 3)) for z in Z], dim=1)  # [B, 6]
        out = [((head(pooled) - y[:, i]) ** 2).mean() for i, head in enumerate(self.task_heads)]
        return torch.stack(out)  # [T]

    def shared(self) -> list[nn.Parameter]:
        return [*self.conv1.parameters(), *self.conv2.parameters()]

    def task(self) -> list[nn.Parameter]:
        return list(self.task_heads.parameters())


def make_problem(num_tasks: int = 3, seed: int = 0, dtype: torch.dtype = torch.float32):
    torch.manual_seed(seed)
    model = TinyMTL(num_tasks).to(dtype)
    x = torch.randn(2, 2, 6, 6, dtype=dtype)
    y = torch.randn(2, num_tasks, 2, dtype=dtype) * 3.0
    return model, x, y


def make_context(model: TinyMTL, x: torch.Tensor, y: torch.Tensor, batched_vjp: bool = False) -> StepContext:
    """The trainer's graph cut: Z from the backbone, heads on detached leaves."""
    feats = model.features(x)
    leaves = [z.detach().requires_grad_(True) for z in feats]
    return StepContext(
        losses=model.losses(leaves, y),
        features=feats,
        feature_leaves=leaves,
        shared_params=model.shared(),
        task_params=model.task(),
        batched_vjp=batched_vjp,
    )


def grads_of(params: list[nn.Parameter]) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])


def zero(model: nn.Module) -> None:
    for p in model.parameters():
        p.grad = None


class SumCombination(GradientCombination):
    """The EW direction as a gradient combination (G.sum(0)), to test the plumbing of both levels."""

    name = "test_sum"

    def combine(self, G: torch.Tensor) -> Combination:
        return Combination(direction=G.sum(0), weights=torch.ones(G.shape[0], dtype=torch.float64))


def test_param_grads_equal_per_task_autograd() -> None:
    model, x, y = make_problem()
    ctx = make_context(model, x, y)
    G = ctx.param_grads()
    assert G.shape == (3, sum(p.numel() for p in model.shared()))
    full = model.losses(model.features(x), y)  # no graph cut: the reference per-task gradients
    for i in range(3):
        ref = torch.autograd.grad(full[i], model.shared(), retain_graph=True)
        torch.testing.assert_close(G[i], torch.cat([g.reshape(-1) for g in ref]), rtol=1e-5, atol=1e-7)
    assert ctx.param_grads() is G  # cached: a diagnostic in the same step reuses it


def test_feature_grads_equal_per_task_autograd_wrt_z() -> None:
    model, x, y = make_problem()
    ctx = make_context(model, x, y)
    G_Z = ctx.feature_grads()
    m = sum(z.numel() for z in ctx.features)
    assert G_Z.shape == (3, m)  # flattened over the whole batch, no batch reduction
    for i in range(3):
        ref = torch.autograd.grad(ctx.losses[i], list(ctx.feature_leaves), retain_graph=True)
        torch.testing.assert_close(G_Z[i], torch.cat([g.reshape(-1) for g in ref]))


def test_batched_vjp_equals_loop() -> None:
    model, x, y = make_problem(num_tasks=4)
    loop = make_context(model, x, y).param_grads()
    batched = make_context(model, x, y, batched_vjp=True).param_grads()
    torch.testing.assert_close(batched, loop, rtol=1e-5, atol=1e-7)


def test_feature_ew_equals_parameter_ew_equals_plain_sum_backward() -> None:
    model, x, y = make_problem()
    model.losses(model.features(x), y).sum().backward()
    plain = grads_of(list(model.parameters()))
    results = {}
    for level in ("parameter", "feature"):
        zero(model)
        report = SumCombination(3, level=level).backward(make_context(model, x, y))
        results[level] = grads_of(list(model.parameters()))
        assert report.weights is not None and report.weights.tolist() == [1.0, 1.0, 1.0]
    zero(model)
    build("ew", 3).backward(make_context(model, x, y))
    results["ew"] = grads_of(list(model.parameters()))
    assert plain.abs().sum() > 0
    for name, g in results.items():
        torch.testing.assert_close(g, plain, rtol=1e-5, atol=1e-7, msg=f"{name} != sum().backward()")


def test_head_weights_give_weighted_head_gradients() -> None:
    model, x, y = make_problem()
    w = torch.tensor([0.5, 2.0, -1.0])
    (w * model.losses(model.features(x), y)).sum().backward()
    ref = grads_of(model.task())
    zero(model)
    ctx = make_context(model, x, y)
    d = ctx.param_grads().sum(0)
    ctx.backward_shared_direction(d, head_weights=w)
    torch.testing.assert_close(grads_of(model.task()), ref, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="head_weights must have shape"):
        make_context(model, x, y).backward_shared_direction(d, head_weights=torch.ones(2))


def test_non_finite_loss_raises() -> None:
    model, x, y = make_problem()
    ctx = make_context(model, x, y)
    ctx.losses = ctx.losses * torch.tensor([1.0, math.nan, 1.0])
    with pytest.raises(NonFiniteError, match="task1"):
        ctx.check_losses_finite()
    with pytest.raises(NonFiniteError):
        build("mgda", 3).backward(ctx)
    with pytest.raises(NonFiniteError, match="non-finite feature gradient"):
        ctx.feature_grads()  # the NaN reaches the gradient rows too


def test_non_finite_direction_raises() -> None:
    model, x, y = make_problem()
    ctx = make_context(model, x, y)
    d = ctx.param_grads().sum(0)
    d[0] = math.inf
    with pytest.raises(NonFiniteError, match="direction"):
        ctx.backward_shared_direction(d)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_row_check_rejects_nan_and_inf_but_not_huge_finite_rows(dtype: torch.dtype) -> None:
    model, x, y = make_problem()
    ctx = make_context(model, x, y)
    ctx.task_names = ("a", "b", "c", "d")
    big = torch.finfo(dtype).max / 2
    G = torch.ones(4, 6, dtype=dtype)
    G[0] = big  # finite entries whose sum overflows to inf: must pass
    G[1, 3] = math.nan
    G[2, 0], G[2, 1] = math.inf, -math.inf  # sum is NaN
    with pytest.raises(NonFiniteError, match=r"\['b', 'c'\]"):
        ctx._check_rows(G, "parameter")
    G[1, 3] = G[2, 0] = G[2, 1] = 1.0
    ctx._check_rows(G, "parameter")  # no error: every entry is finite
    G[3, 5] = -math.inf
    with pytest.raises(NonFiniteError, match=r"tasks \['d'\]"):
        ctx._check_rows(G, "feature")


FINALISERS = ["backward_loss", "backward_weighted", "shared_direction", "feature_direction"]


@pytest.mark.parametrize("finaliser", FINALISERS)
def test_every_finaliser_drops_the_cached_per_task_gradients(finaliser: str) -> None:
    """After the step's final backward nothing holds G [T, P] / G_Z [T, m] any more (a loss weighting
    on a diagnostics step must not keep them alive through the optimiser step)."""
    import gc
    import weakref

    model, x, y = make_problem()
    ctx = make_context(model, x, y)
    cached = [weakref.ref(ctx.feature_grads()), weakref.ref(ctx.param_grads())]  # e.g. by the diagnostics
    if finaliser == "backward_loss":
        ctx.backward_loss(ctx.losses.sum())
    elif finaliser == "backward_weighted":
        ctx.backward_weighted(torch.ones(3))
    elif finaliser == "shared_direction":
        ctx.backward_shared_direction(torch.zeros(ctx.param_grads().shape[1]))
    else:
        ctx.backward_feature_direction(torch.zeros(ctx.feature_grads().shape[1]))
    gc.collect()
    assert all(ref() is None for ref in cached), f"{finaliser}: per-task gradients still cached"
