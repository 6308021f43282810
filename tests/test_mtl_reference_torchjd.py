"""Cross-checks of our MTL methods against torchjd (optional reference: `pip install -e .[ref]`).

Skipped as a whole when torchjd is not installed. Every test states the scale convention that relates
the two implementations (ours: EW's `G.sum(0)` is the reference scale, see training/mtl/base.py) and
asserts agreement only where the definitions coincide; documented differences are asserted as the
documented relation. Written against torchjd 0.18.0 (the version pinned in constraints.txt).

Gradient-combination methods are driven through `combine(G)` on a random task-gradient matrix G
(float64, T ∈ {2, 3, 5}, d = 20, plus conflict injection G[1] −= 1.5 G[0]); loss-weighting methods
through a real StepContext of the "linear harness" (L_i = G_i·θ + c_i·h_i at θ = 0, h = 1).
"""

from __future__ import annotations

import pytest
import torch

torchjd = pytest.importorskip("torchjd")
agg = pytest.importorskip("torchjd.aggregation")
scal = pytest.importorskip("torchjd.scalarization")

from mtl_harness import linear_ctx  # noqa: E402

from training.mtl import build  # noqa: E402

F64 = torch.float64
TASKS = (2, 3, 5)
DIM = 20


def task_matrix(T: int, conflict: bool, seed: int = 0, dtype: torch.dtype = F64) -> torch.Tensor:
    """Random G [T, DIM]; with `conflict`, task 1 is pushed against task 0 (G[1] −= 1.5 G[0])."""
    gen = torch.Generator().manual_seed(1000 * T + seed)
    G = torch.randn(T, DIM, generator=gen, dtype=F64)
    if conflict:
        G[1] -= 1.5 * G[0]
    return G.to(dtype)


CASES = [pytest.param(T, c, id=f"T{T}-{'conflict' if c else 'random'}") for T in TASKS for c in (False, True)]


def scalarizer_weights(scalarizer, losses: torch.Tensor) -> torch.Tensor:
    """Effective task weights of a torchjd scalarizer: ∂ scalar / ∂ losses."""
    L = losses.detach().clone().requires_grad_()
    (w,) = torch.autograd.grad(scalarizer(L), L)
    return w


