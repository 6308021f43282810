"""Loss-weighting methods: RLW, DWA, UW, UW-O / UW-SO, GradNorm, FAMO.

Pinned values are derived by hand in the comments. The "linear harness" has a shared parameter θ ∈ R^n
(Z = θ), one head scalar h_i per task and losses L_i = G_i·Z + c_i·h_i with θ = 0 and h = 1, so that
L_i = c_i, ∂L_i/∂θ = G_i and ∂L_i/∂h_i = c_i exactly.
"""

from __future__ import annotations

import math

import pytest
import torch
from mtl_harness import linear_ctx

from training.mtl import build


# ---------------------------------------------------------------------------------------------- RLW
def test_rlw_draws_softmax_of_one_randn_from_the_global_rng() -> None:
    G = torch.randn(4, 6, dtype=torch.float64)
    torch.manual_seed(3)
    expected = torch.softmax(torch.randn(4, dtype=torch.float64), 0)
    follow = torch.randn(1)
    torch.manual_seed(3)
    ctx, theta, heads = linear_ctx(G, [1.0, 2.0, 3.0, 4.0])
    report = build("rlw", 4).backward(ctx)
    assert torch.equal(torch.randn(1), follow), "RLW must draw exactly one randn(T) per step"
    torch.testing.assert_close(report.weights, expected)
    torch.testing.assert_close(theta.grad, expected @ G)
    torch.testing.assert_close(heads.grad, expected * torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64))
    assert abs(float(report.weights.sum()) - 1) < 1e-12


# ---------------------------------------------------------------------------------------------- DWA
def _dwa_step(m, losses, epoch):
    ctx, theta, _ = linear_ctx(torch.eye(len(losses), dtype=torch.float64), losses, epoch=epoch)
    return m.backward(ctx), theta


def test_dwa_uniform_for_two_epochs_then_pinned_weights() -> None:
    m = build("dwa", 2)
    # epoch 0: batches [2,4] and [2,4] -> mean [2,4]; epoch 1: [1,4], [1,4] -> mean [1,4]
    for epoch, losses in [(0, [2.0, 4.0]), (0, [2.0, 4.0]), (1, [1.0, 4.0]), (1, [1.0, 4.0])]:
        rep, theta = _dwa_step(m, losses, epoch)
        assert torch.equal(rep.weights, torch.ones(2, dtype=torch.float64))
    rep, theta = _dwa_step(m, [5.0, 5.0], 2)
    # r = [1/2, 4/4] = [0.5, 1]; w = 2·softmax(r/2) = 2·[e^.25, e^.5]/(e^.25 + e^.5) = [0.875647, 1.124353]
    e1, e2 = math.exp(0.25), math.exp(0.5)
    expected = torch.tensor([2 * e1 / (e1 + e2), 2 * e2 / (e1 + e2)], dtype=torch.float64)
    torch.testing.assert_close(rep.weights, expected)
    torch.testing.assert_close(theta.grad, expected)  # G = I
    assert abs(float(expected[0]) - 0.875647) < 1e-6


def test_dwa_zero_epoch_mean_is_finite_and_epoch_must_not_go_back() -> None:
    m = build("dwa", 3)
    for epoch, losses in [(0, [0.0, 1.0, 2.0]), (1, [1.0, 1.0, 0.0]), (2, [1.0, 1.0, 1.0])]:
        rep, _ = _dwa_step(m, losses, epoch)
    # r = [1/1e-12, 1, 0/2] -> softmax saturates on task 0 but stays finite and sums to T
    assert torch.isfinite(rep.weights).all() and abs(float(rep.weights.sum()) - 3) < 1e-9
    assert rep.weights[0] > 2.9
    with pytest.raises(ValueError, match="backwards"):
        _dwa_step(m, [1.0, 1.0, 1.0], 1)


