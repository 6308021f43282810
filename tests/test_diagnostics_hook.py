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


def _ctx(net: TinyNet, x: torch.Tensor, stacked: bool = False) -> StepContext:
    """The trainer's split; losses as the list of task losses (the trainer's way) or stacked `[T]`."""
    Z = net.features(x)
    Zd = [z.detach().requires_grad_() for z in Z]
    shared = list(net.trunk.parameters()) + list(net.down.parameters())
    task_losses = net.task_losses(Zd)
    return StepContext(
        losses=torch.stack(task_losses) if stacked else task_losses,
        features=Z,
        feature_leaves=Zd,
        shared_params=shared,
        task_params=list(net.heads.parameters()),
    )


@pytest.fixture
def batch() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(2, 2, 8, 8)


def test_fd_alone_never_computes_parameter_gradients(batch: torch.Tensor, monkeypatch) -> None:
    ctx = _ctx(TinyNet(), batch)

    def forbidden() -> torch.Tensor:
        raise AssertionError("FD alone must not pay for the T backbone VJPs of param_grads()")

    monkeypatch.setattr(ctx, "param_grads", forbidden)
    cfg = DiagnosticsConfig(
        fd=True, gradient_similarity=False, inter_sample=True, inter_sample_levels=["feature"]
    )
    out = compute_diagnostics(ctx, cfg)
    assert list(out) == cfg.keys() and "diag/gds_param" not in out
    assert ctx._param_grads is None
    assert ctx._feature_grads is not None  # cached: a gradient method in this step reuses it
    assert 0.0 < out["diag/fd"] < math.log(T)
    # the feature level is computed from ∂L/∂Z alone as well; the parameter level does call it
    compute_diagnostics(ctx, DiagnosticsConfig(fd=False, levels=("feature",)))
    with pytest.raises(AssertionError, match="param_grads"):
        compute_diagnostics(ctx, DiagnosticsConfig(fd=False, levels=("parameter",)))


def test_list_of_task_losses_gives_the_same_values_as_the_stacked_tensor(batch: torch.Tensor) -> None:
    cfg = DiagnosticsConfig(inter_sample=True, fd_window=3)
    from_list = _ctx(TinyNet(), batch)
    from_stack = _ctx(TinyNet(), batch, stacked=True)
    assert from_list.losses.shape == from_stack.losses.shape == (T,)
    a, b = compute_diagnostics(from_list, cfg), compute_diagnostics(from_stack, cfg)
    assert list(a) == list(b) == cfg.keys()
    assert all(math.isfinite(v) for v in a.values())
    for k in a:
        assert a[k] == pytest.approx(b[k], abs=1e-6), k
    assert torch.allclose(from_list.feature_grads(), from_stack.feature_grads(), atol=1e-7)
    assert torch.allclose(from_list.param_grads(), from_stack.param_grads(), atol=1e-7)


def test_all_measures_match_independent_gradients(batch: torch.Tensor) -> None:
    net = TinyNet()
    cfg = DiagnosticsConfig(inter_sample=True, inter_sample_levels=("parameter", "feature"), fd_window=3,
                            fd_axis=(-2, -1))  # fmt: skip
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
    inter = inter_task_vs_inter_sample(per_sample).as_dict(suffix="_feature")
    for k, v in inter.items():
        assert out[k] == pytest.approx(v, abs=1e-5, nan_ok=True), k
    inter = inter_task_vs_inter_sample(_independent_per_sample_param_grads(net, batch)).as_dict()
    for k, v in inter.items():
        assert out[k] == pytest.approx(v, abs=1e-5, nan_ok=True), k


def _independent_per_sample_param_grads(net: TinyNet, x: torch.Tensor) -> torch.Tensor:
    """[T, B, P]: ∂L_i/∂θ_s through sample b only (the other samples' features detached), plain autograd."""
    shared = list(net.trunk.parameters()) + list(net.down.parameters())
    rows = []
    for i in range(T):
        per_b = []
        for b in range(x.shape[0]):
            Z = net.features(x)
            keep = [torch.arange(z.shape[0]).view(-1, *[1] * (z.dim() - 1)) == b for z in Z]
            # the trainer's cut: heads read detached leaves; sample b's leaves carry Z_b's graph
            cut = [torch.where(k, z, z.detach()) for k, z in zip(keep, Z)]
            loss = net.task_losses(cut)[i]
            grads = torch.autograd.grad(loss, shared, allow_unused=True)
            per_b.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                                    for g, p in zip(grads, shared)]))  # fmt: skip
        rows.append(torch.stack(per_b))
    return torch.stack(rows)


