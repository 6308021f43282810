"""Pinned values (derived by hand in comments) and the papers' properties, method by method."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from test_mtl_context import grads_of, make_context, make_problem

from training.mtl import build
from training.mtl.solvers import cagrad_weights, min_norm_simplex, nash_bargaining, project_simplex

f64 = torch.float64


def t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=f64)


def random_conflicting(T: int, n: int = 10, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    G = torch.randn(T, n, generator=gen, dtype=f64)
    G[1] -= 1.5 * G[0]
    return G


def close(actual: torch.Tensor, expected: list[float] | torch.Tensor, tol: float = 1e-9) -> None:
    exp = expected if isinstance(expected, torch.Tensor) else torch.tensor(expected, dtype=actual.dtype)
    torch.testing.assert_close(actual, exp.to(actual), rtol=tol, atol=tol)


# ---- solvers --------------------------------------------------------------------------------------
def test_project_simplex_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    grid = np.array([w for w in itertools.product(np.linspace(0, 1, 101), repeat=2) if sum(w) <= 1 + 1e-12])
    grid = np.column_stack([grid, 1 - grid.sum(1)])
    for _ in range(20):
        v = rng.normal(size=3) * 2
        p = project_simplex(v)
        assert p.min() >= 0 and abs(p.sum() - 1) < 1e-12
        assert np.sum((p - v) ** 2) <= np.min(np.sum((grid - v) ** 2, axis=1)) + 1e-12


# ---- MGDA -----------------------------------------------------------------------------------------
def test_mgda_pinned_values() -> None:
    m = build("mgda", 2)
    # orthogonal unit vectors: the min-norm point of the segment is the midpoint (0.5, 0.5)
    r = m.combine(t([[1, 0], [0, 1]]))
    close(r.direction, [0.5, 0.5])
    close(r.weights, [0.5, 0.5])
    # g1=(1,0), g2=(1,1): γ = g2·(g2−g1)/‖g1−g2‖² = 1 -> all weight on g1, d = (1, 0)
    r = m.combine(t([[1, 0], [1, 1]]))
    close(r.direction, [1.0, 0.0])
    close(r.weights, [1.0, 0.0])
    # l2 normalisation: unit gradients (1,0),(0,1) get α = (½,½); weights on the raw rows are α/‖g‖
    r = build("mgda", 2, normalization="l2").combine(t([[2, 0], [0, 1]]))
    close(r.direction, [0.5, 0.5])
    close(r.weights, [0.25, 0.5])


def test_mgda_matches_two_task_closed_form() -> None:
    for seed in range(10):
        G = random_conflicting(2, seed=seed)
        g1, g2 = G[0], G[1]
        gamma = float(torch.clamp(g2 @ (g2 - g1) / (g1 - g2).pow(2).sum(), 0, 1))  # weight on g1
        m = build("mgda", 2)
        close(m.combine(G).direction, gamma * g1 + (1 - gamma) * g2, tol=1e-9)


@pytest.mark.parametrize("T", [2, 3, 4, 5, 6, 7])
def test_mgda_kkt_min_norm_point_of_the_hull(T: int) -> None:
    for seed in range(5):
        G = random_conflicting(T, n=max(T + 2, 6), seed=seed)
        alpha = build("mgda", T).combine(G).weights
        M = G @ G.T
        assert alpha.min() >= 0 and abs(float(alpha.sum()) - 1) < 1e-12  # α ∈ Δ
        Ma, obj = M @ alpha, float(alpha @ M @ alpha)
        # KKT: min_t (Mα)_t = αᵀMα, and every t on the support attains it
        assert abs(float(Ma.min()) - obj) <= 1e-9 * float(M.diag().max())
        support = alpha > 1e-9
        assert torch.allclose(Ma[support], torch.full_like(Ma[support], obj), rtol=1e-8, atol=1e-12)
        # no point of a random sample of the simplex has a smaller norm
        torch.manual_seed(seed)
        samples = torch.distributions.Dirichlet(torch.ones(T, dtype=f64)).sample((4000,))
        assert obj <= float(torch.einsum("st,tu,su->s", samples, M, samples).min()) + 1e-12


def test_mgda_zero_row_stalls_every_task() -> None:
    G = random_conflicting(3)
    G[2] = 0
    r = build("mgda", 3).combine(G)
    close(r.weights, [0.0, 0.0, 1.0])  # the published behaviour: α = e_i, d = 0
    assert r.direction.abs().max() == 0


def test_min_norm_solver_reports_small_gap() -> None:
    M = np.array([[1.0, -0.5, 0.2], [-0.5, 1.0, 0.1], [0.2, 0.1, 0.4]])
    alpha, info = min_norm_simplex(M)
    assert info.residual <= 1e-10 and info.iterations <= 250


# ---- PCGrad ---------------------------------------------------------------------------------------
def test_pcgrad_pinned_values() -> None:
    # g1=(1,0), g2=(-1,1): g1·g2 = -1 < 0.
    # g1' = g1 - (-1/2) g2 = (0.5, 0.5); g2' = g2 - (-1/1) g1 = (0, 1); d = (0.5, 1.5) = 2 g1 + 1.5 g2
    r = build("pcgrad", 2).combine(t([[1, 0], [-1, 1]]))
    close(r.direction, [0.5, 1.5])
    close(r.weights, [2.0, 1.5])
    # no conflict: d = G.sum(0) exactly (the sum scale of EW)
    G = t([[1, 2, 0], [2, 1, 1], [0, 1, 3]])
    close(build("pcgrad", 3).combine(G).direction, G.sum(0))


def test_pcgrad_leaves_no_pairwise_conflict_for_two_tasks() -> None:
    for seed in range(10):
        G = random_conflicting(2, seed=seed)
        assert float(G[0] @ G[1]) < 0
        m = build("pcgrad", 2)
        # reconstruct g1', g2' from the Gram-space form: d = g1' + g2', g1' = g1 + c g2
        g1p = G[0] - (G[0] @ G[1]) / (G[1] @ G[1]) * G[1]
        g2p = G[1] - (G[1] @ G[0]) / (G[0] @ G[0]) * G[0]
        assert abs(float(g1p @ G[1])) < 1e-9 and abs(float(g2p @ G[0])) < 1e-9
        close(m.combine(G).direction, g1p + g2p)
        # the projected gradients no longer conflict with each other's original gradient
        assert float(g1p @ G[1]) >= -1e-9 and float(g2p @ G[0]) >= -1e-9


# ---- GradVac --------------------------------------------------------------------------------------
def test_gradvac_first_step_equals_pcgrad_for_two_tasks() -> None:
    for seed in range(5):
        G = random_conflicting(2, seed=seed)
        close(build("gradvac", 2).combine(G).direction, build("pcgrad", 2).combine(G).direction, tol=1e-7)


def test_gradvac_pinned_two_steps() -> None:
    m = build("gradvac", 2)  # beta = 0.5
    # step 1: cos((1,0),(1,1)) = 1/√2 > φ̂ = 0 -> no change; φ̂ = 0.5/√2 = 0.353553
    close(m.combine(t([[1, 0], [1, 1]])).direction, [2.0, 1.0])
    close(m.targets, [[0, 0.5 / math.sqrt(2)], [0.5 / math.sqrt(2), 0]])
    # step 2: g1=(1,0), g2=(0,1), φ = 0 < φ̂: coefficient ‖g1‖ φ̂ / (‖g2‖ √(1−φ̂²)) = 0.353553/0.935414
    c = (0.5 / math.sqrt(2)) / math.sqrt(1 - 0.125)
    d = m.combine(t([[1, 0], [0, 1]])).direction
    close(d, [1 + c, 1 + c], tol=1e-7)  # symmetric: g1' = (1, c), g2' = (c, 1)
    # after the adjustment the cosine equals the target: c/√(1+c²) = φ̂
    assert abs(c / math.sqrt(1 + c * c) - 0.5 / math.sqrt(2)) < 1e-12
    # EMA is updated for every pair (φ = 0 here): φ̂ = 0.5·0.353553
    close(m.targets[0, 1], torch.tensor(0.25 / math.sqrt(2), dtype=f64))


def test_gradvac_skips_pairs_with_a_zero_gradient() -> None:
    m = build("gradvac", 3)
    G = t([[1, 0], [-1, 1], [0, 0]])
    m.combine(G)
    assert m.targets[2].abs().max() == 0 and m.targets[:, 2].abs().max() == 0  # no cosine, no EMA
    assert float(m.targets[0, 1]) < 0  # the defined pair was updated: φ̂ = 0.5·cos < 0


# ---- GradDrop -------------------------------------------------------------------------------------
def test_graddrop_leak_one_is_ew_and_agreeing_signs_are_kept() -> None:
    G = random_conflicting(3)
    close(build("graddrop", 3, leak=1.0).combine(G).direction, G.sum(0))
    agree = G.abs()  # all tasks positive everywhere: P = 1 > U, every task kept
    close(build("graddrop", 3).combine(agree).direction, agree.sum(0))


def test_graddrop_parameter_level_seeded_formula() -> None:
    G = random_conflicting(3, n=50)
    torch.manual_seed(7)
    d = build("graddrop", 3, leak=0.2).combine(G).direction
    torch.manual_seed(7)
    P = 0.5 * (1 + G.sum(0) / G.abs().sum(0))
    U = torch.rand(50, dtype=f64)
    mask = ((P > U) & (G > 0)) | ((P < U) & (G < 0))
    close(d, ((0.2 + 0.8 * mask.double()) * G).sum(0))
    # with leak 0 each element keeps exactly one sign: all kept contributions share it
    torch.manual_seed(8)
    d0 = build("graddrop", 3).combine(G).direction
    torch.manual_seed(8)
    U = torch.rand(50, dtype=f64)
    keep = ((P > U) & (G > 0)) | ((P < U) & (G < 0))
    for k in range(50):
        kept = G[:, k][keep[:, k]]
        assert (kept > 0).all() or (kept < 0).all() or kept.numel() == 0
    close(d0, (keep.double() * G).sum(0))


def test_graddrop_feature_level_uses_sign_of_z_and_batch_reduction() -> None:
    model, x, y = make_problem(num_tasks=3)
    ctx = make_context(model, x, y)
    G_Z = ctx.feature_grads()
    torch.manual_seed(11)
    d = build("graddrop", 3, level="feature").combine_features(G_Z, ctx).direction
    # independent reference: per FPN level, masks from Σ_b sign(Z) ∇_i, broadcast over the batch
    torch.manual_seed(11)
    parts, off = [], 0
    for z in ctx.feature_leaves:
        B, k = z.shape[0], z[0].numel()
        g = G_Z[:, off : off + B * k].reshape(3, B, k)
        s = (torch.sign(z.detach()).reshape(1, B, k) * g).sum(1)
        P = 0.5 * (1 + s.sum(0) / s.abs().sum(0))
        U = torch.rand(k)
        keep = ((P > U) & (s > 0)) | ((P < U) & (s < 0))
        parts.append((keep.float().unsqueeze(1) * g).sum(0).reshape(-1))
        off += B * k
    close(d, torch.cat(parts), tol=1e-6)
    # sign(Z) matters: the parameter-level form (sign ≡ 1, no batch reduction) differs
    torch.manual_seed(11)
    assert not torch.allclose(build("graddrop", 3).combine(G_Z).direction, d)


# ---- RGW ------------------------------------------------------------------------------------------
def test_rgw_weights_are_seeded_softmax_of_randn() -> None:
    G = random_conflicting(4)
    torch.manual_seed(123)
    expected = torch.softmax(torch.randn(4), dim=0).double()
    torch.manual_seed(123)
    r = build("rgw", 4).combine(G)
    close(r.weights, expected, tol=1e-6)
    close(r.direction, r.weights @ G)
    assert abs(float(r.weights.sum()) - 1) < 1e-12


# ---- CAGrad ---------------------------------------------------------------------------------------
def cagrad_objective(w: np.ndarray, M: np.ndarray, c: float) -> np.ndarray:
    """F(w) = g_wᵀg0 + c‖g0‖‖g_w‖ for rows of w (the brute-force reference)."""
    T = M.shape[0]
    g0_norm = math.sqrt(M.sum()) / T
    return w @ M @ np.ones(T) / T + c * g0_norm * np.sqrt(np.einsum("st,tu,su->s", w, M, w))


@pytest.mark.parametrize("T", [2, 3])
def test_cagrad_solver_matches_brute_force_grid(T: int) -> None:
    for seed in range(4):
        G = random_conflicting(T, seed=seed).numpy()
        M = G @ G.T
        for c in (0.4, 0.8):
            w, _ = cagrad_weights(M / M.diagonal().max(), c)
            steps = np.linspace(0, 1, 2001 if T == 2 else 401)
            grid = np.array([p for p in itertools.product(steps, repeat=T - 1) if sum(p) <= 1 + 1e-12])
            grid = np.column_stack([grid, 1 - grid.sum(1)])
            best = cagrad_objective(grid, M, c).min()
            mine = cagrad_objective(w[None], M, c)[0]
            assert mine <= best + 1e-9 * abs(best) + 1e-12, (seed, c, mine, best)
            assert mine >= best - 1e-3 * abs(best)  # the grid is fine enough to be close


def test_cagrad_direction_satisfies_constraint_and_pinned_values() -> None:
    c = 0.4
    # orthogonal unit rows: w* = (½,½) by symmetry, g_w = g0, d = T(1+c)g0/(1+c²) = 1.4/1.16 (1, 1)
    m = build("cagrad", 2, c=c)
    close(m.combine(t([[1, 0], [0, 1]])).direction, [1.4 / 1.16, 1.4 / 1.16], tol=1e-7)
    # c = 0 is EW exactly (the official ×T "sum" scale)
    G = random_conflicting(3)
    close(build("cagrad", 3, c=0.0).combine(G).direction, G.sum(0))
    # constraint of the primal: the un-rescaled mean-scale direction lies on the ball ‖d − g0‖ = c‖g0‖
    for rescale, div in ((0, 1.0), (1, 1 + c * c), (2, 1 + c)):
        d = build("cagrad", 3, c=c, rescale=rescale).combine(G).direction * div / 3
        g0 = G.mean(0)
        assert abs(float((d - g0).norm()) - c * float(g0.norm())) < 1e-6 * float(g0.norm())


def test_cagrad_improves_the_worst_task_over_the_ball() -> None:
    """d maximises min_i g_iᵀd over ‖d − g0‖ ≤ c‖g0‖ (the paper's problem): compare random points."""
    c, G = 0.5, random_conflicting(3, n=6, seed=3)
    g0 = G.mean(0)
    d = build("cagrad", 3, c=c, rescale=0).combine(G).direction / 3
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(20000, 6, generator=gen, dtype=f64)
    r = torch.rand(20000, 1, generator=gen, dtype=f64) ** (1 / 6)
    ball = g0 + c * float(g0.norm()) * r * u / u.norm(dim=1, keepdim=True)
    assert float((G @ d).min()) >= float((ball @ G.T).min(dim=1).values.max()) - 1e-9


# ---- Nash-MTL -------------------------------------------------------------------------------------
def test_nash_pinned_orthogonal() -> None:
    # orthogonal rows (2,0), (0,1): α_i ‖g_i‖² α_i = 1 -> α = (1/2, 1); d = (1, 1), ‖d‖² = T = 2
    r = build("nashmtl", 2, max_norm=0.0).combine(t([[2, 0], [0, 1]]))
    close(r.direction, [1.0, 1.0], tol=1e-7)
    close(r.weights, [0.5, 1.0], tol=1e-7)
    # with the default max_norm = 1 the direction is clipped to norm 1
    d = build("nashmtl", 2).combine(t([[2, 0], [0, 1]])).direction
    close(d, [1 / math.sqrt(2), 1 / math.sqrt(2)], tol=1e-7)


@pytest.mark.parametrize("T", [2, 3, 5, 7])
def test_nash_bargaining_condition(T: int) -> None:
    for seed in range(5):
        G = random_conflicting(T, n=T + 5, seed=seed)
        r = build("nashmtl", T, max_norm=0.0).combine(G)
        d, alpha, M = r.direction, r.weights, G @ G.T
        assert alpha.min() > 0
        close(alpha * (M @ alpha), torch.ones(T, dtype=f64), tol=1e-7)  # α ⊙ (Mα) = 1
        assert abs(float(d @ d) - T) < 1e-6 * T  # ‖d‖² = T


def test_nash_zero_row_gets_zero_weight() -> None:
    G = random_conflicting(3)
    G[2] = 0
    alpha = build("nashmtl", 3, max_norm=0.0).combine(G).weights
    assert float(alpha[2]) == 0.0  # no utility to bargain with; the other two solve among themselves
    M = G[:2] @ G[:2].T
    close(alpha[:2] * (M @ alpha[:2]), torch.ones(2, dtype=f64), tol=1e-7)


def test_nash_newton_ill_conditioned_and_warm_start() -> None:
    M = np.array([[1.0, -0.999], [-0.999, 1.0]])  # nearly opposite gradients
    alpha, info = nash_bargaining(M, max_iter=20)
    assert np.abs(alpha * (M @ alpha) - 1).max() < 1e-6, info
    warm, info_warm = nash_bargaining(M, alpha0=alpha, max_iter=20)
    assert info_warm.iterations <= 1 and np.allclose(warm, alpha)


def test_nash_update_weights_every_reuses_alpha() -> None:
    G1, G2 = random_conflicting(3, seed=1), random_conflicting(3, seed=2)
    m = build("nashmtl", 3, max_norm=0.0, update_weights_every=2)
    a1 = m.combine(G1).weights
    close(m.combine(G2).weights, a1)  # step 1: reuse
    a3 = m.combine(G2).weights  # step 2: recompute for G2
    assert not torch.allclose(a3, a1)
    M2 = G2 @ G2.T
    close(a3 * (M2 @ a3), torch.ones(3, dtype=f64), tol=1e-7)


# ---- Aligned-MTL ----------------------------------------------------------------------------------
def test_aligned_pinned_values() -> None:
    # M = diag(4, 1): λ_min = 1, B = 1·diag(1/2, 1), α = B1 = (1/2, 1), d = (1, 1)
    r = build("alignedmtl", 2).combine(t([[2, 0], [0, 1]]))
    close(r.direction, [1.0, 1.0])
    close(r.weights, [0.5, 1.0])
    # orthogonal rows with equal norms: B = I, d = G.sum(0) (EW's scale)
    G = t([[3, 0, 0], [0, 3, 0], [0, 0, 3]])
    close(build("alignedmtl", 3).combine(G).direction, G.sum(0))


@pytest.mark.parametrize("mode", ["min", "median", "rmse"])
@pytest.mark.parametrize("T", [2, 3, 5, 7])
def test_aligned_gradients_have_equal_singular_values(T: int, mode: str) -> None:
    from training.mtl.methods.alignedmtl import balance_matrix

    G = random_conflicting(T, n=T + 4, seed=T)
    M = (G @ G.T).numpy()
    B = torch.from_numpy(balance_matrix(M, mode, float(torch.finfo(f64).eps)))
    sv = torch.linalg.svdvals(B @ G)
    assert float(sv.max() / sv.min()) < 1 + 1e-8  # condition number 1
    lam = np.linalg.eigvalsh(M)
    target = {"min": lam.min(), "median": np.sort(lam)[(lam.size - 1) // 2], "rmse": lam.mean()}[mode]
    close(sv, torch.full((T,), math.sqrt(target), dtype=f64), tol=1e-8)


def test_aligned_rank_truncation_for_parallel_rows() -> None:
    G = random_conflicting(3, n=8)
    G[2] = 2.0 * G[0]  # rank 2
    r = build("alignedmtl", 3).combine(G)
    assert torch.isfinite(r.direction).all() and r.extras["rank"] == 2.0
    from training.mtl.methods.alignedmtl import balance_matrix

    B = torch.from_numpy(balance_matrix((G @ G.T).numpy(), "min", float(torch.finfo(f64).eps)))
    sv = torch.linalg.svdvals(B @ G)
    # two equal non-zero singular values, the third direction removed
    assert float(sv[0] / sv[1]) < 1 + 1e-8 and float(sv[2]) < 1e-6 * float(sv[0])


# ---- IMTL -----------------------------------------------------------------------------------------
def test_imtl_g_pinned_and_equal_projections() -> None:
    # g1=(1,0), g2=(0,2): n = (1,2), M = diag(1,4), v = M⁻¹n = (1, 1/2), α = (2/3, 1/3), d = (2/3, 2/3)
    r = build("imtl_g", 2).combine(t([[1, 0], [0, 2]]))
    close(r.direction, [2 / 3, 2 / 3])
    close(r.weights, [2 / 3, 1 / 3])
    for T in (2, 3, 5, 7):
        G = random_conflicting(T, n=T + 3, seed=T)
        d = build("imtl_g", T).combine(G).direction
        proj = (G / G.norm(dim=1, keepdim=True)) @ d
        close(proj, torch.full((T,), float(proj[0]), dtype=f64), tol=1e-8)


def test_imtl_g_gram_form_equals_paper_closed_form() -> None:
    """Paper form: D = [g_1 − g_t], U = [u_1 − u_t] (t ≥ 2), α_{2:T} = g_1 Uᵀ (D Uᵀ)⁻¹, α_1 = 1 − Σ."""
    for T in (2, 3, 5):
        G = random_conflicting(T, n=T + 4, seed=10 + T)
        U = G / G.norm(dim=1, keepdim=True)
        D, Ud = G[0] - G[1:], U[0] - U[1:]
        rest = G[0] @ Ud.T @ torch.linalg.inv(D @ Ud.T)
        expected = torch.cat([1 - rest.sum().reshape(1), rest])
        close(build("imtl_g", T).combine(G).weights, expected, tol=1e-8)


def test_imtl_g_degenerate_cases() -> None:
    G = random_conflicting(3)
    G[2] = 0
    r = build("imtl_g", 3).combine(G)
    d = r.direction
    assert float(r.weights[2]) == 0.0  # a zero row: IMTL-G of the other tasks
    u = G[:2] / G[:2].norm(dim=1, keepdim=True)
    close(u @ d, torch.full((2,), float(u[0] @ d), dtype=f64), tol=1e-8)
    opposite = t([[1, 2], [-1, -2]])  # no d ≠ 0 has equal projections on u and −u
    assert build("imtl_g", 2).combine(opposite).direction.abs().max() == 0


def test_imtl_l_stationary_point_is_inverse_loss() -> None:
    m = build("imtl_l", 3)
    losses = torch.tensor([0.5, 2.0, 4.0])
    close(m.weights(losses), [1.0, 1.0, 1.0])
    opt = torch.optim.SGD(m.method_parameters(), lr=0.1)
    for _ in range(500):
        opt.zero_grad()
        m.objective(losses).backward()
        opt.step()
    close(m.weights(losses), 1 / losses, tol=1e-5)  # e^{s_i} = 1/L_i


def test_imtl_hybrid_on_tiny_model() -> None:
    model, x, y = make_problem(num_tasks=3)
    m = build("imtl", 3)
    s = torch.tensor([0.4, -0.3, 0.1])
    with torch.no_grad():
        m.s.copy_(s)
    ctx = make_context(model, x, y)
    losses = ctx.losses.detach().clone()
    G = ctx.param_grads()
    report = m.backward(ctx)
    # shared: IMTL-G on the scaled gradients e^{s_i} g_i, equal projections of d on every u_i
    d = grads_of(model.shared()).double()
    u = G.double() / G.double().norm(dim=1, keepdim=True)
    proj = u @ d
    close(proj, torch.full((3,), float(proj[0]), dtype=f64), tol=1e-4)
    close(report.weights.double() @ G.double(), d, tol=1e-5)
    # heads: gradients of the scaled losses Σ e^{s_i} L_i
    heads = grads_of(model.task())
    for p in model.parameters():
        p.grad = None
    (s.exp() * model.losses(model.features(x), y)).sum().backward()
    torch.testing.assert_close(heads, grads_of(model.task()), rtol=1e-5, atol=1e-7)
    # s: the IMTL-L gradient e^{s} L − 1
    close(m.s.grad, s.exp() * losses - 1, tol=1e-6)


def test_imtl_hybrid_with_zero_scales_equals_imtl_g() -> None:
    G = random_conflicting(4)
    close(build("imtl", 4).combine(G).direction, build("imtl_g", 4).combine(G).direction)