# ----------------------------------------------------------------------------------------------- UW
def test_dwa_iteration_window_pinned_weights_ignoring_epochs() -> None:
    """window=2: uniform for 2·2 steps, then r = mean(last 2 steps) / mean(the 2 before)."""
    m = build("dwa", 2, window=2)
    steps = [[4.0, 2.0], [2.0, 2.0], [1.0, 3.0], [1.0, 1.0]]  # epoch numbers must not matter here
    for k, losses in enumerate(steps):
        rep, _ = _dwa_step(m, losses, epoch=7)
        assert torch.equal(rep.weights, torch.ones(2, dtype=torch.float64)), k
    rep, theta = _dwa_step(m, [9.0, 9.0], epoch=7)
    # last two [1,3],[1,1] -> [1, 2]; two before [4,2],[2,2] -> [3, 2]; r = [1/3, 1]
    e1, e2 = math.exp(1 / 6), math.exp(0.5)
    expected = torch.tensor([2 * e1 / (e1 + e2), 2 * e2 / (e1 + e2)], dtype=torch.float64)
    torch.testing.assert_close(rep.weights, expected)
    torch.testing.assert_close(theta.grad, expected)
    # the ring moves on (the current batch never enters its own weights): the next step uses steps 1..4,
    # last two [1,1],[9,9] -> [5, 5]; two before [2,2],[1,3] -> [1.5, 2.5]; r = [10/3, 2]
    rep, _ = _dwa_step(m, [3.0, 1.0], epoch=0)
    e1, e2 = math.exp(5 / 3), math.exp(1.0)
    torch.testing.assert_close(
        rep.weights, torch.tensor([2 * e1 / (e1 + e2), 2 * e2 / (e1 + e2)], dtype=torch.float64)
    )
    # state round trip mid-ring reproduces the next weights
    clone = build("dwa", 2, window=2)
    clone.load_state_dict(m.state_dict())
    a, _ = _dwa_step(m, [2.0, 5.0], epoch=0)
    b, _ = _dwa_step(clone, [2.0, 5.0], epoch=0)
    assert torch.equal(a.weights, b.weights)


def test_dwa_warns_when_the_run_ends_inside_its_warm_up() -> None:
    """The paper regime: 3000 steps of 2000 batches per epoch never leave the 2-epoch warm-up."""
    (msg,) = build("dwa", 7).schedule_warnings(total_steps=3000, steps_per_epoch=2000)
    assert "3000 steps" in msg and "2 epochs = 4000 steps" in msg and "window=32" in msg
    assert build("dwa", 7).schedule_warnings(total_steps=4001, steps_per_epoch=2000) == []
    assert build("dwa", 7, window=32).schedule_warnings(total_steps=3000, steps_per_epoch=2000) == []
    (msg,) = build("dwa", 7, window=32).schedule_warnings(total_steps=50, steps_per_epoch=2000)
    assert "64 steps" in msg
    assert build("ew", 7).schedule_warnings(10, 10) == []  # the default: no warnings
    with pytest.raises(ValueError, match="window"):
        build("dwa", 2, window=-1)


def test_uw_objective_weights_and_log_variance_gradient() -> None:
    G = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    m = build("uw", 2)
    assert m.method_parameters() == [m.log_vars]
    torch.testing.assert_close(m.log_vars.detach(), torch.full((2,), -0.5))
    ctx, theta, _ = linear_ctx(G, [1.0, 3.0])
    rep = m.backward(ctx)
    w = 0.5 * math.exp(0.5)  # ½ e^{−s} at s = −0.5
    torch.testing.assert_close(rep.weights, torch.full((2,), w, dtype=torch.float64))
    torch.testing.assert_close(theta.grad, torch.tensor([w, 2 * w], dtype=torch.float64))
    # ∂/∂s_i (½e^{−s_i}L_i + ½s_i) = −½e^{−s_i}L_i + ½
    expected = torch.tensor([-w * 1.0 + 0.5, -w * 3.0 + 0.5])
    torch.testing.assert_close(m.log_vars.grad, expected)


def test_uw_is_stationary_at_log_variance_equal_to_log_loss() -> None:
    m = build("uw", 3)
    L = [0.5, 2.0, 7.0]
    with torch.no_grad():
        m.log_vars.copy_(torch.log(torch.tensor(L)))
    ctx, _, _ = linear_ctx(torch.eye(3), L)
    m.backward(ctx)
    assert m.log_vars.grad.abs().max() < 1e-6


# ------------------------------------------------------------------------------------- UW-O / UW-SO
def test_uw_o_weights_are_inverse_losses_and_direction_is_grad_of_sum_log() -> None:
    G = torch.randn(3, 5, dtype=torch.float64)
    c = torch.tensor([0.5, 2.0, 8.0], dtype=torch.float64)
    ctx, theta, _ = linear_ctx(G, c)
    rep = build("uw_o", 3).backward(ctx)
    torch.testing.assert_close(rep.weights, 1 / (c + 1e-8))
    # ∇ Σ log L_i = Σ ∇L_i / L_i
    torch.testing.assert_close(theta.grad, (G / c[:, None]).sum(0))


