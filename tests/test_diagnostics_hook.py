"""The training hook on a real StepContext of a tiny two-level network (real autograd, real EW step)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from training.diagnostics import (
    DiagnosticsConfig,
    GradientSimilarity,
    compute_diagnostics,
    feature_disentanglement,
    inter_task_vs_inter_sample,
)
from training.mtl.context import StepContext
from training.mtl.registry import build

T = 3


class TinyNet(nn.Module):
    """Shared conv trunk -> two feature levels; three task heads reading the levels differently."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Conv2d(2, 4, 3, padding=1)
        self.down = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.heads = nn.ModuleList([nn.Conv2d(4, 1, 1) for _ in range(T)])

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        z1 = torch.relu(self.trunk(x))
        return [z1, self.down(z1)]

    def task_losses(self, Z: list[torch.Tensor]) -> list[torch.Tensor]:
        l0 = self.heads[0](Z[0]).pow(2).mean()
        l1 = self.heads[1](Z[1]).abs().mean()
        l2 = (self.heads[2](Z[0])[..., :4, :4].mean() - 1.0) ** 2  # uses a corner of level 0 only
        return [l0, l1, l2]

    def losses(self, Z: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(self.task_losses(Z))


def _ctx(net: TinyNet, x: torch.Tensor, keep: list | None = None) -> StepContext:
    Z = net.features(x)
    Zd = [z.detach().requires_grad_() for z in Z]
    shared = list(net.trunk.parameters()) + list(net.down.parameters())
    task_losses = net.task_losses(Zd)
    losses = torch.stack(task_losses)
    if keep is not None:  # the task losses before stacking, as the trainer has them
        keep.extend(task_losses)
    return StepContext(
        losses=losses,
        features=Z,
        feature_leaves=Zd,
        shared_params=shared,
        task_params=list(net.heads.parameters()),
    )


@pytest.fixture
def batch() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(2, 2, 8, 8)


def test_fd_alone_never_computes_parameter_gradients(batch: torch.Tensor) -> None:
    ctx = _ctx(TinyNet(), batch)
    out = compute_diagnostics(ctx, DiagnosticsConfig(fd=True, gradient_similarity=False))
    assert list(out) == ["diag/fd"]
    assert ctx._param_grads is None  # the T backbone VJPs were not paid for
    assert 0.0 < out["diag/fd"] < math.log(T)


def test_loss_weighting_path_gives_the_same_values_without_the_cache(batch: torch.Tensor) -> None:
    cfg = DiagnosticsConfig(levels=("feature",), inter_sample=True)
    cached_ctx, cheap_ctx = _ctx(TinyNet(), batch), _ctx(TinyNet(), batch)
    unstacked: list = []
    unstacked_ctx = _ctx(TinyNet(), batch, keep=unstacked)
    cached = compute_diagnostics(cached_ctx, cfg)
    cheap = compute_diagnostics(cheap_ctx, cfg, method_uses_task_gradients=False)
    cheapest = compute_diagnostics(
        unstacked_ctx, cfg, method_uses_task_gradients=False, task_losses=unstacked
    )
    assert cheap_ctx._feature_grads is None  # nothing cached: no head-parameter gradients were computed
    assert cached_ctx._feature_grads is not None
    assert cached.keys() == cheap.keys() == cheapest.keys()
    for k in cached:
        assert cheap[k] == pytest.approx(cached[k], abs=1e-6), k
        assert cheapest[k] == pytest.approx(cached[k], abs=1e-6), k
    with pytest.raises(ValueError, match="task_losses"):
        compute_diagnostics(
            _ctx(TinyNet(), batch), cfg, method_uses_task_gradients=False, task_losses=unstacked[:2]
        )


def test_all_measures_match_independent_gradients(batch: torch.Tensor) -> None:
    net = TinyNet()
    cfg = DiagnosticsConfig(inter_sample=True, fd_window=3, fd_axis=(-2, -1))
    out = compute_diagnostics(_ctx(net, batch), cfg)
    assert list(out) == cfg.keys()
    assert all(math.isfinite(v) for v in out.values())

    # independent per-task gradients with plain autograd on a fresh graph
    shared = list(net.trunk.parameters()) + list(net.down.parameters())
    Z = net.features(batch)
    losses = net.losses(Z)
    G_P = torch.stack(
        [
            torch.cat([g.reshape(-1) for g in torch.autograd.grad(losses[i], shared, retain_graph=True)])
            for i in range(T)
        ]
    )
    # ∂L_i/∂Z per level with every level a leaf (level 1 is computed from level 0, so cut it there too)
    Zd = [z.detach().requires_grad_() for z in Z]
    leaf_losses = net.losses(Zd)
    per_level = [
        torch.stack([torch.autograd.grad(leaf_losses[i], z, retain_graph=True)[0] for i in range(T)])
        for z in Zd
    ]
    G_Z = torch.cat([p.reshape(T, -1) for p in per_level], dim=1)

    p_sim, f_sim = GradientSimilarity.from_gradients(G_P), GradientSimilarity.from_gradients(G_Z)
    assert out["diag/gds_param"] == pytest.approx(p_sim.gds, abs=1e-5)
    assert out["diag/gms_param"] == pytest.approx(p_sim.gms, abs=1e-5)
    assert out["diag/cr_param"] == pytest.approx(p_sim.conflict_ratio)
    assert out["diag/gds_feature"] == pytest.approx(f_sim.gds, abs=1e-5)
    assert out["diag/gms_feature"] == pytest.approx(f_sim.gms, abs=1e-5)
    assert out["diag/fd"] == pytest.approx(
        feature_disentanglement(per_level, window=3, axis=(-2, -1)), rel=1e-5
    )
    per_sample = torch.cat([p.reshape(T, 2, -1) for p in per_level], dim=2)
    inter = inter_task_vs_inter_sample(per_sample).as_dict()
    for k, v in inter.items():
        assert out[k] == pytest.approx(v, abs=1e-5)


def test_diagnostics_do_not_change_the_update(batch: torch.Tensor) -> None:
    def step_grads(with_diagnostics: bool) -> list[torch.Tensor]:
        net = TinyNet()
        ctx = _ctx(net, batch)
        if with_diagnostics:
            compute_diagnostics(ctx, DiagnosticsConfig(inter_sample=True))
        build("ew", T).backward(ctx)
        return [p.grad.clone() for p in net.parameters()]

    for a, b in zip(step_grads(False), step_grads(True)):
        assert torch.allclose(a, b, atol=1e-7)


def test_config_schedule_validation_and_empty_cases(batch: torch.Tensor) -> None:
    cfg = DiagnosticsConfig(every=10)
    assert [s for s in range(25) if cfg.due(s)] == [0, 10, 20]
    assert not DiagnosticsConfig(every=0).due(0)
    assert compute_diagnostics(_ctx(TinyNet(), batch), DiagnosticsConfig(every=0)) == {}
    assert DiagnosticsConfig.from_dict({"levels": ["feature"], "fd_axis": [-2, -1]}).levels == ("feature",)
    assert DiagnosticsConfig(levels=["feature"]).keys() == [
        "diag/fd",
        "diag/gds_feature",
        "diag/gms_feature",
        "diag/cr_feature",
    ]
    for bad, word in [
        ({"levels": ["pixel"]}, "levels"),
        ({"fd_window": 2}, "fd_window"),
        ({"fd_mode": "x"}, "fd_mode"),
        ({"every": -1}, "every"),
        ({"typo": 1}, "typo"),
    ]:
        with pytest.raises(ValueError, match=word):
            DiagnosticsConfig.from_dict(bad)
