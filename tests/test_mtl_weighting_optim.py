"""Plain optimisers (SGD, Adam, SignSGD), optimiser-level methods (AdaTask, MTL-IO) and CosReg.

The tiny model and the trainer-like step come from test_mtl_contract.py.
"""

from __future__ import annotations

import copy

import pytest
import torch
from test_mtl_contract import TinyMTL, batch, make_ctx, make_optimizer, train_step

from training.mtl import OptimizerSpec, build
from training.mtl.methods.cosreg import mean_squared_cosine
from training.mtl.optimizers import PerTaskOptimizer, SignSGD, build_optimizer


def _flat(params) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params])


# ------------------------------------------------------------------------------------ plain optimisers
def test_build_optimizer_types_and_settings() -> None:
    p = [torch.nn.Parameter(torch.zeros(3))]
    sgd = build_optimizer(OptimizerSpec("sgd", lr=0.1, momentum=0.8), p)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.8
    adam = build_optimizer(OptimizerSpec("adam", lr=1e-3, betas=(0.8, 0.99), eps=1e-6), p)
    assert isinstance(adam, torch.optim.Adam) and adam.defaults["betas"] == (0.8, 0.99)
    assert isinstance(build_optimizer(OptimizerSpec("signsgd"), p), SignSGD)
    with pytest.raises(ValueError, match=r"optimizer.name.*'sgd', 'adam', 'signsgd'.*'rmsprop'"):
        build_optimizer(OptimizerSpec("rmsprop"), p)
    with pytest.raises(ValueError, match="optimizer.lr"):
        build_optimizer(OptimizerSpec("sgd", lr=0.0), p)
    with pytest.raises(ValueError, match="optimizer.momentum"):
        build_optimizer(OptimizerSpec("signsgd", momentum=1.0), p)


def test_signsgd_update_is_minus_lr_sign_of_momentum() -> None:
    theta = torch.nn.Parameter(torch.tensor([0.0, 0.0, 0.0, 0.0]))
    opt = SignSGD([theta], lr=0.1, momentum=0.9)
    grads = [torch.tensor([2.0, -1e-9, 0.0, 1.0]), torch.tensor([-30.0, 1e-9, 0.0, 1.0])]
    m = torch.zeros(4)
    expected = theta.detach().clone()
    for g in grads:
        theta.grad = g
        opt.step()
        m = 0.9 * m + 0.1 * g
        expected -= 0.1 * torch.sign(m)
        torch.testing.assert_close(theta.detach(), expected)
    # step 1: sign(m) = [1, −1, 0, 1]; step 2: m = [0.18−3, −0.09e-9+0.1e-9, 0, 0.19] -> [−1, 1, 0, 1]
    torch.testing.assert_close(theta.detach(), torch.tensor([0.0, 0.0, 0.0, -0.2]))
    # sign(0) = 0: a coordinate whose gradient is always 0 never moves


def test_signsgd_without_momentum_is_signsgd() -> None:
    theta = torch.nn.Parameter(torch.tensor([1.0, 1.0, 1.0]))
    opt = SignSGD([theta], lr=0.5, momentum=0.0)
    theta.grad = torch.tensor([1e-12, -5.0, 0.0])
    opt.step()
    torch.testing.assert_close(theta.detach(), torch.tensor([0.5, 1.5, 1.0]))


# -------------------------------------------------------------------------------------------- AdaTask
ADAM = OptimizerSpec("adam", lr=0.01, betas=(0.9, 0.999), eps=1e-8)