def test_per_sample_parameter_gradients_sum_to_the_task_gradients(batch: torch.Tensor) -> None:
    from training.diagnostics.inter_sample import per_sample_param_grads

    net = TinyNet()
    ctx = _ctx(net, batch)
    per_sample = per_sample_param_grads(ctx.feature_grads(), list(ctx.features), list(ctx.shared_params))
    assert per_sample.shape == (T, 2, sum(p.numel() for p in ctx.shared_params))
    torch.testing.assert_close(per_sample.sum(1), ctx.param_grads(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(per_sample, _independent_per_sample_param_grads(TinyNet(), batch),
                               rtol=1e-5, atol=1e-7)  # fmt: skip
    # the parameter and feature versions are different numbers on the same batch
    cfg = DiagnosticsConfig(fd=False, gradient_similarity=False, inter_sample=True,
                            inter_sample_levels=("parameter", "feature"))  # fmt: skip
    out = compute_diagnostics(ctx, cfg)
    assert list(out)[:6] == [f"diag/{k}" for k in ("inter_task_cos", "inter_task_gms", "inter_sample_cos",
                                                   "inter_sample_gms", "inter_task_sign_conflict",
                                                   "inter_sample_sign_conflict")]  # fmt: skip
    assert out["diag/inter_sample_cos"] != pytest.approx(out["diag/inter_sample_cos_feature"], abs=1e-3)


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
        ({"inter_sample_levels": ["pixel"]}, "inter_sample_levels"),
        ({"fd_eps": -1.0}, "fd_eps"),
        ({"fd_window": 2}, "fd_window"),
        ({"fd_mode": "x"}, "fd_mode"),
        ({"every": -1}, "every"),
        ({"typo": 1}, "typo"),
    ]:
        with pytest.raises(ValueError, match=word):
            DiagnosticsConfig.from_dict(bad)


def test_a_failing_measure_is_warned_once_left_out_and_training_continues() -> None:
    """A diagnostic that raises (here FD with a neighbourhood axis the features do not have) must not
    stop training: its keys are left out of the row, one DiagnosticsWarning names the reason, the other
    measures and the update go on. `strict=True` raises instead (issue 13, defect 8)."""
    from test_mtl_contract import SPEC, TinyBatch, TinyMTL, batch, make_optimizer, make_step

    from training.diagnostics.hook import DiagnosticsHook, DiagnosticsWarning

    cfg = DiagnosticsConfig(every=1, fd_window=3, fd_axis=5, levels=("parameter",))
    torch.manual_seed(0)
    model = TinyMTL(T)
    before = [p.detach().clone() for p in model.parameters()]
    method = build("ew", T)
    step = make_step(method, model, make_optimizer(method, model, SPEC))
    hook = DiagnosticsHook(cfg)
    with pytest.warns(DiagnosticsWarning) as caught:
        results = [step(TinyBatch(*batch(T, k)), k, 0, [hook]) for k in range(3)]
    assert len(caught) == 1, [str(w.message) for w in caught]
    message = str(caught[0].message)
    assert "fd failed at step 0" in message and "axis" in message and "training continues" in message
    for r in results:
        assert not r.skipped, r.reason
        assert "diag/fd" not in r.metrics
        assert set(r.metrics) == {"diag/gds_param", "diag/gms_param", "diag/cr_param"}
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    strict = DiagnosticsHook(DiagnosticsConfig(every=1, fd_window=3, fd_axis=5, strict=True))
    with pytest.raises(ValueError, match="axis"):
        step(TinyBatch(*batch(T, 3)), 3, 0, [strict])
    with pytest.raises(ValueError, match="strict"):
        DiagnosticsConfig(strict="yes")  # type: ignore[arg-type]


def test_fd_options_that_can_never_run_are_config_errors() -> None:
    """A combination FD refuses on every step (zero='count' with a 'mean' window, a neighbourhood along
    the task dimension) fails when the config is read, not as a warning at the first diagnostic step
    that leaves FD out of the whole run."""
    for bad, word in [
        ({"fd_zero": "count", "fd_window": 3, "fd_mode": "mean"}, "diagnostics.fd_zero"),
        ({"fd_window": 3, "fd_axis": 0}, "diagnostics.fd_axis"),
        ({"fd_window": 3, "fd_axis": [-1, 0]}, "diagnostics.fd_axis"),
    ]:
        with pytest.raises(ValueError, match=word):
            DiagnosticsConfig.from_dict(bad)
    # the same options are fine where FD accepts them
    DiagnosticsConfig(fd_zero="count", fd_window=3, fd_mode="box")
    DiagnosticsConfig(fd_zero="count", fd_window=1, fd_mode="mean", fd_axis=0)
