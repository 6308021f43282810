"""Pure diagnostics on constructed inputs: FD, GDS/GMS/conflict ratio, inter-sample, ranking similarity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau

from training.diagnostics import (
    GradientSimilarity,
    conflict_ratio,
    feature_disentanglement,
    gds,
    gms,
    inter_task_vs_inter_sample,
    pairwise_cosine,
    per_sample_view,
    ranking_similarity,
)

# ---- FD ---------------------------------------------------------------------------------------


def _one_task_per_location(T: int = 4, m: int = 12) -> torch.Tensor:
    s = torch.zeros(T, m)
    s[torch.arange(m) % T, torch.arange(m)] = torch.rand(m) + 0.5
    return s


def test_fd_one_task_per_location_is_zero() -> None:
    assert feature_disentanglement(_one_task_per_location()) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("T", [2, 3, 7])
def test_fd_uniform_is_log_t(T: int) -> None:
    s = torch.full((T, 5, 6), 0.3)
    assert feature_disentanglement(s) == pytest.approx(math.log(T), rel=1e-6)
    assert feature_disentanglement(s, normalized=True) == pytest.approx(1.0, rel=1e-6)
    # raw signed gradients give the same value: saliency is |∂L/∂Z|
    signs = torch.where(torch.rand(T, 5, 6) > 0.5, 1.0, -1.0)
    assert feature_disentanglement(s * signs) == pytest.approx(math.log(T), rel=1e-6)


def test_fd_known_mixed_entropy_and_list_input() -> None:
    # location 0: p = (0.5, 0.5) -> log 2; location 1: one task -> 0; the list pools all locations
    a = torch.tensor([[1.0, 2.0], [1.0, 0.0]])
    b = torch.tensor([[3.0], [3.0]])  # another "level" with one location of entropy log 2
    assert feature_disentanglement(a) == pytest.approx(math.log(2) / 2)
    assert feature_disentanglement([a, b]) == pytest.approx(2 * math.log(2) / 3)


def test_fd_zero_saliency_rules() -> None:
    s = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]])  # middle location: no task at all
    assert feature_disentanglement(s, zero="skip") == pytest.approx(0.0)
    assert feature_disentanglement(s, zero="uniform") == pytest.approx(math.log(2) / 3)
    assert math.isnan(feature_disentanglement(torch.zeros(3, 4)))
    assert feature_disentanglement(torch.zeros(3, 4), zero="uniform") == pytest.approx(math.log(3))


def test_fd_smoothing_changes_values_as_documented() -> None:
    # alternate ownership along the axis: disentangled per element, shared per neighbourhood
    s = _one_task_per_location(T=2, m=9)
    assert feature_disentanglement(s, window=1) == pytest.approx(0.0, abs=1e-7)
    box = feature_disentanglement(s, window=3, mode="box")
    mean = feature_disentanglement(s, window=3, mode="mean")
    assert 0.3 < box <= math.log(2) and 0.3 < mean <= math.log(2)
    # "mean" averages distributions (one-hot here), so it ignores the magnitudes that "box" weighs:
    # for a one-hot neighbourhood j-1, j, j+1 = (A, B, A) mean gives p = (2/3, 1/3) exactly
    inner = torch.zeros(2, 3)
    inner[0, 0], inner[1, 1], inner[0, 2] = 1.0, 5.0, 1.0
    p = torch.tensor([2 / 3, 1 / 3])
    h_mean_centre = float(-(p * p.log()).sum())
    h = feature_disentanglement(inner, window=3, mode="mean", zero="skip")
    # borders (truncate): (A,B) -> (1/2,1/2) twice; centre: (2/3,1/3)
    assert h == pytest.approx((2 * math.log(2) + h_mean_centre) / 3, rel=1e-6)
    pb = torch.tensor([2 / 7, 5 / 7])  # box: saliency sums (2, 5) at the centre
    h_box = feature_disentanglement(inner, window=3, mode="box")
    expected_box = (
        2 * float(-(torch.tensor([1 / 6, 5 / 6]).log() * torch.tensor([1 / 6, 5 / 6])).sum())
        + float(-(pb * pb.log()).sum())
    ) / 3
    assert h_box == pytest.approx(expected_box, rel=1e-6)
    # on random saliency smoothing raises FD (entropy is concave)...
    r = torch.rand(3, 4, 8, 8) ** 4
    assert feature_disentanglement(r, window=3, axis=(-2, -1)) >= feature_disentanglement(r) - 1e-9


def test_fd_smoothing_can_lower_fd() -> None:
    """...but not always: a strong single-task location spreads its low entropy over weak shared ones."""
    s = torch.tensor([[100.0, 0.5, 0.5], [0.0, 0.5, 0.5]])
    plain = feature_disentanglement(s)  # (0 + log 2 + log 2) / 3
    assert plain == pytest.approx(2 * math.log(2) / 3)

    def h(p: list[float]) -> float:
        q = torch.tensor(p) / sum(p)
        return float(-(q * q.log()).sum())

    # box sums (truncate): (100.5, 0.5), (101, 1), (1, 1)
    smoothed = feature_disentanglement(s, window=3, mode="box")
    assert smoothed == pytest.approx((h([100.5, 0.5]) + h([101, 1]) + h([1, 1])) / 3, rel=1e-6)
    assert smoothed < plain - 0.2  # 0.260 vs 0.462


def _authors_fd(s: torch.Tensor, temperature: float = 0.0) -> float:
    """The FD paper's authors' formula written out (Pylon get_entropy): every location counts."""
    a = s.abs().reshape(s.shape[0], -1).double()
    p = torch.softmax(a / temperature, 0) if temperature > 0 else a / (a.sum(0, keepdim=True) + 1e-7)
    return float((-(p * torch.log(p + 1e-7)).sum(0)).mean())


def test_fd_authors_variant_reproduces_their_formula_and_its_scale_dependence() -> None:
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(3, 4, 5, generator=gen) ** 3
    s[:, 0, :2] = 0.0  # locations no task uses
    for temperature in (0.0, 0.5):
        ours = feature_disentanglement(s, zero="count", eps=1e-7, temperature=temperature)
        assert ours == pytest.approx(_authors_fd(s, temperature), rel=1e-6)
    # the exact definition is scale-free; theirs reads saliency ~1e-7 as low entropy
    tiny = torch.full((2, 1), 1e-7)
    assert feature_disentanglement(tiny) == pytest.approx(math.log(2))
    assert feature_disentanglement(tiny, zero="count", eps=1e-7) == pytest.approx(
        -2 * (1 / 3) * math.log(1 / 3 + 1e-7), rel=1e-6
    )
    # a zero location: skipped by default, scored 0 (and counted) by the authors' variant
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert feature_disentanglement(z) == pytest.approx(math.log(2))
    assert feature_disentanglement(z, zero="count") == pytest.approx(math.log(2) / 2)
    with pytest.raises(ValueError, match="zero"):
        feature_disentanglement(z, zero="count", window=3, mode="mean")
    with pytest.raises(ValueError, match="eps"):
        feature_disentanglement(z, eps=-1.0)


def test_fd_axis_and_padding() -> None:
    s = torch.zeros(2, 2, 3)
    s[0, 0, :] = 1.0  # row 0 owned by task 0, row 1 by task 1
    s[1, 1, :] = 1.0
    # along x (-1) neighbours share the owner -> still 0; along the row axis (1) they mix
    assert feature_disentanglement(s, window=3, axis=-1) == pytest.approx(0.0, abs=1e-7)
    assert feature_disentanglement(s, window=3, axis=1) == pytest.approx(math.log(2))
    # replicate padding weighs the border twice: a two-location row (A, B) -> (2/3, 1/3)
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([2 / 3, 1 / 3])
    assert feature_disentanglement(t, window=3, padding="replicate") == pytest.approx(
        float(-(p * p.log()).sum()), rel=1e-6
    )


def test_fd_temperature_softmax() -> None:
    s = torch.tensor([[1.0], [0.0]])
    p = torch.softmax(torch.tensor([1.0, 0.0]) / 0.5, 0)
    assert feature_disentanglement(s, temperature=0.5) == pytest.approx(float(-(p * p.log()).sum()), rel=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"window": 2}, "window"),
        ({"mode": "gauss"}, "mode"),
        ({"zero": "drop"}, "zero"),
        ({"padding": "wrap"}, "padding"),
        ({"window": 3, "axis": 0}, "axis"),
        ({"window": 3, "axis": 5}, "axis"),
        ({"temperature": -1.0}, "temperature"),
    ],
)
def test_fd_bad_options_name_the_argument(kwargs: dict, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        feature_disentanglement(torch.rand(2, 4), **kwargs)


def test_fd_bad_saliency() -> None:
    with pytest.raises(ValueError, match="T >= 2"):
        feature_disentanglement(torch.rand(1, 4))
    with pytest.raises(ValueError, match=r"saliency\[1\]"):
        feature_disentanglement([torch.rand(2, 4), torch.rand(3, 4)])
    with pytest.raises(ValueError, match="finite"):
        feature_disentanglement(torch.tensor([[1.0, math.nan], [1.0, 1.0]]))


# ---- GDS / GMS / conflict ratio -----------------------------------------------------------------


def test_gradient_similarity_hand_made() -> None:
    G = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 0.0]], dtype=torch.float64)
    # cos: (0,1)=0, (0,2)=-1, (1,2)=0 -> GDS = -1/3
    assert gds(G) == pytest.approx(-1 / 3)
    # GMS: (1,2) pairs: 2*1*2/(1+4)=0.8 twice, (0,2): 1 -> (0.8+0.8+1)/3
    assert gms(G) == pytest.approx(2.6 / 3)
    assert conflict_ratio(G) == pytest.approx(1 / 3)
    cos = pairwise_cosine(G)
    assert torch.allclose(cos, cos.T) and torch.allclose(cos.diagonal(), torch.ones(3, dtype=torch.float64))


def test_gradient_similarity_zero_rows() -> None:
    G = torch.tensor([[1.0, 1.0], [0.0, 0.0], [2.0, 2.0], [0.0, 0.0]])
    sim = GradientSimilarity.from_gradients(G)
    # only pair (0, 2) has two non-zero norms: cos 1; others excluded
    assert sim.gds == pytest.approx(1.0)
    assert torch.isnan(sim.cosine[0, 1]) and torch.isnan(sim.cosine[1, 3])
    # GMS pairs: (0,1) 0, (0,2) 2*√2*√8/(2+8)=0.8, (0,3) 0, (1,2) 0, (1,3) both zero -> 1, (2,3) 0
    assert sim.gms == pytest.approx((0.8 + 1.0) / 6)
    assert sim.conflict_ratio == 0.0  # a zero row never conflicts
    assert math.isnan(gds(torch.zeros(3, 5)))
    assert gms(torch.zeros(3, 5)) == pytest.approx(1.0)


def test_gradient_similarity_random_matches_definition() -> None:
    torch.manual_seed(0)
    G = torch.randn(5, 40, dtype=torch.float64)
    G[1] -= 1.5 * G[0]
    n = G.norm(dim=1)
    cos = [(G[i] @ G[j]) / (n[i] * n[j]) for i in range(5) for j in range(5) if i != j]
    mags = [2 * n[i] * n[j] / (n[i] ** 2 + n[j] ** 2) for i in range(5) for j in range(5) if i != j]
    conflicts = [float(G[i] @ G[j] < 0) for i in range(5) for j in range(i + 1, 5)]
    assert gds(G) == pytest.approx(float(sum(cos) / len(cos)))
    assert gms(G) == pytest.approx(float(sum(mags) / len(mags)))
    assert conflict_ratio(G) == pytest.approx(sum(conflicts) / len(conflicts))
    assert conflict_ratio(G) > 0  # the injected conflict is seen


def test_half_precision_gradients_are_accumulated_in_float32() -> None:
    torch.manual_seed(3)
    G = torch.randn(3, 20000)
    ref = GradientSimilarity.from_gradients(G.double())
    half = GradientSimilarity.from_gradients(G.bfloat16())
    assert half.gds == pytest.approx(ref.gds, abs=1e-2) and half.gms == pytest.approx(ref.gms, abs=1e-2)
    s = torch.rand(4, 1000)
    assert feature_disentanglement(s.bfloat16()) == pytest.approx(feature_disentanglement(s), abs=1e-2)


def test_gradient_similarity_bad_input() -> None:
    with pytest.raises(ValueError, match="at least 2 rows"):
        gds(torch.rand(1, 4))
    with pytest.raises(ValueError, match="2-D"):
        gms(torch.rand(2, 3, 4))
    with pytest.raises(ValueError, match=r"finite.*rows \[0\]"):
        conflict_ratio(torch.tensor([[1.0, math.inf], [1.0, 1.0]]))
    with pytest.raises(ValueError, match=r"finite.*rows \[1\]"):
        gds(torch.tensor([[1.0, 2.0], [math.nan, 1.0], [0.0, 1.0]]))


# ---- inter-task vs inter-sample -----------------------------------------------------------------


def test_inter_task_vs_inter_sample_constructed() -> None:
    # two tasks with orthogonal directions, identical across the three samples, sample magnitudes 1, 2, 1
    e0, e1 = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    scale = torch.tensor([1.0, 2.0, 1.0])[:, None]
    G = torch.stack([scale * e0, scale * e1])  # [T=2, B=3, n=3]
    r = inter_task_vs_inter_sample(G)
    assert r.inter_task_cos == pytest.approx(0.0)  # tasks orthogonal on every sample
    assert r.inter_task_gms == pytest.approx(1.0)  # same magnitude on the same sample
    assert r.inter_sample_cos == pytest.approx(1.0)  # a task points the same way on every sample
    # sample pairs (1,2): 0.8, (1,3): 1, (2,3): 0.8 per task
    assert r.inter_sample_gms == pytest.approx(2.6 / 3)
    # orthogonal tasks never both have a sign on a coordinate: undefined; samples agree in sign
    assert math.isnan(r.inter_task_sign_conflict) and r.inter_sample_sign_conflict == 0.0
    assert set(r.as_dict()) == {
        "diag/inter_task_cos",
        "diag/inter_task_gms",
        "diag/inter_sample_cos",
        "diag/inter_sample_gms",
        "diag/inter_task_sign_conflict",
        "diag/inter_sample_sign_conflict",
    }
    assert "diag/inter_task_cos_feature" in r.as_dict(suffix="_feature")


def test_sign_conflict_ratio_pinned() -> None:
    """Share of the coordinates where both rows have a sign on which the signs differ, pooled over pairs."""
    # one sample, three tasks: t0 = (+, +, -, 0), t1 = (+, -, +, +), t2 = (0, 0, 0, -)
    G = torch.tensor([[[1.0, 2.0, -1.0, 0.0]], [[3.0, -1.0, 2.0, 5.0]], [[0.0, 0.0, 0.0, -2.0]]])
    r = inter_task_vs_inter_sample(G)  # [T=3, B=1, n=4]
    # (t0,t1): 3 signed coordinates, 2 differ -> 2/3; (t0,t2): none signed -> left out; (t1,t2): 1 of 1
    assert r.inter_task_sign_conflict == pytest.approx((2 / 3 + 1.0) / 2)
    assert math.isnan(r.inter_sample_sign_conflict)  # one sample: no sample pairs
    # independent random signs: about one half, and a scale of a row changes nothing
    gen = torch.Generator().manual_seed(0)
    R = torch.randn(2, 3, 20000, generator=gen)
    r = inter_task_vs_inter_sample(R)
    assert abs(r.inter_task_sign_conflict - 0.5) < 0.01 and abs(r.inter_sample_sign_conflict - 0.5) < 0.01
    R[0] *= 1e6
    assert inter_task_vs_inter_sample(R).inter_task_sign_conflict == pytest.approx(r.inter_task_sign_conflict)


def test_per_sample_view_regroups_levels() -> None:
    f1, f2 = torch.zeros(2, 3, 2, 2), torch.zeros(2, 3, 1, 1)
    T = 4
    per_level = [torch.randn(T, *f1.shape), torch.randn(T, *f2.shape)]
    G_Z = torch.cat([p.reshape(T, -1) for p in per_level], dim=1)
    view = per_sample_view(G_Z, [f1, f2])
    assert view.shape == (T, 2, 15)
    assert torch.equal(view[:, 1, :12], per_level[0][:, 1].reshape(T, -1))
    assert torch.equal(view[:, 1, 12:], per_level[1][:, 1].reshape(T, -1))
    with pytest.raises(ValueError, match="G_Z"):
        per_sample_view(G_Z[:, :-1], [f1, f2])


# ---- ranking similarity -------------------------------------------------------------------------


def test_ranking_similarity_matches_kendall_tau_without_ties() -> None:
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 9, 20):
        for _ in range(20):
            a, b = rng.permutation(n), rng.permutation(n)
            tau = kendalltau(a, b).statistic
            r = ranking_similarity(a, b)
            assert r.s == pytest.approx((1 + tau) / 2)
            assert r.deviation == pytest.approx(abs(tau) / 2)
            assert r.tau == pytest.approx(tau)
            assert ranking_similarity(a, b, ties="exclude").s == pytest.approx(r.s)


def test_ranking_similarity_sign_and_format() -> None:
    aligned = ranking_similarity([1, 2, 3, 4], [10, 20, 30, 40])
    inverted = ranking_similarity([1, 2, 3, 4], [40, 30, 20, 10])
    assert aligned.s == 1.0 and inverted.s == 0.0
    assert aligned.deviation == inverted.deviation == 0.5
    assert (aligned.sign, inverted.sign) == (1, -1)
    assert aligned.format() == "+0.50" and inverted.format() == "\u22120.50"


def test_ranking_similarity_ties() -> None:
    # pairs: (0,1) tied in a, (0,2) concordant, (1,2) concordant
    a, b = [1.0, 1.0, 2.0], [1.0, 2.0, 3.0]
    half = ranking_similarity(a, b, ties="half")
    assert half.s == pytest.approx((2 + 0.5) / 3) and half.tied == 1 and half.concordant == 2
    assert ranking_similarity(a, b, ties="exclude").s == pytest.approx(1.0)
    const = ranking_similarity([5, 5, 5], [1, 2, 3])
    assert const.s == 0.5 and const.sign == 0  # a measure that cannot separate methods says nothing
    assert math.isnan(ranking_similarity([5, 5, 5], [1, 2, 3], ties="exclude").s)
    # with ties, "half" still equals (1 + tau_a)/2, tau_a = (C - D) / all pairs
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 3, 12), rng.integers(0, 3, 12)
    r = ranking_similarity(x, y)
    assert r.s == pytest.approx(0.5 + (r.concordant - r.discordant) / (2 * r.n_pairs))


def test_ranking_similarity_tie_rule_of_eq_9() -> None:
    """ties="sign" is the FD paper's eq. 9: tied in both scores agrees, tied in one disagrees."""
    a, b = [1.0, 1.0, 2.0], [5.0, 5.0, 7.0]  # pair (0,1) tied in both, the others concordant
    assert ranking_similarity(a, b, ties="sign").s == pytest.approx(1.0)
    assert ranking_similarity(a, b, ties="half").s == pytest.approx(2.5 / 3)  # 0.833
    assert ranking_similarity(a, b, ties="exclude").s == pytest.approx(1.0)
    # tied in one score only: a disagreement under eq. 9
    assert ranking_similarity([1.0, 1.0, 2.0], [1.0, 2.0, 3.0], ties="sign").s == pytest.approx(2 / 3)
    # eq. 9's pitfall: a constant measure scores S = 0 against an untied metric (|S - 0.5| = 0.5)
    assert ranking_similarity([5, 5, 5], [1, 2, 3], ties="sign").s == 0.0
    # brute force: eq. 9 over ordered pairs on random tied scores
    rng = np.random.default_rng(2)
    for _ in range(20):
        x, y = rng.integers(0, 3, 7), rng.integers(0, 3, 7)
        agree = [np.sign(x[i] - x[j]) == np.sign(y[i] - y[j]) for i in range(7) for j in range(7) if i != j]
        assert ranking_similarity(x, y, ties="sign").s == pytest.approx(np.mean(agree))


def test_ranking_similarity_bad_input() -> None:
    with pytest.raises(ValueError, match="ties"):
        ranking_similarity([1, 2], [1, 2], ties="drop")
    with pytest.raises(ValueError, match="same items"):
        ranking_similarity([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least 2"):
        ranking_similarity([1], [1])
    with pytest.raises(ValueError, match="finite"):
        ranking_similarity([1, math.nan], [1, 2])
