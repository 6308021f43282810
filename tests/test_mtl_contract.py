"""Registry-driven contract of every MTL method (methods appear here as their modules land).

Every registered method, built with its defaults, is driven exactly as the trainer drives it on a tiny
real torch model (shared trunk -> two feature tensors Z -> T heads; the losses are computed from
detached feature leaves, as in training): it must write finite `.grad` to every parameter for T = 2..7
at each supported level, and a `state_dict()` round trip must reproduce the next step exactly.
The tiny model and the trainer-like step live here and are imported by the other MTL test modules.
"""

from __future__ import annotations

import copy
import inspect
import sys

import pytest
import torch

from training.mtl import Level, OptimizerSpec, StepContext, build, get, names
from training.mtl.base import hyperparameters
from training.mtl.optimizers import build_optimizer


class TinyMTL(torch.nn.Module):
    """Shared trunk producing Z = [z1 [B,6], z2 [B,4]]; head i maps cat(Z) to one output.

    Task loss i = mean((head_i(Z) − y_i)²) · scale_i (smooth, positive, twice differentiable).
    """

    def __init__(self, num_tasks: int, d_in: int = 5, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.trunk = torch.nn.Linear(d_in, 6)
        self.trunk2 = torch.nn.Linear(6, 4)
        self.heads = torch.nn.ModuleList(torch.nn.Linear(10, 1) for _ in range(num_tasks))
        self.to(dtype)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        z1 = torch.tanh(self.trunk(x))
        return [z1, torch.tanh(self.trunk2(z1))]

    def losses(self, Z: list[torch.Tensor], y: torch.Tensor, scales: torch.Tensor | None = None):
        h = torch.cat(Z, dim=1)
        out = torch.stack([((head(h)[:, 0] - y[:, i]) ** 2).mean() for i, head in enumerate(self.heads)])
        return out if scales is None else out * scales

    def shared_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.trunk.parameters()) + list(self.trunk2.parameters())

    def task_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.heads.parameters())


def batch(num_tasks: int, step: int, dtype: torch.dtype = torch.float64, n: int = 8):
    """Deterministic data of one step (independent of the global RNG)."""
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(n, 5, generator=g, dtype=dtype)
    y = torch.randn(n, num_tasks, generator=g, dtype=dtype)
    return x, y


def make_ctx(model: TinyMTL, x, y, step: int = 0, epoch: int = 0, scales=None) -> StepContext:
    """Build the StepContext the way the trainer does (features -> detached leaves -> losses)."""
    Z = model.features(x)
    leaves = [z.detach().requires_grad_() for z in Z]
    losses = model.losses(leaves, y, scales)

    def reevaluate() -> torch.Tensor:
        with torch.no_grad():
            return model.losses(model.features(x), y, scales)

    return StepContext(
        losses=losses, features=Z, feature_leaves=leaves, shared_params=model.shared_parameters(),
        task_params=model.task_parameters(), step=step, epoch=epoch, reevaluate=reevaluate,
        task_names=[f"t{i}" for i in range(losses.shape[0])],
    )


def make_optimizer(method, model: TinyMTL, spec: OptimizerSpec) -> torch.optim.Optimizer:
    """What the trainer does: the method's optimiser if it replaces it, else the standard one."""
    opt = method.configure_optimizer(model.shared_parameters(), model.task_parameters(), spec)
    if opt is None:
        opt = build_optimizer(spec, list(model.parameters()) + list(method.method_parameters()))
    return opt


def train_step(method, model, opt, step: int, epoch: int, scales=None, zero_grad: bool = True):
    """One trainer step; returns (report, ctx)."""
    if zero_grad:
        opt.zero_grad(set_to_none=True)
    T = len(model.heads)
    x, y = batch(T, step, dtype=next(model.parameters()).dtype)
    ctx = make_ctx(model, x, y, step=step, epoch=epoch, scales=scales)
    report = method.backward(ctx)
    opt.step()
    if method.needs_post_step:
        method.after_step(ctx)
    return report, ctx


def _levels(name: str) -> list[str]:
    cls = get(name)
    return [lv.value for lv in cls.levels] or ["parameter"]


CASES = [(n, lv) for n in names() for lv in _levels(n)]
SPEC = OptimizerSpec(name="sgd", lr=0.05, momentum=0.9)


@pytest.mark.parametrize("name,level", CASES)
@pytest.mark.parametrize("T,dtype", [(t, torch.float64) for t in range(2, 8)] + [(3, torch.float32)])
def test_backward_writes_finite_grad_to_every_parameter(name: str, level: str, T: int, dtype) -> None:
    torch.manual_seed(0)
    model = TinyMTL(T, dtype=dtype)
    method = build(name, T, level=level)
    opt = make_optimizer(method, model, SPEC)
    before = [p.detach().clone() for p in model.parameters()]
    opt.zero_grad(set_to_none=True)
    x, y = batch(T, 0, dtype=dtype)
    ctx = make_ctx(model, x, y)
    report = method.backward(ctx)
    owned = [(f"method.{k}", v) for k, v in method.named_parameters()]
    for pname, p in list(model.named_parameters()) + owned:
        assert p.grad is not None, f"{name}/{level}: no .grad on {pname}"
        assert torch.isfinite(p.grad).all(), f"{name}/{level}: non-finite .grad on {pname}"
    assert any(p.grad.abs().sum() > 0 for p in model.shared_parameters()), f"{name}: zero shared update"
    if report.weights is not None:
        assert report.weights.shape == (T,) and torch.isfinite(report.weights).all()
    opt.step()
    if method.needs_post_step:
        method.after_step(ctx)
    after = list(model.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(before, after)), f"{name}: the step changed nothing"