def test_uw_o_update_is_invariant_to_per_task_loss_scaling() -> None:
    from test_mtl_contract import TinyMTL, batch, make_ctx

    grads = []
    for scales in (None, torch.tensor([1.0, 1e3, 1e-3], dtype=torch.float64)):
        torch.manual_seed(0)
        model = TinyMTL(3)
        x, y = batch(3, 0)
        # ε = 1e-12: the invariance is exact up to ε/L (1e-5 relative with the default ε at L ~ 1e-3)
        build("uw_o", 3, eps=1e-12).backward(make_ctx(model, x, y, scales=scales))
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.shared_parameters()]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-6, atol=1e-9)


def test_uw_so_pinned_weights() -> None:
    # L = [1, 0.5], τ = 1: softmax([1, 2]) = [1, e]/(1 + e) = [0.268941, 0.731059]
    ctx, _, _ = linear_ctx(torch.eye(2), [1.0, 0.5])
    rep = build("uw_so", 2).backward(ctx)
    expected = torch.tensor([0.268941, 0.731059], dtype=torch.float64)
    torch.testing.assert_close(rep.weights, expected, atol=1e-6, rtol=0)
    # τ = 2: softmax([0.5, 1])
    ctx, _, _ = linear_ctx(torch.eye(2), [1.0, 0.5])
    rep = build("uw_so", 2, tau=2.0).backward(ctx)
    torch.testing.assert_close(rep.weights, torch.softmax(torch.tensor([0.5, 1.0], dtype=torch.float64), 0))