# ------------------------------------------------------------------------------------- EW vs Sum
@pytest.mark.parametrize(("T", "conflict"), CASES)
def test_ew_shared_gradient_equals_torchjd_sum(T: int, conflict: bool) -> None:
    # Same scale: EW's update is G.sum(0), torchjd `Sum` is 1ᵀG.
    G = task_matrix(T, conflict)
    ctx, theta, _ = linear_ctx(G, torch.ones(T))
    build("ew", T).backward(ctx)
    torch.testing.assert_close(theta.grad, agg.Sum()(G), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------- MGDA
@pytest.mark.parametrize(("T", "conflict"), CASES)
def test_mgda_min_norm_objective_and_weights_match_torchjd(T: int, conflict: bool) -> None:
    # Same scale: α ∈ Δ for both. torchjd runs Frank-Wolfe (default ε = 1e-3, 100 iterations), we
    # solve to KKT, so with torchjd's defaults we compare the objective αᵀMα (ours can only be lower),
    # and with a tight Frank-Wolfe (ε = 1e-6, 10⁴ iterations) the weights themselves.
    G = task_matrix(T, conflict)
    M = G @ G.T
    result = build("mgda", T).combine(G)
    d, alpha = result.direction, result.weights
    assert abs(float(alpha.sum()) - 1.0) < 1e-12 and bool((alpha >= -1e-12).all())
    ref_default = agg.MGDA().gramian_weighting(M)
    obj_ours, obj_ref = float(alpha @ M @ alpha), float(ref_default @ M @ ref_default)
    assert obj_ours <= obj_ref * (1 + 1e-9) + 1e-12, (obj_ours, obj_ref)
    assert obj_ours == pytest.approx(obj_ref, rel=1e-3)
    ref_tight = agg.MGDA(epsilon=1e-6, max_iters=10000)
    torch.testing.assert_close(alpha, ref_tight.gramian_weighting(M), rtol=0, atol=1e-3)
    assert float(alpha @ M @ alpha) == pytest.approx(
        float(ref_tight.gramian_weighting(M) @ M @ ref_tight.gramian_weighting(M)), rel=1e-6, abs=1e-12)
    torch.testing.assert_close(d, alpha @ G)


# ------------------------------------------------------------------------------------- IMTL-G
@pytest.mark.parametrize(("T", "conflict"), CASES)
def test_imtl_g_equals_torchjd_imtlg(T: int, conflict: bool) -> None:
    # Same scale: Σα = 1 for both (M⁺n normalised by its sum).
    G = task_matrix(T, conflict)
    result = build("imtl_g", T).combine(G)
    d = result.direction
    alpha_ref = agg.IMTLG().gramian_weighting(G @ G.T)
    torch.testing.assert_close(result.weights, alpha_ref, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(d, agg.IMTLG()(G), rtol=1e-7, atol=1e-9)


def test_imtl_g_parallel_rows_match_torchjd_pseudo_inverse() -> None:
    # Linearly dependent rows: both use the pseudo-inverse (truncation thresholds differ slightly
    # but the parallel direction's eigenvalue is at round-off, far below either).
    G = task_matrix(3, False)
    G[2] = 2.0 * G[0]
    d = build("imtl_g", 3).combine(G).direction
    torch.testing.assert_close(d, agg.IMTLG()(G), rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------------------------------- PCGrad
@pytest.mark.parametrize(("T", "conflict"), CASES)
def test_pcgrad_seeded_equals_torchjd_pcgrad(T: int, conflict: bool) -> None:
    # Same scale (sum of projected gradients). Both draw one `torch.randperm(T)` per task i from the
    # global RNG and skip j = i, so a shared seed gives the same projection order for every T.
    G = task_matrix(T, conflict)
    torch.manual_seed(7)
    d = build("pcgrad", T).combine(G).direction
    torch.manual_seed(7)
    ref = agg.PCGrad()(G)
    torch.testing.assert_close(d, ref, rtol=1e-9, atol=1e-10)
    if T == 2:  # order-free: no seed needed
        d2 = build("pcgrad", 2).combine(G).direction
        torch.testing.assert_close(d2, agg.PCGrad()(G), rtol=1e-9, atol=1e-10)


# ------------------------------------------------------------------------------------- CAGrad
@pytest.mark.parametrize(("T", "conflict"), CASES)
@pytest.mark.parametrize("rescale", [0, 1])
def test_cagrad_equals_torchjd_times_tasks_over_rescale(T: int, conflict: bool, rescale: int) -> None:
    # Ours: α = T·(1/T + (√φ/‖g_w‖) w*) / divisor (official ×T "to match the sum loss", divisor 1 for
    # rescale 0, 1 + c² for rescale 1). torchjd `CAGrad(c)`: (1/T + (√φ/‖g_w‖) w*), no rescale.
    # So ours = T/divisor × torchjd. The inner problem min_{w∈Δ} wᵀM1/T + c√(1ᵀM1)/T·‖Gᵀw‖ is solved by
    # projected gradient here and by cvxpy/Clarabel there; where it is flat near its optimum w* differs
    # by up to ~3e-5, so we check the objective (ours no worse) and the weights to 1e-4 of their size.
    pytest.importorskip("cvxpy", reason="torchjd's CAGrad needs cvxpy + clarabel (torchjd[cagrad])")
    c = 0.4
    G = task_matrix(T, conflict)
    M = G @ G.T
    result = build("cagrad", T, c=c, rescale=rescale).combine(G)
    d, alpha = result.direction, result.weights
    factor = T / (1.0 + c * c if rescale == 1 else 1.0)
    ref = agg.CAGrad(c=c)
    alpha_ref = ref.gramian_weighting(M)
    torch.testing.assert_close(alpha, factor * alpha_ref, rtol=0,
                               atol=1e-4 * float(factor * alpha_ref.abs().max()))
    torch.testing.assert_close(d, alpha @ G)

    def objective(alpha: torch.Tensor) -> float:  # w* recovered from α = 1/T + k·w*, Σw* = 1
        w = (alpha - 1.0 / T) / (alpha - 1.0 / T).sum()
        return float(w @ M.sum(1) / T + c * M.sum().sqrt() / T * (w @ M @ w).sqrt())

    f_ours, f_ref = objective(alpha / factor), objective(alpha_ref)
    assert f_ours <= f_ref + 1e-8 * abs(f_ref), (f_ours, f_ref)


# ------------------------------------------------------------------------------------- GradVac
def test_gradvac_two_tasks_first_steps_equal_torchjd() -> None:
    # Same scale (sum of adjusted gradients), same EMA rule (updated for every pair). For T = 2 the
    # visiting order is irrelevant (the two implementations consume the RNG differently for T > 2).
    # Step 1 (φ̂ = 0) is PCGrad; later steps use the EMA targets, compared over 4 steps. eps = 1e-8
    # sits on our max-diagonal-normalised Gram matrix but on torchjd's raw one (and torchjd also puts
    # it in the cosine's denominator): relative differences of order eps, hence rtol 1e-6.
    ours = build("gradvac", 2, beta=0.5)
    ref = agg.GradVac(beta=0.5)
    for step in range(4):
        G = task_matrix(2, conflict=step % 2 == 0, seed=step)
        d = ours.combine(G).direction
        torch.testing.assert_close(d, ref(G), rtol=1e-6, atol=1e-8, msg=f"step {step}")
    torch.testing.assert_close(ours.targets, ref.gramian_weighting._phi_t.to(F64), rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------------------------------- Aligned-MTL
@pytest.mark.parametrize(("T", "conflict"), CASES)
@pytest.mark.parametrize("scale_mode", ["min", "median", "rmse"])
def test_alignedmtl_is_tasks_times_torchjd_default(T: int, conflict: bool, scale_mode: str) -> None:
    # Ours: α = B·1 (preference 1, SamsungLabs / LibMTL HEAD). torchjd: α = B·(1/T) by default, so
    # ours = T × torchjd; with torchjd's pref_vector = 1 they are equal.
    # "median" of an even number of eigenvalues: both take the lower middle one (torch.median).
    G = task_matrix(T, conflict)
    d = build("alignedmtl", T, scale_mode=scale_mode).combine(G).direction
    factor = float(T)
    torch.testing.assert_close(d, factor * agg.AlignedMTL(scale_mode=scale_mode)(G), rtol=1e-7, atol=1e-9)
    ones = agg.AlignedMTL(pref_vector=torch.ones(T, dtype=F64), scale_mode=scale_mode)
    torch.testing.assert_close(d, factor / T * ones(G), rtol=1e-7, atol=1e-9)


# ------------------------------------------------------------------------------------- GradDrop
@pytest.mark.parametrize(("T", "conflict"), CASES)
@pytest.mark.parametrize("leak", [0.0, 0.3])
def test_graddrop_parameter_level_seeded_equals_torchjd(T: int, conflict: bool, leak: float) -> None:
    # Our parameter-level form is documented as torchjd's matrix form (sign(Z) ≡ 1, no batch
    # reduction, one U ~ Unif(0,1) per column from `torch.rand` in G's dtype): same definition, same
    # draw, same scale (sum; leak 1 would be G.sum(0)). torchjd takes one leak per task.
    G = task_matrix(T, conflict)
    torch.manual_seed(11)
    d = build("graddrop", T, leak=leak).combine(G).direction
    torch.manual_seed(11)
    ref = agg.GradDrop(leak=torch.full((T,), leak, dtype=F64))(G)
    torch.testing.assert_close(d, ref, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(d, G.sum(0)), "the masks dropped nothing: the check would be vacuous"


# ------------------------------------------------------------------------------------- RGW
@pytest.mark.parametrize("T", TASKS)
def test_rgw_seeded_equals_torchjd_random_in_float32(T: int) -> None:
    # Same scale (softmax weights, Σλ = 1). We always draw randn(T) in float32 on the CPU (device-
    # independent seeds); torchjd draws in G's dtype, so the draws coincide for float32 G.
    G = task_matrix(T, True, dtype=torch.float32)
    torch.manual_seed(5)
    result = build("rgw", T).combine(G)
    d = result.direction
    torch.manual_seed(5)
    w_ref = agg.Random().weighting(G)
    torch.manual_seed(5)
    d_ref = agg.Random()(G)
    torch.testing.assert_close(result.weights.float(), w_ref, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(d, d_ref, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------- UW
@pytest.mark.parametrize("init", [0.0, -0.5])
def test_uw_objective_and_gradients_equal_torchjd_uw(init: float) -> None:
    # Same objective Σ ½e^{−s}L + ½s; torchjd initialises s = 0, ours −0.5 (LibMTL), so the reference
    # is set to the same init. Compared: objective, ∂/∂L (our weights) and ∂/∂s, over a few SGD steps.
    T = 3
    ours = build("uw", T, init_log_var=init).double()
    ref = scal.UW(T).double()
    with torch.no_grad():
        ref.log_var.fill_(init)
    opt_o = torch.optim.SGD(ours.method_parameters(), lr=0.1)
    opt_r = torch.optim.SGD(ref.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        L = (torch.rand(T, generator=gen, dtype=F64) * 3 + 0.1).requires_grad_()
        Lr = L.detach().clone().requires_grad_()
        obj_o, obj_r = ours.objective(L), ref(Lr)
        torch.testing.assert_close(obj_o, obj_r, rtol=1e-14, atol=1e-14)
        opt_o.zero_grad()
        opt_r.zero_grad()
        obj_o.backward()
        obj_r.backward()
        torch.testing.assert_close(L.grad, Lr.grad, rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(ours.weights(L.detach()), Lr.grad, rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(ours.log_vars.grad, ref.log_var.grad, rtol=1e-14, atol=1e-14)
        opt_o.step()
        opt_r.step()
    torch.testing.assert_close(ours.log_vars.detach(), ref.log_var.detach(), rtol=1e-14, atol=1e-14)


# ------------------------------------------------------------------------------------- UW-O
@pytest.mark.parametrize("T", TASKS)
def test_uw_o_direction_equals_torchjd_geometric_mean(T: int) -> None:
    # ∂ exp(mean log L)/∂L_i = GM/(T·L_i) ∝ 1/L_i: the same direction as UW-O's weights 1/(L+ε);
    # scales differ (UW-O: 1/L, GeometricMean: GM/(T·L)), so the weights are compared normalised.
    gen = torch.Generator().manual_seed(T)
    L = torch.rand(T, generator=gen, dtype=F64) * 5 + 0.01
    w = build("uw_o", T).weights(L)
    w_ref = scalarizer_weights(scal.GeometricMean(), L)
    torch.testing.assert_close(w / w.sum(), w_ref / w_ref.sum(), rtol=1e-7, atol=1e-12)


# ------------------------------------------------------------------------------------- DWA
def test_dwa_weights_equal_torchjd_dwa_over_epochs() -> None:
    # Same rule and scale (T·softmax(r/τ), uniform for the first two epochs). Epoch boundaries: ours
    # from ctx.epoch, torchjd from an explicit `step()` at the end of each epoch.
    T, tau = 3, 2.0
    ours = build("dwa", T, tau=tau)
    ref = scal.DWA(temperature=tau)
    gen = torch.Generator().manual_seed(4)
    seen_nonuniform = False
    for epoch in range(5):
        for _ in range(3):
            L = torch.rand(T, generator=gen, dtype=F64) * (2.0 / (epoch + 1)) + 0.05
            ctx, theta, _ = linear_ctx(torch.eye(T, dtype=F64), L, epoch=epoch)
            rep = ours.backward(ctx)
            w_ref = scalarizer_weights(ref, L)
            torch.testing.assert_close(rep.weights, w_ref, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(theta.grad, w_ref, rtol=1e-12, atol=1e-12)  # G = I
            seen_nonuniform |= not torch.allclose(w_ref, torch.ones(T, dtype=F64))
        ref.step()
    assert seen_nonuniform, "weights never left uniform: the comparison would be vacuous"


# ------------------------------------------------------------------------------------- FAMO
def test_famo_weights_and_logit_updates_equal_torchjd_famo() -> None:
    # Same scalarisation (effective weights (z/ℓ)/Σ(z/ℓ), Σw = 1) and same logit update (Adam with
    # weight decay on ξ, lr 0.025, γ 1e-3). The reference is cast to float64 like our buffers.
    T = 3
    ours = build("famo", T, w_lr=0.025, gamma=1e-3)
    ref = scal.FAMO(T, lr=0.025, weight_decay=1e-3).double()
    gen = torch.Generator().manual_seed(9)
    for step in range(4):
        L = torch.rand(T, generator=gen, dtype=F64) + 0.1
        new = L * (0.5 + torch.rand(T, generator=gen, dtype=F64))
        ctx, theta, _ = linear_ctx(torch.eye(T, dtype=F64), L, new_losses=new)
        rep = ours.backward(ctx)
        w_ref = scalarizer_weights(ref, L)
        torch.testing.assert_close(rep.weights, w_ref, rtol=1e-10, atol=1e-12, msg=f"step {step}")
        ours.after_step(ctx)
        ref.update(new)
        torch.testing.assert_close(ours.logits, ref._w.detach(), rtol=1e-10, atol=1e-12, msg=f"step {step}")
    assert float(ours.logits.abs().max()) > 0.01  # the logits actually moved
