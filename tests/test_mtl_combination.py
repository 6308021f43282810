"""Contract tests for every gradient-combination method of the MTL library (registry driven).

Both levels on a tiny real model, edge cases (zero row, parallel rows, strong conflict, all-zero G,
T = 2..7, float32/float64, 1e8 and 1e-8 scales), state_dict round trips, input validation.
"""

from __future__ import annotations

import copy

import pytest
import torch
from test_mtl_context import grads_of, make_context, make_problem

from training.mtl import GradientCombination, Level, build, get

COMBINATION = [
    "alignedmtl",
    "cagrad",
    "graddrop",
    "gradvac",
    "imtl",
    "imtl_g",
    "mgda",
    "nashmtl",
    "pcgrad",
    "rgw",
]
#: methods whose result is a linear combination d = Gᵀα (they must report α)
LINEAR = [n for n in COMBINATION if n != "graddrop"]


def test_all_registered_with_documentation() -> None:
    for name in COMBINATION:
        cls = get(name)
        assert issubclass(cls, GradientCombination) and cls.kind == "gradient combination"
        assert set(cls.levels) == {Level.PARAMETER, Level.FEATURE}, name
        assert cls.paper and "http" in cls.paper, name
        doc = __import__(cls.__module__, fromlist=["_"]).__doc__ or ""
        assert "Scale" in doc and "Paper" in doc, f"{name}: module docstring lacks scale/paper"


@pytest.mark.parametrize("level", ["parameter", "feature"])
@pytest.mark.parametrize("name", COMBINATION)
def test_backward_on_tiny_model(name: str, level: str) -> None:
    model, x, y = make_problem(num_tasks=3)
    method = build(name, 3, level=level)
    torch.manual_seed(1)
    report = method.backward(make_context(model, x, y))
    g = grads_of(list(model.parameters()))
    assert torch.isfinite(g).all()
    assert grads_of(model.shared()).abs().sum() > 0, "shared parameters got no gradient"
    assert grads_of(model.task()).abs().sum() > 0, "heads got no gradient"
    if name in LINEAR:
        assert report.weights is not None and report.weights.shape == (3,)
        assert torch.isfinite(report.weights).all()
    else:
        assert report.weights is None
    assert all(isinstance(v, float) for v in report.extras.values())


@pytest.mark.parametrize("name", LINEAR)
def test_linear_methods_feature_level_applies_weights_through_backbone(name: str) -> None:
    """Feature level: the shared update equals Σ α_i ∂L_i/∂θ_s for the reported α (chain rule)."""
    model, x, y = make_problem(num_tasks=3)
    torch.manual_seed(2)
    ctx = make_context(model, x, y)
    G = ctx.param_grads()  # computed before the step, for the reference
    report = build(name, 3, level="feature").backward(ctx)
    expected = report.weights.to(G.dtype) @ G
    torch.testing.assert_close(grads_of(model.shared()), expected, rtol=1e-4, atol=1e-6)


