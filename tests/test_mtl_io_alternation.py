"""MTL-IO's alternation (mode="alternate", the default): one optimiser sub-step per task, each on a fresh
forward at the parameters the previous sub-step produced (issue 13, defect 2 follow-up).

Checked against a hand-written alternation on the tiny model: T torch optimisers over every
parameter, optimiser i stepped on L_i after its own forward/backward, in task order. The stale variant
(mode="stale") is EW under SGD; the alternation is not.
"""

from __future__ import annotations

import copy

import pytest
import torch
from test_mtl_contract import TinyMTL, batch, make_optimizer, train_step

from training.mtl import OptimizerSpec, build
from training.mtl.optimizers import AlternatingOptimizer

T, STEPS = 3, 4


def _flat(params) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params])


def _by_hand(model: TinyMTL, make_opt) -> TinyMTL:
    """The paper's alternation written out: per step, for task i = 0..T−1: forward, L_i.backward(),
    optimiser i steps (one independent torch optimiser per task over all parameters)."""
    opts = [make_opt(list(model.parameters())) for _ in range(T)]
    for step in range(STEPS):
        x, y = batch(T, step)
        for i in range(T):
            model.zero_grad(set_to_none=True)
            model.losses(model.features(x), y)[i].backward()
            for p in model.parameters():  # the method zero-fills what L_i does not reach
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            opts[i].step()
    return model


def _engine(model: TinyMTL, spec: OptimizerSpec, name: str = "mtl_io", **hp) -> tuple[TinyMTL, list]:
    method = build(name, T, **hp)
    opt = make_optimizer(method, model, spec)
    results = [train_step(method, model, opt, step, epoch=0)[0] for step in range(STEPS)]
    return model, results


CASES = {
    "sgd-momentum": (OptimizerSpec("sgd", lr=0.05, momentum=0.9),
                     lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9)),
    "adam": (OptimizerSpec("adam", lr=0.01), lambda ps: torch.optim.Adam(ps, lr=0.01)),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_alternation_matches_a_hand_written_alternation_and_differs_from_ew(case: str) -> None:
    spec, make_opt = CASES[case]
    torch.manual_seed(0)
    start = TinyMTL(T)
    by_hand = _by_hand(copy.deepcopy(start), make_opt)
    engine, results = _engine(copy.deepcopy(start), spec, shuffle=False)
    got, want = _flat(engine.parameters()), _flat(by_hand.parameters())
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    assert all(r.extras["substeps"] == T for r in results)
    # the losses logged are the step's first forward (the parameters at the start of the step)
    x, y = batch(T, 0)
    with torch.no_grad():
        first = start.losses(start.features(x), y)
    torch.testing.assert_close(torch.tensor(results[0].task_losses, dtype=torch.float64), first)
    # not EW: the same rule on the summed loss ends elsewhere (nor the stale variant, which is EW)
    ew, _ = _engine(copy.deepcopy(start), spec, name="ew")
    assert float((_flat(engine.parameters()) - _flat(ew.parameters())).abs().max()) > 1e-3
    stale, _ = _engine(copy.deepcopy(start), spec, mode="stale")
    assert float((_flat(engine.parameters()) - _flat(stale.parameters())).abs().max()) > 1e-3


def test_shuffled_alternation_draws_its_order_per_step_and_is_reproducible() -> None:
    spec = OptimizerSpec("sgd", lr=0.05, momentum=0.9)
    torch.manual_seed(0)
    start = TinyMTL(T)
    a, _ = _engine(copy.deepcopy(start), spec)
    b, _ = _engine(copy.deepcopy(start), spec)
    fixed, _ = _engine(copy.deepcopy(start), spec, shuffle=False)
    assert torch.equal(_flat(a.parameters()), _flat(b.parameters()))  # seeded by (seed, step)
    assert not torch.equal(_flat(a.parameters()), _flat(fixed.parameters()))


def test_alternation_with_shared_moments_takes_one_step_of_one_optimiser_per_group() -> None:
    """group_size 2 of 3 tasks, moments='shared', fixed order: sub-steps on L_0 + L_1, then L_2, with one
    torch optimiser."""
    spec = OptimizerSpec("sgd", lr=0.05, momentum=0.9)
    torch.manual_seed(0)
    start = TinyMTL(T)
    engine, results = _engine(copy.deepcopy(start), spec, group_size=2, moments="shared", shuffle=False)
    assert results[0].extras["substeps"] == 2
    model = copy.deepcopy(start)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for step in range(STEPS):
        x, y = batch(T, step)
        for group in ([0, 1], [2]):
            model.zero_grad(set_to_none=False)
            losses = model.losses(model.features(x), y)
            sum(losses[i] for i in group).backward()
            opt.step()
    torch.testing.assert_close(_flat(engine.parameters()), _flat(model.parameters()), rtol=1e-10, atol=1e-12)


def test_alternation_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="moments='shared'"):
        build("mtl_io", 3, group_size=2)  # per-task moments need per-task gradients
    with pytest.raises(ValueError, match="mode must be one of"):
        build("mtl_io", 3, mode="fresh")
    opt = AlternatingOptimizer([torch.nn.Parameter(torch.zeros(2))], OptimizerSpec("sgd", lr=0.1), 2)
    with pytest.raises(RuntimeError, match="no slot"):
        opt.step()
    with pytest.raises(ValueError, match="slot"):
        opt.use_slot(2)
