"""Gradients of shared heads (issue 13, defect 4); Nash-MTL's clipping at the feature level (defect 5).

A head shared by two tasks (as AmodalRCNN's RPN conv, box head and mask heads are) receives
Σ_i ∇_{θ_h} L_i by default (convention (a)) and Σ_i α_i ∇_{θ_h} L_i with `heads="weighted"` (MGDA's and
Nash-MTL's official code): not a rescaled learning rate but another direction. Nash-MTL clips the
shared parameters' gradient (the official code clips after its backward); at the feature level that
gradient exists only after the backbone backward, so the step clips it there.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import pytest
import torch
from test_mtl_contract import TinyBatch, TinyMTL, TinyStepModel, batch, make_ctx
from torch import nn

from training.engine.step import TrainStep
from training.mtl import build
from training.tasks import TaskSpec

CPU = torch.device("cpu")
TASKS = ("a", "b", "c")


class Data(NamedTuple):
    x: torch.Tensor  # [n, 5]
    y: torch.Tensor  # [n, 3]

    def to(self, device: torch.device) -> Data:
        return Data(self.x.to(device), self.y.to(device))


class SharedHeadNet(nn.Module):
    """Z = tanh(trunk(x)); `shared_head` serves tasks a and b (one output each), `own_head` task c."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Linear(5, 6).double()
        self.shared_head = nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 2)).double()
        self.own_head = nn.Linear(6, 1).double()

    @property
    def module(self) -> nn.Module:
        return self

    def features(self, batch: Data) -> torch.Tensor:
        return torch.tanh(self.trunk(batch.x))

    def heads(self, Z: torch.Tensor, batch: Data) -> dict[str, torch.Tensor]:
        out = torch.cat([self.shared_head(Z), self.own_head(Z)], dim=1)  # [n, 3]
        scale = torch.tensor([1.0, 30.0, 0.2], dtype=out.dtype)  # unequal tasks: α far from uniform
        return {t: ((out[:, i] - batch.y[:, i]) ** 2).mean() * scale[i] for i, t in enumerate(TASKS)}

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.trunk.parameters())

    def task_parameters(self) -> list[nn.Parameter]:
        return list(self.shared_head.parameters()) + list(self.own_head.parameters())


def _data() -> Data:
    g = torch.Generator().manual_seed(7)
    x = torch.randn(16, 5, generator=g, dtype=torch.float64)
    return Data(x, torch.randn(16, 3, generator=g, dtype=torch.float64))


def _head_grads(net: SharedHeadNet, weights: torch.Tensor) -> torch.Tensor:
    """Σ_i w_i ∇_{shared head} L_i by plain autograd on a fresh forward (independent of the step)."""
    data = _data()
    losses = net.heads(net.features(data), data)
    total = sum(w * losses[t] for w, t in zip(weights.tolist(), TASKS))
    grads = torch.autograd.grad(total, list(net.shared_head.parameters()))
    return torch.cat([g.reshape(-1) for g in grads])


@pytest.mark.parametrize("level", ["parameter", "feature"])
@pytest.mark.parametrize("name", ["mgda", "nashmtl"])
def test_a_head_shared_by_two_tasks_gets_the_alpha_weighted_sum_under_the_option(name, level) -> None:
    got = {}
    for heads in ("sum", "weighted"):
        net = SharedHeadNet()
        reference = copy.deepcopy(net)
        method = build(name, 3, level=level, heads=heads)
        opt = torch.optim.SGD(net.parameters(), lr=0.0)
        step = TrainStep(net, TaskSpec.one_per_loss(TASKS), method, opt, CPU)
        report = step.backward(step.forward(_data(), 0, 0))
        # α of this step: MGDA's reported weights; Nash-MTL's raw α (the official code weights the
        # heads' losses before clipping the shared gradient)
        alpha = (method.alpha if name == "nashmtl" else report.weights).double()
        assert alpha.min() >= 0 and float((alpha - alpha.mean()).abs().max()) > 0.05, alpha
        got[heads] = torch.cat([p.grad.reshape(-1) for p in net.shared_head.parameters()])
        want = _head_grads(reference, alpha if heads == "weighted" else torch.ones(3, dtype=torch.float64))
        # (MGDA's reported weights are float32: the step applied the float64 α)
        torch.testing.assert_close(got[heads], want, rtol=1e-6, atol=1e-9)
        # the head serving task c alone gets w_c ∇L_c either way: only the scale differs there
        own = torch.cat([p.grad.reshape(-1) for p in net.own_head.parameters()])
        assert torch.isfinite(own).all()
    cos = torch.nn.functional.cosine_similarity(got["sum"], got["weighted"], dim=0)
    assert float(cos) < 0.99, f"a shared head's two conventions differ in direction, cos = {float(cos)}"


@pytest.mark.parametrize("name", ["mgda", "nashmtl"])
def test_heads_option_is_checked(name: str) -> None:
    with pytest.raises(ValueError, match="heads must be one of"):
        build(name, 3, heads="alpha")


def _nash_step(level: str, max_norm: float):
    """One Nash-MTL step on TinyMTL with large losses (raw shared gradient ≫ max_norm)."""
    T = 3
    torch.manual_seed(0)
    model = TinyMTL(T)
    reference = copy.deepcopy(model)
    method = build("nashmtl", T, level=level, max_norm=max_norm)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    spec = TaskSpec.one_per_loss([f"t{i}" for i in range(T)])
    step = TrainStep(TinyStepModel(model), spec, method, opt, CPU)
    x, y = batch(T, 0)
    scales = torch.tensor([300.0, 1.0, 40.0], dtype=torch.float64)
    result = step(TinyBatch(x, y, scales), 0, 0)
    assert not result.skipped, result.reason
    shared = torch.cat([p.grad.reshape(-1) for p in model.shared_parameters()])
    # the unclipped shared gradient of the same α: Σ α_i ∂L_i/∂θ_s from an independent context
    G = make_ctx(reference, x, y, scales=scales).param_grads()
    alpha = method.alpha.to(G.dtype).clone()
    return shared, alpha @ G, alpha, result


@pytest.mark.parametrize("level", ["parameter", "feature"])
def test_nash_mtl_clips_the_shared_parameter_gradient_at_both_levels(level: str) -> None:
    max_norm = 0.5
    shared, raw, alpha, result = _nash_step(level, max_norm)
    # (at the parameter level ‖Σ α_i g_i‖ = √T before clipping, whatever the gradients' scale)
    assert float(raw.norm()) > 2 * max_norm, "the test needs a shared gradient above max_norm"
    assert float(shared.norm()) <= max_norm, f"{level}: shared gradient norm {float(shared.norm())}"
    # the clipped gradient keeps the direction of Σ α_i ∂L_i/∂θ_s, at norm max_norm
    torch.testing.assert_close(shared, raw * (max_norm / float(raw.norm())), rtol=1e-5, atol=1e-9)
    # logged weights are the effective weights of the shared update (α times the clipping factor)
    assert result.weights is not None
    torch.testing.assert_close(
        torch.tensor(result.weights, dtype=torch.float64), alpha * (max_norm / float(raw.norm())),
        rtol=1e-5, atol=1e-9,
    )
    if level == "feature":
        assert result.extras["shared_grad_norm"] == pytest.approx(float(raw.norm()), rel=1e-6)
