"""Small solvers on the T x T Gram matrix shared by the gradient-combination methods.

Every solver works in float64 numpy on a Gram matrix `M = G Gᵀ` that has first been divided by a
positive scale (`normalized_gram`), so the same tolerances hold for gradients of norm 1e-8 and 1e8.
T is tiny (2..10), so plain Python loops over numpy arrays cost microseconds per iteration; no
cvxpy/scipy is needed.

- `gram`: the Gram matrix in float64, accumulated over column chunks (bounded extra memory).
- `project_simplex`: Euclidean projection onto {w ≥ 0, Σw = 1}.
- `min_norm_simplex`: argmin_{α∈Δ} αᵀMα (MGDA) by accelerated projected gradient, then an exact
  solve of the KKT system on the detected support ("polish") so the result satisfies KKT to
  round-off whenever the support is found.
- `nash_bargaining`: α > 0 with α ⊙ (Mα) = 1 by damped Newton on ½αᵀMα − Σ log α.
- `cagrad_weights`: argmin_{w∈Δ} wᵀb + κ √(wᵀMw) (CAGrad) by projected gradient with backtracking.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

#: relative eigenvalue cut-off unit for rank decisions (Aligned-MTL, IMTL-G): float32's machine epsilon
#: whatever the dtype of G, like the reference code (SamsungLabs' ProcrustesSolver uses
#: `torch.finfo().eps`, the default float32; torch.linalg.pinv on a float32 Gram matrix the same), so
#: the rank kept does not depend on whether the gradients were bf16, fp16, float32 or float64
RANK_EPS = float(torch.finfo(torch.float32).eps)
#: largest T for which MGDA's solver may fall back to checking every support (2^T − 1 small solves)
_ENUMERATE_MAX_T = 12
#: column chunk for the float64 Gram accumulation (T x 2^20 doubles = 8 MiB per task)
_GRAM_CHUNK = 1 << 20


def gram(G: Tensor) -> np.ndarray:
    """`G Gᵀ` `[T, T]` as float64 numpy, accumulated over column chunks of `G [T, n]`.

    float64 keeps the solvers' KKT checks meaningful for nearly parallel rows; chunking keeps the
    float64 copy of G bounded for the ~10^7-parameter backbone.
    """
    if G.dim() != 2:
        raise ValueError(f"G must be a 2-D task-gradient matrix [T, n], got shape {tuple(G.shape)}")
    T, n = G.shape
    M = torch.zeros(T, T, dtype=torch.float64, device=G.device)
    for start in range(0, n, _GRAM_CHUNK):
        block = G[:, start : start + _GRAM_CHUNK].to(torch.float64)
        M += block @ block.T
    return M.cpu().numpy()


def normalized_gram(M: np.ndarray) -> tuple[np.ndarray, float]:
    """`(M / s, s)` with s the largest diagonal entry (the largest squared task-gradient norm).

    s = 0 means every gradient is zero; then M is returned unchanged with s = 0 and callers handle
    that case explicitly (there is no direction to find).
    """
    s = float(np.max(np.diag(M))) if M.size else 0.0
    if not np.isfinite(s):
        raise FloatingPointError(f"Gram matrix has a non-finite diagonal: {np.diag(M)}")
    if s <= 0.0:
        return M.copy(), 0.0
    return M / s, s


def project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection of `v [T]` onto the probability simplex (sort-based, exact)."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    k = np.arange(1, v.size + 1)
    rho = np.nonzero(u - css / k > 0)[0][-1]
    theta = css[rho] / (rho + 1.0)
    return np.maximum(v - theta, 0.0)


@dataclass
class SolverInfo:
    """What a solver reports: iterations used and its final optimality residual."""

    iterations: int
    residual: float


def _kkt_on_support(M: np.ndarray, support: np.ndarray) -> np.ndarray | None:
    """Solve min αᵀMα s.t. Σα = 1, α_j = 0 off `support`; None if the KKT system is singular."""
    idx = np.nonzero(support)[0]
    k = idx.size
    K = np.zeros((k + 1, k + 1))
    K[:k, :k] = M[np.ix_(idx, idx)]
    K[:k, k] = 1.0
    K[k, :k] = 1.0
    rhs = np.zeros(k + 1)
    rhs[k] = 1.0
    if np.linalg.cond(K) > 1e12:
        return None
    sol = np.linalg.solve(K, rhs)
    alpha = np.zeros(M.shape[0])
    alpha[idx] = sol[:k]
    return alpha


def min_norm_gap(M: np.ndarray, alpha: np.ndarray) -> float:
    """Frank-Wolfe gap αᵀMα − min_t (Mα)_t ≥ 0; zero exactly at the min-norm point (KKT)."""
    Ma = M @ alpha
    return float(alpha @ Ma - Ma.min())


def _polish(M: np.ndarray, alpha: np.ndarray) -> list[np.ndarray]:
    """Exact KKT points on α's support, for a few support thresholds, that are feasible (α ≥ 0).

    First-order iterates leave tiny positive entries off the true support; trying several
    thresholds finds the support well before those entries reach exactly zero.
    """
    out = []
    for thr in (1e-9, 1e-6, 1e-3):
        exact = _kkt_on_support(M, alpha > thr * alpha.max())
        if exact is not None and exact.min() >= -1e-12:
            exact = np.maximum(exact, 0.0)
            out.append(exact / exact.sum())
    return out


def min_norm_simplex(
    M: np.ndarray, max_iter: int = 250, tol: float = 1e-10
) -> tuple[np.ndarray, SolverInfo]:
    """argmin_{α ∈ Δ} αᵀMα for a (normalised) PSD Gram matrix `M [T, T]`.

    Accelerated projected gradient (FISTA with adaptive restart) from uniform α; every few
    iterations the KKT system on the current support is solved exactly ("polish"), and the solver
    stops as soon as that point (or the iterate) has an FW gap ≤ `tol`. The polish gives KKT to
    round-off once the support is identified, which plain first-order iterations cannot reach in
    float64. If `max_iter` is reached first (ill-conditioned hulls), every support is checked
    exactly for T ≤ 12. All-zero M: every α gives d = 0; uniform α is returned (documented choice).
    """
    T = M.shape[0]
    alpha = np.full(T, 1.0 / T)
    if not np.any(M):
        return alpha, SolverInfo(0, 0.0)
    L = 2.0 * max(float(np.linalg.eigvalsh(M)[-1]), 1e-300)
    y, t_k, iters = alpha.copy(), 1.0, 0
    f_prev = float(alpha @ M @ alpha)
    best, best_gap = alpha, min_norm_gap(M, alpha)
    while iters < max_iter and best_gap > tol:
        iters += 1
        new = project_simplex(y - (2.0 * (M @ y)) / L)
        f_new = float(new @ M @ new)
        if f_new > f_prev:  # adaptive restart keeps the accelerated method monotone
            t_k, y = 1.0, alpha.copy()
        else:
            t_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t_k * t_k))
            y = new + ((t_k - 1.0) / t_next) * (new - alpha)
            alpha, t_k, f_prev = new, t_next, f_new
        candidates = [alpha]
        if iters % 5 == 0 or iters == max_iter:
            candidates += _polish(M, alpha)
        for cand in candidates:
            gap = min_norm_gap(M, cand)
            if gap < best_gap:
                best, best_gap = cand, gap
    if best_gap > tol and T <= _ENUMERATE_MAX_T:
        # ill-conditioned hulls converge slowly; the min-norm point is the exact KKT point of one
        # support, so checking every support (2^T − 1 tiny solves) finds it
        for mask in range(1, 1 << T):
            support = np.array([(mask >> k) & 1 for k in range(T)], dtype=bool)
            exact = _kkt_on_support(M, support)
            if exact is None or exact.min() < -1e-12:
                continue
            exact = np.maximum(exact, 0.0)
            exact /= exact.sum()
            gap = min_norm_gap(M, exact)
            if gap < best_gap:
                best, best_gap = exact, gap
    return best, SolverInfo(iters, best_gap)


def nash_bargaining(
    M: np.ndarray,
    alpha0: np.ndarray | None = None,
    max_iter: int = 20,
    tol: float = 1e-10,
    ridge: float = 1e-12,
) -> tuple[np.ndarray, SolverInfo]:
    """α > 0 with α_i (Mα)_i = 1 for a normalised Gram matrix `M [T, T]` (Nash-MTL).

    Damped Newton on the strictly convex f(α) = ½αᵀ(M + ridge·I)α − Σ log α_i (its stationarity
    condition is exactly α ⊙ (Mα) = 1 up to the ridge), with a fraction-to-boundary rule keeping
    α > 0 and Armijo backtracking. The ridge makes f coercive when M is singular in a direction with
    a non-negative combination (e.g. a zero gradient row, whose α_i then becomes ~1/√ridge instead of
    infinite); it changes the solution by O(ridge) otherwise. `alpha0` warm starts (Nash-MTL state);
    by default α starts at c·1 with c minimising f along the ray.
    """
    T = M.shape[0]
    A = M + ridge * np.eye(T)

    def f(a: np.ndarray) -> float:
        return float(0.5 * a @ A @ a - np.log(a).sum())

    if alpha0 is not None and np.all(np.isfinite(alpha0)) and np.all(alpha0 > 0):
        alpha = alpha0.astype(np.float64).copy()
    else:
        alpha = np.full(T, np.sqrt(T / float(np.ones(T) @ A @ np.ones(T))))
    iters = 0
    while iters < max_iter:
        grad = A @ alpha - 1.0 / alpha
        if float(np.abs(alpha * (A @ alpha) - 1.0).max()) <= tol:
            break
        iters += 1
        H = A + np.diag(1.0 / alpha**2)
        step = -np.linalg.solve(H, grad)
        neg = step < 0
        t = min(1.0, 0.99 * float(np.min(-alpha[neg] / step[neg]))) if np.any(neg) else 1.0
        f0, slope = f(alpha), float(grad @ step)
        while t > 1e-12 and f(alpha + t * step) > f0 + 1e-4 * t * slope:
            t *= 0.5
        alpha = alpha + t * step
    res = float(np.abs(alpha * (A @ alpha) - 1.0).max())
    return alpha, SolverInfo(iters, res)


def cagrad_weights(
    M: np.ndarray, c: float, max_iter: int = 500, tol: float = 1e-12, eps: float = 1e-12
) -> tuple[np.ndarray, SolverInfo]:
    """argmin_{w∈Δ} F(w) = wᵀb + κ√(wᵀMw + eps), b = M1/T, κ = c√(1ᵀM1)/T (CAGrad, Gram form).

    Projected gradient with Armijo backtracking from uniform w; stops when the objective decreases
    by less than `tol` (relative). `eps` smooths the square root where g_w = 0 (the reference adds
    1e-8 on the raw scale; here M is normalised). Returns w and SolverInfo(iterations, F(w)).
    """
    T = M.shape[0]
    ones = np.ones(T)
    b = M @ ones / T
    kappa = c * np.sqrt(max(float(ones @ M @ ones), 0.0)) / T

    def objective(w: np.ndarray) -> float:
        return float(w @ b + kappa * np.sqrt(max(float(w @ M @ w), 0.0) + eps))

    def grad(w: np.ndarray) -> np.ndarray:
        return b + kappa * (M @ w) / np.sqrt(max(float(w @ M @ w), 0.0) + eps)

    w = np.full(T, 1.0 / T)
    fw, step, iters = objective(w), 1.0, 0
    while iters < max_iter:
        iters += 1
        g = grad(w)
        step = min(step * 2.0, 1e6)  # let the step grow back after a hard region
        while True:
            cand = project_simplex(w - step * g)
            fc = objective(cand)
            if fc <= fw - 1e-4 * float(g @ (w - cand)) or step < 1e-14:
                break
            step *= 0.5
        done = fw - fc <= tol * max(abs(fw), 1e-300)
        if fc <= fw:
            w, fw = cand, fc
        if done:
            break
    return w, SolverInfo(iters, fw)