def edge_matrices(T: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(T)
    G = torch.randn(T, 16, generator=gen, dtype=torch.float64)
    out = {"random": G.clone()}
    conflict = G.clone()
    conflict[1] = -1.5 * conflict[0] + 1e-3 * conflict[1]
    out["conflict"] = conflict
    zero_row = G.clone()
    zero_row[T - 1] = 0.0
    out["zero_row"] = zero_row
    parallel = G.clone()
    parallel[1] = 2.0 * parallel[0]
    out["parallel"] = parallel
    opposite = G.clone()
    opposite[1] = -opposite[0]
    out["opposite"] = opposite
    out["all_zero"] = torch.zeros_like(G)
    out["huge"] = G * 1e8
    out["tiny"] = G * 1e-8
    return {k: v.to(dtype) for k, v in out.items()}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", COMBINATION)
def test_edge_cases_give_finite_outputs(name: str, dtype: torch.dtype) -> None:
    for T in range(2, 8):
        for case, G in edge_matrices(T, dtype).items():
            method = build(name, T)
            torch.manual_seed(0)
            result = method.combine(G)
            d = result.direction
            assert d.shape == (G.shape[1],) and d.dtype == dtype, (name, case)
            assert torch.isfinite(d).all(), f"{name} T={T} {case} {dtype}: non-finite direction"
            if name in LINEAR:
                w = result.weights
                assert w is not None and w.shape == (T,) and torch.isfinite(w).all(), (name, case)
                torch.testing.assert_close(d, w.to(dtype) @ G)  # the weights are the direction's
            else:
                assert result.weights is None
            assert all(isinstance(v, float) for v in result.extras.values()), (name, case)
            if case == "all_zero":
                assert d.abs().max() == 0, (name, T)
            # a second call (stateful methods have updated their state) stays finite too
            assert torch.isfinite(method.combine(G).direction).all(), (name, case, "second step")


@pytest.mark.parametrize("name", COMBINATION)
def test_scale_equivariance(name: str) -> None:
    """d(cG) = c·d(G) for every method except Nash-MTL, whose direction is scale invariant."""
    G = edge_matrices(4, torch.float64)["random"]
    kwargs = {"max_norm": 0.0} if name == "nashmtl" else {}
    torch.manual_seed(3)
    d1 = build(name, 4, **kwargs).combine(G).direction
    torch.manual_seed(3)
    d2 = build(name, 4, **kwargs).combine(G * 1e6).direction
    factor = 1.0 if name == "nashmtl" else 1e6  # Nash: α(cM) = α(M)/√c, so Gᵀα is unchanged
    torch.testing.assert_close(d2, d1 * factor, rtol=1e-6, atol=0.0)


@pytest.mark.parametrize("level", ["parameter", "feature"])
@pytest.mark.parametrize("name", COMBINATION)
def test_state_dict_round_trip_reproduces_next_step(name: str, level: str) -> None:
    T = 3
    gen = torch.Generator().manual_seed(5)
    steps = [torch.randn(T, 12, generator=gen, dtype=torch.float64) for _ in range(3)]
    for G in steps:
        G[1] -= 1.2 * G[0]  # conflicts make GradVac/PCGrad/CAGrad do something
    method = build(name, T, level=level)
    if name == "imtl":
        with torch.no_grad():
            method.s.copy_(torch.tensor([0.3, -0.2, 0.1]))
    torch.manual_seed(0)
    method.combine(steps[0])
    method.combine(steps[1])
    state = copy.deepcopy(method.state_dict())
    rng = torch.get_rng_state()
    expected = method.combine(steps[2])
    fresh = build(name, T, level=level)
    fresh.load_state_dict(state)
    torch.set_rng_state(rng)
    got = fresh.combine(steps[2])
    torch.testing.assert_close(got.direction, expected.direction, rtol=0, atol=0)
    if expected.weights is not None:
        torch.testing.assert_close(got.weights, expected.weights, rtol=0, atol=0)


@pytest.mark.parametrize("name", COMBINATION)
def test_bad_input_is_a_clear_error(name: str) -> None:
    method = build(name, 3)
    with pytest.raises(ValueError, match=r"num_tasks=3"):
        method.combine(torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"shape"):
        method.combine(torch.zeros(15))
    with pytest.raises(ValueError, match="floating"):
        method.combine(torch.zeros(3, 5, dtype=torch.int64))


def test_bad_hyperparameters_are_clear_errors() -> None:
    cases = {
        "mgda": {"normalization": "l1"},
        "cagrad": {"c": -1.0},
        "gradvac": {"beta": 2.0},
        "graddrop": {"leak": 1.5},
        "nashmtl": {"update_weights_every": 0},
        "alignedmtl": {"scale_mode": "max"},
    }
    for name, kwargs in cases.items():
        key = next(iter(kwargs))
        with pytest.raises(ValueError, match=f"{name}: {key}"):
            build(name, 3, **kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", COMBINATION)
def test_cuda_matches_cpu(name: str) -> None:
    G = edge_matrices(5, torch.float32)["random"]
    method = build(name, 5)
    torch.manual_seed(4)
    cpu = method.combine(G)
    method = build(name, 5).cuda()
    torch.manual_seed(4)
    gpu = method.combine(G.cuda())
    assert gpu.direction.device.type == "cuda"
    if name != "graddrop":  # GradDrop's U comes from the CUDA generator: a different draw
        torch.testing.assert_close(gpu.direction.cpu(), cpu.direction, rtol=1e-4, atol=1e-5)
        assert gpu.weights is not None and gpu.weights.device.type == "cuda"