@pytest.mark.parametrize("name", ["uw_o", "uw_so", "dwa", "rlw", "famo"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("losses", [[0.0, 1.0, 2.0], [1e8, 1e8, 3e8], [1e-8, 2e-8, 1.0], [0.0, 0.0, 0.0]])
def test_weights_are_finite_on_extreme_losses(name: str, dtype, losses) -> None:
    m = build(name, 3)
    w = m.weights(torch.tensor(losses, dtype=dtype))
    assert w.dtype == dtype and w.shape == (3,)
    assert torch.isfinite(w).all() and (w >= 0).all()


def test_uw_o_clamps_negative_losses_to_the_largest_weight() -> None:
    w = build("uw_o", 2).weights(torch.tensor([-1.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(w, torch.tensor([1e8, 1 / (1 + 1e-8)], dtype=torch.float64))


# ------------------------------------------------------------------------------------------ GradNorm
@pytest.mark.parametrize("level", ["parameter", "feature"])
def test_gradnorm_first_step_pinned(level: str) -> None:
    # norms n = [3, 1]; L = L(0) so r = 1; w = 1: G = w∘n = [3, 1], Ḡ = 2, target = [2, 2];
    # ∂L_grad/∂w = sign(G − target)∘n = [3, −1]; normalised by mean(n) = 2: [1.5, −0.5];
    # w ← [1, 1] − 0.025·[1.5, −0.5] = [0.9625, 1.0125], renormalised to sum 2: ×2/1.975.
    m = build("gradnorm", 2, level=level)
    G = torch.tensor([[3.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    ctx, theta, heads = linear_ctx(G, [1.0, 1.0])
    rep = m.backward(ctx)
    torch.testing.assert_close(rep.weights, torch.ones(2))
    torch.testing.assert_close(theta.grad, torch.tensor([3.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(heads.grad, torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(m.w, torch.tensor([0.9625, 1.0125], dtype=torch.float64) * (2 / 1.975))
    torch.testing.assert_close(m.initial_losses, torch.ones(2, dtype=torch.float64))


def test_gradnorm_balances_weighted_gradient_norms_and_keeps_weights_non_negative() -> None:
    m = build("gradnorm", 2)
    G = torch.tensor([[3.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    for _ in range(300):
        ctx, _, _ = linear_ctx(G, [1.0, 1.0])
        m.backward(ctx)
        assert (m.w >= 0).all() and abs(float(m.w.sum()) - 2) < 1e-9
    # equal w_i n_i with Σw = 2: 3 w_0 = w_1 -> w = [0.5, 1.5] (the sign update oscillates by ~w_lr)
    assert torch.allclose(m.w, torch.tensor([0.5, 1.5], dtype=torch.float64), atol=0.06)
    m = build("gradnorm", 2)
    G = torch.tensor([[1e4, 0.0], [0.0, 1.0]], dtype=torch.float64)
    for _ in range(300):
        ctx, _, _ = linear_ctx(G, [1.0, 1.0])
        m.backward(ctx)
        assert (m.w >= 0).all()


@pytest.mark.parametrize(
    "G",
    [[[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 1.0]], [[1e8, 0], [0, 1e-8]], [[1.0, 2.0], [2.0, 4.0]],
     [[1.0, 0.0], [-1.0, 0.01]], [[1e-8, 1e-8], [1e-8, -1e-8]]],
)
def test_gradnorm_edge_cases_are_finite(G) -> None:
    m = build("gradnorm", 2)
    for _ in range(3):
        ctx, theta, _ = linear_ctx(G, [0.0, 1.0], dtype=torch.float32)
        rep = m.backward(ctx)
        assert torch.isfinite(rep.weights).all() and torch.isfinite(theta.grad).all()
        assert torch.isfinite(m.w).all() and (m.w >= 0).all()
    if all(v == 0 for row in G for v in row):
        torch.testing.assert_close(m.w, torch.ones(2, dtype=torch.float64))  # no signal: unchanged


# ---------------------------------------------------------------------------------------------- FAMO
def test_famo_first_step_effective_weights_and_gradient() -> None:
    # ξ = 0 -> z = [½, ½]; ℓ = L + 1e-8; w = (z/ℓ)/Σ(z/ℓ) = [2/3, 1/3] for L = [1, 2]
    G = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    ctx, theta, heads = linear_ctx(G, [1.0, 2.0], new_losses=[0.5, 2.0])
    m = build("famo", 2)
    rep = m.backward(ctx)
    torch.testing.assert_close(rep.weights, torch.tensor([2 / 3, 1 / 3], dtype=torch.float64))
    torch.testing.assert_close(theta.grad, torch.tensor([2 / 3, 1 / 3], dtype=torch.float64))
    torch.testing.assert_close(heads.grad, torch.tensor([2 / 3, 2 / 3], dtype=torch.float64))  # w∘c
    # after the step: δ = log ℓ − log ℓ' = [log 2, 0]; Jᵀδ = z∘δ − z(zᵀδ) = [log2/4, −log2/4];
    # Adam's first step moves by −lr·sign(g): ξ = [−0.025, 0.025]
    m.after_step(ctx)
    expected = torch.tensor([-0.025, 0.025], dtype=torch.float64)
    torch.testing.assert_close(m.logits, expected, atol=1e-8, rtol=0)


def test_famo_logit_updates_equal_torch_adam_with_weight_decay() -> None:
    gen = torch.Generator().manual_seed(0)
    m = build("famo", 4)
    xi = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    ref = torch.optim.Adam([xi], lr=0.025, weight_decay=1e-3)
    for _ in range(6):
        L = torch.rand(4, generator=gen, dtype=torch.float64) + 0.1
        new = L * (0.5 + torch.rand(4, generator=gen, dtype=torch.float64))
        ctx, _, _ = linear_ctx(torch.eye(4), L, new_losses=new)
        m.backward(ctx)
        # reference: the gradient on ξ is Jᵀδ with J = diag(z) − zzᵀ, from the same ξ
        z = torch.softmax(xi.detach(), 0)
        delta = torch.log(L + 1e-8) - torch.log(new + 1e-8)
        J = torch.diag(z) - torch.outer(z, z)
        xi.grad = J.T @ delta
        ref.step()
        m.after_step(ctx)
        torch.testing.assert_close(m.logits, xi.detach(), rtol=1e-12, atol=1e-14)


def test_famo_guards() -> None:
    ctx, _, _ = linear_ctx(torch.eye(2), [1.0, 2.0])
    m = build("famo", 2)
    m.backward(ctx)
    with pytest.raises(ValueError, match="reevaluate"):
        m.after_step(ctx)
    ctx, _, _ = linear_ctx(torch.eye(2), [0.5, 2.0])
    with pytest.raises(ValueError, match="below min_loss"):
        build("famo", 2, min_loss=1.0).backward(ctx)
    with pytest.raises(RuntimeError, match="without a preceding backward"):
        build("famo", 2).after_step(linear_ctx(torch.eye(2), [1.0, 1.0], new_losses=[1.0, 1.0])[0])


@pytest.mark.parametrize("name,hp", [("dwa", {"tau": 0.0}), ("uw_so", {"tau": -1.0}), ("uw_o", {"eps": 0.0}),
                                     ("gradnorm", {"w_lr": 1.0}), ("famo", {"w_lr": 0.0}),
                                     ("gradnorm", {"alpha": -1.0}), ("famo", {"gamma": -1.0})])
def test_bad_hyperparameters_are_named(name: str, hp: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(hp))):
        build(name, 3, **hp)