@pytest.mark.parametrize("name,level", CASES)
def test_state_dict_round_trip_reproduces_the_next_step(name: str, level: str) -> None:
    T = 3
    torch.manual_seed(1)
    model = TinyMTL(T)
    method = build(name, T, level=level)
    opt = make_optimizer(method, model, SPEC)
    for step in range(3):  # epochs 0, 1, 2: DWA has two finished epochs by step 3
        train_step(method, model, opt, step, epoch=step)
    # Snapshot what a checkpoint holds: model, method and optimiser state (+ the global RNG).
    model_b = copy.deepcopy(model)
    method_state = copy.deepcopy(method.state_dict())
    opt_state = copy.deepcopy(opt.state_dict())
    method_b = build(name, T, level=level)
    method_b.load_state_dict(method_state)
    opt_b = make_optimizer(method_b, model_b, SPEC)
    opt_b.load_state_dict(opt_state)

    torch.manual_seed(7)
    rep_a, _ = train_step(method, model, opt, 3, epoch=3)
    torch.manual_seed(7)
    rep_b, _ = train_step(method_b, model_b, opt_b, 3, epoch=3)
    for (pname, pa), pb in zip(model.named_parameters(), model_b.parameters()):
        assert torch.equal(pa, pb), f"{name}/{level}: parameter {pname} differs after the resumed step"
    for (k, va), vb in zip(method.state_dict().items(), method_b.state_dict().values()):
        assert torch.equal(va, vb), f"{name}/{level}: state {k} differs after the resumed step"
    if rep_a.weights is not None:
        assert torch.equal(rep_a.weights, rep_b.weights)


@pytest.mark.parametrize("name", names())
def test_unknown_name_suggests_the_closest(name: str) -> None:
    with pytest.raises(ValueError) as err:
        build(name + "x", 3)
    assert repr(name) in str(err.value), str(err.value)


@pytest.mark.parametrize("name", names())
def test_unknown_hyperparameter_lists_the_accepted_ones(name: str) -> None:
    with pytest.raises(ValueError) as err:
        build(name, 3, not_a_hyperparameter=1)
    msg = str(err.value)
    assert "not_a_hyperparameter" in msg
    for hp in hyperparameters(get(name)):
        assert hp in msg, f"{name}: accepted hyperparameter {hp} not listed in {msg!r}"


@pytest.mark.parametrize("name", names())
def test_method_is_documented_and_typed(name: str) -> None:
    cls = get(name)
    assert cls.name == name
    assert cls.kind in ("loss weighting", "gradient combination", "optimizer", "regularizer")
    assert cls.paper.strip(), f"{name}: no paper"
    doc = sys.modules[cls.__module__].__doc__ or ""
    assert len(doc) > 200, f"{name}: the module docstring must document paper, defaults and departures"
    if Level.FEATURE not in cls.levels:
        assert cls.level_note.strip(), f"{name}: a level that does not apply needs a level_note"
    sig = inspect.signature(cls.__init__)
    for hp, (annotation, default) in hyperparameters(cls).items():
        assert annotation is not inspect.Parameter.empty, f"{name}.{hp}: untyped hyperparameter"
        assert default is not inspect.Parameter.empty, f"{name}.{hp}: no default"
    assert "num_tasks" in sig.parameters and "level" in sig.parameters


def test_methods_command_lists_every_registered_method(capsys) -> None:
    import json

    from training.cli import main

    assert main(["methods", "--json"]) == 0
    entries = {e["name"]: e for e in json.loads(capsys.readouterr().out)}
    assert sorted(entries) == names()
    famo = entries["famo"]
    assert famo["hyperparameters"]["w_lr"] == {"type": "float", "default": 0.025}
    assert famo["needs_post_step"] and famo["levels"] == [] and famo["level_note"]
    assert entries["pcgrad"]["levels"] == ["parameter", "feature"]
    assert main(["methods"]) == 0
    text = capsys.readouterr().out
    assert all(f"\n{n}  (" in text for n in names())
    assert main(["methods", "famoo"]) == 2
    assert "did you mean 'famo'" in capsys.readouterr().err


def test_bench_methods_rejects_bad_arguments(capsys) -> None:
    from training.cli import main

    assert main(["bench", "methods", "--size", "0"]) == 2
    assert "--size" in capsys.readouterr().err
    assert main(["bench", "methods", "--methods", "famoo", "--device", "cpu"]) == 2
    assert "did you mean 'famo'" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_methods_runs_on_the_real_network(capsys) -> None:
    from training.cli import main

    argv = ["bench", "methods", "--device", "cpu", "--size", "64", "--batch", "1", "--steps", "1",
            "--warmup", "0", "--methods", "ew", "uw_o", "--threads", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| uw_o |")]
    assert len(rows) == 1
    ratio = float(rows[0].split("|")[5])
    assert 0.2 < ratio < 5.0  # one weighted backward, like EW