def test_adatask_with_one_task_is_torch_adam_exactly() -> None:
    torch.manual_seed(0)
    model = TinyMTL(1)
    ref = copy.deepcopy(model)
    method = build("adatask", 1)
    opt = make_optimizer(method, model, ADAM)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=0.01, betas=(0.9, 0.999), eps=1e-8)
    ref_ew = build("ew", 1)
    for step in range(4):
        train_step(method, model, opt, step, epoch=0)
        train_step(ref_ew, ref, ref_opt, step, epoch=0)
    for pa, pb in zip(model.parameters(), ref.parameters()):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adatask_shared_update_is_the_sum_of_independent_adams(weight_decay: float) -> None:
    T = 3
    torch.manual_seed(0)
    model = TinyMTL(T)
    ref = copy.deepcopy(model)
    spec = OptimizerSpec("adam", lr=0.01, eps=1e-8, weight_decay=weight_decay)
    method = build("adatask", T)
    opt = make_optimizer(method, model, spec)
    # reference: per task, an independent torch.optim.Adam over its own copy of the shared params
    copies = [[torch.nn.Parameter(p.detach().clone()) for p in ref.shared_parameters()] for _ in range(T)]
    task_opts = [torch.optim.Adam(c, lr=0.01, eps=1e-8, weight_decay=weight_decay) for c in copies]
    head_opt = torch.optim.Adam(ref.task_parameters(), lr=0.01, eps=1e-8, weight_decay=weight_decay)
    for step in range(3):
        train_step(method, model, opt, step, epoch=0)
        x, y = batch(T, step)
        ref.zero_grad(set_to_none=True)
        losses = ref.losses(ref.features(x), y)
        shared = ref.shared_parameters()
        per_task = [torch.autograd.grad(losses[i], shared, retain_graph=True) for i in range(T)]
        losses.sum().backward()
        deltas = [torch.zeros_like(p) for p in shared]
        for i in range(T):
            for c, p, g in zip(copies[i], shared, per_task[i]):
                c.data.copy_(p.detach())
                c.grad = g
            task_opts[i].step()
            for k, (c, p) in enumerate(zip(copies[i], shared)):
                deltas[k] += c.detach() - p.detach()
        head_opt.step()
        with torch.no_grad():
            for p, d in zip(shared, deltas):
                p.add_(d)
    torch.testing.assert_close(_flat(model.parameters()), _flat(ref.parameters()), rtol=1e-12, atol=1e-13)


def _train(method_name: str, spec: OptimizerSpec, scales, steps: int = 3, params: str = "all", **hp):
    torch.manual_seed(0)
    model = TinyMTL(3)
    method = build(method_name, 3, **hp)
    opt = method.configure_optimizer(model.shared_parameters(), model.task_parameters(), spec)
    if opt is None:
        chosen = model.task_parameters() if params == "heads" else list(model.parameters())
        opt = build_optimizer(spec, chosen)
    for step in range(steps):
        train_step(method, model, opt, step, epoch=0, scales=scales)
    return model


def test_adam_heads_are_invariant_to_per_task_loss_scaling() -> None:
    """The second study's claim: with disjoint heads, Adam's head update ignores a task's loss scale."""
    spec = OptimizerSpec("adam", lr=0.01, eps=1e-12)
    scales = torch.tensor([1.0, 100.0, 0.01], dtype=torch.float64)
    a = _train("ew", spec, None, params="heads")
    b = _train("ew", spec, scales, params="heads")
    torch.testing.assert_close(_flat(a.task_parameters()), _flat(b.task_parameters()), rtol=1e-9, atol=1e-10)
    # ...while SGD's head update scales with the loss: the same check fails (the test can fail).
    sgd = OptimizerSpec("sgd", lr=0.01, momentum=0.0)
    a = _train("ew", sgd, None, params="heads")
    b = _train("ew", sgd, scales, params="heads")
    assert not torch.allclose(_flat(a.task_parameters()), _flat(b.task_parameters()), rtol=1e-3)


def test_adatask_whole_update_is_invariant_to_per_task_loss_scaling() -> None:
    spec = OptimizerSpec("adam", lr=0.01, eps=1e-12)
    scales = torch.tensor([1.0, 100.0, 0.01], dtype=torch.float64)
    a = _train("adatask", spec, None)
    b = _train("adatask", spec, scales)
    torch.testing.assert_close(_flat(a.parameters()), _flat(b.parameters()), rtol=1e-8, atol=1e-9)
    # plain Adam on the sum is not invariant for the shared parameters
    a = _train("ew", spec, None)
    b = _train("ew", spec, scales)
    assert not torch.allclose(_flat(a.shared_parameters()), _flat(b.shared_parameters()), rtol=1e-3)


def test_optimizer_methods_refuse_to_run_without_their_optimizer() -> None:
    model = TinyMTL(2)
    x, y = batch(2, 0)
    with pytest.raises(RuntimeError, match="configure_optimizer"):
        build("adatask", 2).backward(make_ctx(model, x, y))
    opt = PerTaskOptimizer(model.shared_parameters(), model.task_parameters(), ADAM, 2)
    with pytest.raises(RuntimeError, match="backward"):
        opt.step()


