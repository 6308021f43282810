"""FD, feature disentanglement (Mao et al., arXiv 2402.03557): how much the tasks share locations of Z.

Saliency of task i at location j of the shared representation Z: `s_ij = |∂L_i/∂Z_j|`. Normalised
across tasks, `p_ij = s_ij / Σ_k s_kj`, it is a distribution over tasks per location, whose entropy
`H_j = −Σ_i p_ij log p_ij` (natural log, in [0, log T]) is 0 when one task owns the location and
log T when all tasks use it equally. FD is the mean of H_j over locations; `normalized=True` divides
by log T so it lies in [0, 1].

Locations are the elements of the saliency tensors after the task dimension, i.e. (sample, channel,
y, x) for per-sample feature gradients: no batch reduction, so a location is never a mix of images.

Neighbourhood smoothing (the j−1, j, j+1 of the paper's Figure 1; its exact meaning is unconfirmed):
- `window=1` (default): none — the formal definition above.
- `window=3, mode="box"`: box-filter each task's saliency along `axis` before normalising
  (`s̃_ij = Σ_{k∈N(j)} s_ik`).
- `window=3, mode="mean"`: average the per-location task distributions of the neighbours
  (`p̄_j = mean_{k∈N(j)} p_k`) before taking the entropy.
`axis` is one dimension (a 1-D neighbourhood, default the last one, i.e. x for [T, B, C, H, W]) or a
tuple of dimensions (e.g. (-2, -1): a window×window spatial neighbourhood). At the borders the
neighbourhood is truncated (`padding="truncate"`, default) or the border value is repeated
(`padding="replicate"`). Smoothing can raise or lower FD: every smoothed location's entropy is at
least the (saliency-weighted) mean of its neighbours' entropies (entropy is concave), but a strong
single-task location spreads its low entropy over weak shared neighbours (pinned in the tests).

Locations where no task has any saliency (`Σ_k s_kj = 0`; ReLU sparsity, or image regions no ROI
touched) carry no information about sharing: `zero="skip"` (default) leaves them out of the mean,
`zero="uniform"` counts them as uniform (entropy log T), `zero="count"` counts them with the value
the formula gives (0 with the L1 normalisation, log T with a softmax). In "mean" mode a skipped
location also drops out of its neighbours' averages. If every location is skipped FD is NaN.

`eps` (default 0): the authors' code (Pylon `utils/gradients.py::get_entropy`) normalises with
`s / (Σ_k s_k + 1e-7)` and takes `−Σ p log(p + 1e-7)` over every location. `zero="count", eps=1e-7`
reproduces it exactly (window 1, either temperature); it makes FD depend on the gradient scale
(gradients of norm ≲ 1e-7 per location read as low entropy) and counts zero-saliency locations as 0,
so it is NOT the default: `window=1, zero="skip", eps=0` is the formal definition, which the
authors' code matches only where some task has saliency ≫ 1e-7.

`temperature > 0` replaces the L1 normalisation by `softmax(s/temperature)` over tasks (the authors'
code offers both); with a box window the softmax is taken of the neighbourhood *mean* so that the
temperature keeps its scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

MODES = ("box", "mean")
ZERO_RULES = ("skip", "uniform", "count")
PADDINGS = ("truncate", "replicate")


def _window_sum(x: Tensor, dim: int, radius: int, padding: str) -> Tensor:
    """Sum of `x` over the neighbours within `radius` along `dim` (separable box filter)."""
    n = x.shape[dim]
    out = x.clone()
    for k in range(1, radius + 1):
        for shift in (k, -k):
            if padding == "replicate":
                idx = (torch.arange(n, device=x.device) + shift).clamp_(0, n - 1)
                out += x.index_select(dim, idx)
            elif n > k:
                # out[j] += x[j + shift] where j + shift is inside; outside neighbours are dropped
                dst = out.narrow(dim, max(0, -shift), n - k)
                dst += x.narrow(dim, max(0, shift), n - k)
    return out


def _smooth(x: Tensor, dims: Sequence[int], radius: int, padding: str) -> Tensor:
    for d in dims:
        x = _window_sum(x, d, radius, padding)
    return x


def _normalise(s: Tensor, temperature: float, eps: float = 0.0) -> Tensor:
    """Distribution over tasks (dim 0) per location (`eps` added to the L1 total, as the authors' code)."""
    if temperature > 0:
        return torch.softmax(s / temperature, dim=0)
    total = s.sum(dim=0, keepdim=True)
    if eps > 0:
        return s / (total + eps)
    return s / torch.where(total > 0, total, torch.ones_like(total))


def _entropy(p: Tensor, eps: float = 0.0) -> Tensor:
    if eps > 0:
        return -(p * torch.log(p + eps)).sum(dim=0)  # the authors' −Σ p log(p + eps)
    return -torch.special.xlogy(p, p).sum(dim=0)  # 0·log 0 = 0


def _resolve_axes(axis: int | Sequence[int], ndim: int, index: int) -> list[int]:
    axes = [axis] if isinstance(axis, int) else list(axis)
    if not axes:
        raise ValueError("axis: expected at least one dimension for the neighbourhood, got ()")
    out = []
    for a in axes:
        if not isinstance(a, int) or not -ndim <= a < ndim:
            raise ValueError(
                f"axis: dimension {a!r} does not exist in saliency[{index}] with {ndim} dimensions"
            )
        a = a % ndim
        if a == 0:
            raise ValueError("axis: dimension 0 is the task dimension; neighbours run along a location axis")
        out.append(a)
    if len(set(out)) != len(out):
        raise ValueError(f"axis: repeated dimension in {axis!r}")
    return out


def _entropy_sum(
    s: Tensor, window: int, mode: str, axes: list[int], zero: str, padding: str, temperature: float,
    eps: float = 0.0,
) -> tuple[float, int]:
    """(Σ_j H_j over counted locations, number of counted locations) for one saliency tensor."""
    T = s.shape[0]
    s = s.abs()
    if s.dtype in (torch.float16, torch.bfloat16):
        s = s.float()  # normalisation and logs in at least float32
    radius = window // 2
    if window > 1 and mode == "box":
        s = _smooth(s, axes, radius, padding)
        if temperature > 0:
            # keep the softmax's scale: divide the window sum by the number of neighbours summed
            ones = torch.ones((1, *s.shape[1:]), dtype=s.dtype, device=s.device)
            s = s / _smooth(ones, axes, radius, padding)
    total = s.sum(dim=0)
    has_signal = total > 0
    p = _normalise(s, temperature, eps)
    if window > 1 and mode == "mean":
        valid = has_signal if zero == "skip" else torch.ones_like(has_signal)
        if zero == "uniform":
            p = torch.where(has_signal.unsqueeze(0), p, torch.full_like(p, 1.0 / T))
        v = valid.to(p.dtype)
        p = _smooth(p * v.unsqueeze(0), axes, radius, padding)
        weight = _smooth(v.unsqueeze(0), axes, radius, padding)[0]
        counted = weight > 0
        p = p / torch.where(counted, weight, torch.ones_like(weight)).unsqueeze(0)
        H = _entropy(p, eps)
    else:
        H = _entropy(p, eps)
        if zero == "count":
            counted = torch.ones_like(has_signal)
        elif zero == "uniform":
            counted = torch.ones_like(has_signal)
            H = torch.where(has_signal, H, torch.full_like(H, math.log(T)))
        else:
            counted = has_signal
    return float(H[counted].double().sum()), int(counted.sum())


def feature_disentanglement(
    saliency: Tensor | Sequence[Tensor],
    window: int = 1,
    mode: str = "box",
    axis: int | Sequence[int] = -1,
    zero: str = "skip",
    normalized: bool = False,
    padding: str = "truncate",
    temperature: float = 0.0,
    eps: float = 0.0,
) -> float:
    """FD: mean over locations of the entropy of the per-location task distribution of saliency.

    saliency: `[T, *locations]` (absolute values are taken, so raw gradients ∂L_i/∂Z work too), or a
        sequence of such tensors with the same T (e.g. one per FPN level); the mean runs over the
        locations of all of them.
    window: odd neighbourhood size, 1 = no smoothing. mode: "box" | "mean" (see the module docstring).
    axis: dimension(s) of each tensor the neighbourhood runs along (never 0, the task dimension).
    zero: "skip" | "uniform" | "count", the rule for locations without saliency. padding: "truncate" |
    "replicate". normalized: divide by log T. temperature: 0 = L1 normalisation, > 0 = softmax(s / T°).
    eps: stabiliser of the authors' code (1e-7 there; with zero="count" their FD exactly), 0 = none.
    Returns NaN when every location is skipped.
    """
    total, count, T = feature_disentanglement_sums(
        saliency, window, mode, axis, zero, padding, temperature, eps
    )
    return fd_from_sums(total, count, T, normalized)


def fd_from_sums(total: float, count: float, num_tasks: int, normalized: bool = False) -> float:
    """FD from `feature_disentanglement_sums` (summed over ranks under data parallelism: the mean
    entropy over every rank's locations is then exactly the single-process FD of the global batch)."""
    if count == 0:
        return math.nan
    fd = total / count
    return fd / math.log(num_tasks) if normalized else fd


def feature_disentanglement_sums(
    saliency: Tensor | Sequence[Tensor],
    window: int = 1,
    mode: str = "box",
    axis: int | Sequence[int] = -1,
    zero: str = "skip",
    padding: str = "truncate",
    temperature: float = 0.0,
    eps: float = 0.0,
) -> tuple[float, int, int]:
    """(Σ_j H_j over the counted locations, number of counted locations, T): FD's numerator and
    denominator (arguments as `feature_disentanglement`), so that parts of a batch can be pooled.
    Long for a reason: one check per option with its own message, then one pass over the tensors.
    """
    tensors = [saliency] if isinstance(saliency, Tensor) else list(saliency)
    if not tensors:
        raise ValueError("saliency: expected a tensor [T, ...] or a non-empty sequence of them, got []")
    if not isinstance(window, int) or window < 1 or window % 2 == 0:
        raise ValueError(
            f"window: expected an odd positive int (1 = no smoothing, 3 = j-1..j+1), got {window!r}"
        )
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    if zero not in ZERO_RULES:
        raise ValueError(f"zero: expected one of {ZERO_RULES}, got {zero!r}")
    if padding not in PADDINGS:
        raise ValueError(f"padding: expected one of {PADDINGS}, got {padding!r}")
    if not temperature >= 0:
        raise ValueError(f"temperature: expected >= 0 (0 = L1 normalisation), got {temperature!r}")
    if zero == "count" and window > 1 and mode == "mean":
        raise ValueError(
            "zero: 'count' keeps zero-saliency locations with p = 0, which is no distribution to average "
            "in mode='mean'; use window=1 (the authors' code has no smoothing), mode='box' or another rule"
        )
    if not eps >= 0:
        raise ValueError(f"eps: expected >= 0 (0 = exact; the authors' code uses 1e-7), got {eps!r}")
    T = None
    total, count = 0.0, 0
    for k, s in enumerate(tensors):
        if not isinstance(s, Tensor):
            raise TypeError(f"saliency[{k}]: expected a torch.Tensor [T, ...], got {type(s).__name__}")
        if s.dim() < 2:
            raise ValueError(
                f"saliency[{k}]: expected [T, *locations] with >= 2 dims, got shape {tuple(s.shape)}"
            )
        if T is None:
            T = s.shape[0]
            if T < 2:
                raise ValueError(
                    f"saliency: FD compares tasks; expected T >= 2 rows, got shape {tuple(s.shape)}"
                )
        elif s.shape[0] != T:
            raise ValueError(f"saliency[{k}]: expected {T} tasks in dim 0 like saliency[0], got {s.shape[0]}")
        if not bool(torch.isfinite(s).all()):
            raise ValueError(f"saliency[{k}]: expected finite values, found NaN/inf")
        axes = _resolve_axes(axis, s.dim(), k) if window > 1 else []
        with torch.no_grad():
            h, c = _entropy_sum(s.detach(), window, mode, axes, zero, padding, temperature, eps)
        total += h
        count += c
    assert T is not None  # at least one saliency tensor was read
    return total, count, T