# --------------------------------------------------------------------------------------------- MTL-IO
@pytest.mark.parametrize(
    "hp", [{}, {"group_size": 2}, {"moments": "shared"}, {"group_size": 2, "moments": "shared"}]
)
def test_mtl_io_stale_with_plain_sgd_equals_one_ew_sgd_step(hp: dict) -> None:
    spec = OptimizerSpec("sgd", lr=0.05, momentum=0.0)
    torch.manual_seed(0)
    a = _train("ew", spec, None, steps=1)
    torch.manual_seed(0)
    model = TinyMTL(3)
    method = build("mtl_io", 3, mode="stale", **hp)
    opt = make_optimizer(method, model, spec)
    train_step(method, model, opt, 0, epoch=0)
    torch.testing.assert_close(_flat(model.parameters()), _flat(a.parameters()), rtol=0, atol=1e-15)


def test_mtl_io_groups_are_a_random_partition_from_the_global_rng() -> None:
    m = build("mtl_io", 5, group_size=2, mode="stale")
    torch.manual_seed(4)
    groups = m.groups()
    torch.manual_seed(4)
    order = torch.randperm(5).tolist()
    assert groups == [order[0:2], order[2:4], order[4:5]]


def test_mtl_io_stale_adam_with_task_moments_equals_adatask() -> None:
    """Stale gradients + per-task moments: the sub-steps commute, so MTL-IO(Adam) = AdaTask."""
    a = _train("adatask", ADAM, None)
    b = _train("mtl_io", ADAM, None, mode="stale")
    torch.testing.assert_close(_flat(a.parameters()), _flat(b.parameters()), rtol=1e-12, atol=1e-14)
    # with one shared moment buffer the sub-steps interact, so the result differs
    torch.manual_seed(0)
    model = TinyMTL(3)
    method = build("mtl_io", 3, moments="shared", mode="stale")
    opt = make_optimizer(method, model, ADAM)
    for step in range(3):
        train_step(method, model, opt, step, epoch=0)
    assert not torch.allclose(_flat(model.parameters()), _flat(a.parameters()), rtol=1e-4)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_mtl_io_stale_variant_is_ew_or_adatask(momentum: float, capsys) -> None:
    """What `mtl_io mode=stale` is: EW under SGD (any momentum) and AdaTask under Adam, over 10 steps;
    only signsgd makes it differ from EW. `python -m training methods mtl_io` says so."""
    sgd = OptimizerSpec("sgd", lr=0.05, momentum=momentum)
    ew = _train("ew", sgd, None, steps=10)
    io = _train("mtl_io", sgd, None, steps=10, mode="stale")
    torch.testing.assert_close(_flat(io.parameters()), _flat(ew.parameters()), rtol=0, atol=1e-13)
    adam = OptimizerSpec("adam", lr=0.01)
    torch.testing.assert_close(
        _flat(_train("mtl_io", adam, None, steps=10, mode="stale").parameters()),
        _flat(_train("adatask", adam, None, steps=10).parameters()), rtol=0, atol=1e-13,
    )
    sign = OptimizerSpec("signsgd", lr=0.01, momentum=momentum)
    diff = _flat(_train("mtl_io", sign, None, steps=3, mode="stale").parameters()) - _flat(
        _train("ew", sign, None, steps=3).parameters()
    )
    assert float(diff.abs().max()) > 1e-3  # Σ_i sign(g_i) is not sign(Σ_i g_i)
    from training.cli import main

    assert main(["methods", "mtl_io"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "it IS EW" in text and "IS adatask" in text and "Stale-gradient variant" in text


@pytest.mark.parametrize("mode", ["stale", "alternate"])
@pytest.mark.parametrize("rule", ["sgd", "adam", "signsgd"])
def test_per_task_optimizer_with_shared_moments_and_one_task_matches_the_plain_optimizer(
    rule: str, mode: str
) -> None:
    spec = OptimizerSpec(rule, lr=0.01, momentum=0.9, weight_decay=0.01)
    torch.manual_seed(0)
    model = TinyMTL(1)
    ref = copy.deepcopy(model)
    method = build("mtl_io", 1, moments="shared", mode=mode)
    opt = make_optimizer(method, model, spec)
    ref_opt = build_optimizer(spec, list(ref.parameters()))
    ew = build("ew", 1)
    for step in range(3):
        train_step(method, model, opt, step, epoch=0)
        train_step(ew, ref, ref_opt, step, epoch=0)
    for pa, pb in zip(model.parameters(), ref.parameters()):
        assert torch.equal(pa, pb), rule


# --------------------------------------------------------------------------------------------- CosReg
def test_mean_squared_cosine_pinned_values() -> None:
    # cos([1,0],[1,1]) = 1/√2 -> cos² = ½; orthogonal -> 0; parallel/antiparallel -> 1
    G = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    assert abs(float(mean_squared_cosine(G)) - 0.5) < 1e-12
    assert float(mean_squared_cosine(torch.eye(3, dtype=torch.float64))) == 0.0
    assert abs(float(mean_squared_cosine(torch.tensor([[1.0, 2.0], [-3.0, -6.0]]))) - 1.0) < 1e-6
    # T = 3 rows [1,0],[0,1],[1,1]: pairs (ordered) cos² = 0, ½, 0, ½, ½, ½ -> mean 2/6 = 1/3
    G3 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    assert abs(float(mean_squared_cosine(G3)) - 1 / 3) < 1e-12


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale", [1e-8, 1.0, 1e8])
def test_mean_squared_cosine_edge_cases_have_finite_gradients(dtype, scale: float) -> None:
    rows = [[0.0, 0.0, 0.0], [1.0, 2.0, 0.5], [2.0, 4.0, 1.0], [-1.0, 0.3, 0.0]]
    G = (torch.tensor(rows) * scale).to(dtype)
    G.requires_grad_(True)
    R = mean_squared_cosine(G)
    R.backward()
    assert torch.isfinite(R) and torch.isfinite(G.grad).all()
    # the zero row has cos 0 with every row; the parallel pair has cos² 1: R is scale-free
    ref = mean_squared_cosine(G.detach().double() / scale)
    assert abs(float(R.detach()) - float(ref)) < 1e-5
    assert float(mean_squared_cosine(torch.zeros(3, 4, dtype=dtype))) == 0.0


def _total_objective(model: TinyMTL, x, y, level: str, penalty: float) -> torch.Tensor:
    """Σ L_i + λ·R computed independently of the method (values only, for finite differences)."""
    Z = model.features(x)
    # Feature level: G_Z are partial derivatives w.r.t. each feature tensor taken as an independent
    # input of the heads (z2 depends on z1 in the tiny model), hence detached leaves as in training.
    leaves = [z.detach().requires_grad_() for z in Z]
    losses = model.losses(leaves if level == "feature" else Z, y)
    shared = model.shared_parameters()
    rows = []
    for i in range(losses.shape[0]):
        wrt = leaves if level == "feature" else shared
        g = torch.autograd.grad(losses[i], wrt, retain_graph=True)
        rows.append(torch.cat([t.reshape(-1) for t in g]))
    G = torch.stack(rows)
    Gn = G / G.norm(dim=1, keepdim=True)
    C = Gn @ Gn.T
    T = G.shape[0]
    R = ((C**2).sum() - torch.diagonal(C**2).sum()) / (T * (T - 1))
    return losses.sum() + penalty * R


@pytest.mark.parametrize("level", ["feature", "parameter"])
def test_cosreg_gradient_matches_finite_differences(level: str) -> None:
    torch.manual_seed(0)
    T = 3
    model = TinyMTL(T)
    x, y = batch(T, 0)
    method = build("cosreg", T, level=level, penalty=10.0)
    rep = method.backward(make_ctx(model, x, y))
    assert 0.0 <= rep.extras["cosreg_R"] <= 1.0
    params = list(model.parameters())
    grad = _flat(p.grad for p in params)
    base = _flat(params).clone()
    gen = torch.Generator().manual_seed(1)
    h = 1e-6
    for _ in range(3):
        v = torch.randn(base.shape, generator=gen, dtype=torch.float64)
        vals = []
        for sgn in (1.0, -1.0):
            torch.nn.utils.vector_to_parameters(base + sgn * h * v, params)
            vals.append(float(_total_objective(model, x, y, level, 10.0).detach()))
        torch.nn.utils.vector_to_parameters(base, params)
        fd = (vals[0] - vals[1]) / (2 * h)
        assert abs(float(grad @ v) - fd) <= 1e-6 * max(1.0, abs(fd)), (level, float(grad @ v), fd)
    # the regulariser really contributes (differs from the plain sum of losses, i.e. from EW)
    model.zero_grad(set_to_none=True)
    build("ew", T).backward(make_ctx(model, x, y))
    assert not torch.allclose(_flat(p.grad for p in params), grad, rtol=1e-3)
