"""Registry-driven contract of every MTL method, driven through the trainer's step object.

Every registered method, built with its defaults, runs inside `training.engine.step.TrainStep` (the
object the trainer, the benchmarks and these tests share) on a tiny real torch model (shared trunk ->
two feature tensors Z -> T heads; the step computes the losses from detached feature leaves), with the
optimiser of `training.engine.assembly.build_optimizer`: it must write finite `.grad` to every
parameter for T = 2..7 at each supported level, and a `state_dict()` round trip must reproduce the next
step exactly. The tiny model and the step helpers live here and are imported by the other MTL tests.
"""

from __future__ import annotations

import copy
import inspect
import sys
from typing import NamedTuple

import pytest
import torch

from training.engine.assembly import build_optimizer
from training.engine.step import StepResult, TrainStep
from training.mtl import Level, OptimizerSpec, StepContext, build, get, names
from training.mtl.base import hyperparameters
from training.mtl.registry import aliases
from training.tasks import TaskSpec

CPU = torch.device("cpu")


class TinyMTL(torch.nn.Module):
    """Shared trunk producing Z = [z1 [B,6], z2 [B,4]]; head i maps cat(Z) to one output.

    Task loss i = mean((head_i(Z) − y_i)²) · scale_i (smooth, positive, twice differentiable).
    `features(x)` / `losses(Z, y)` are the plain network; `TinyStepModel` is its engine `MTLModel`.
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


class TinyBatch(NamedTuple):
    x: torch.Tensor  # [n, 5]
    y: torch.Tensor  # [n, T]
    scales: torch.Tensor | None = None  # [T] per-task loss scales

    def to(self, device: torch.device) -> TinyBatch:
        return TinyBatch(self.x.to(device), self.y.to(device), self.scales)


class TinyStepModel:
    """TinyMTL as the engine's `MTLModel` (named losses t0..t{T-1})."""

    def __init__(self, net: TinyMTL) -> None:
        self.net = net

    @property
    def module(self) -> torch.nn.Module:
        return self.net

    def features(self, batch: TinyBatch) -> list[torch.Tensor]:
        return self.net.features(batch.x)

    def heads(self, Z, batch: TinyBatch) -> dict[str, torch.Tensor]:
        losses = self.net.losses(Z, batch.y, batch.scales)
        return {f"t{i}": losses[i] for i in range(losses.shape[0])}

    def shared_parameters(self) -> list[torch.nn.Parameter]:
        return self.net.shared_parameters()

    def task_parameters(self) -> list[torch.nn.Parameter]:
        return self.net.task_parameters()


def batch(num_tasks: int, step: int, dtype: torch.dtype = torch.float64, n: int = 8):
    """Deterministic data of one step (independent of the global RNG)."""
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(n, 5, generator=g, dtype=dtype)
    y = torch.randn(n, num_tasks, generator=g, dtype=dtype)
    return x, y


def make_optimizer(method, model: TinyMTL, spec: OptimizerSpec) -> torch.optim.Optimizer:
    """The trainer's optimiser (`training.engine.assembly.build_optimizer`)."""
    return build_optimizer(method, TinyStepModel(model), spec)


def make_step(method, model: TinyMTL, opt: torch.optim.Optimizer, seed: int = 0) -> TrainStep:
    T = len(model.heads)
    spec = TaskSpec.one_per_loss([f"t{i}" for i in range(T)])
    return TrainStep(TinyStepModel(model), spec, method, opt, CPU, seed=seed)


def make_ctx(model: TinyMTL, x, y, step: int = 0, epoch: int = 0, scales=None) -> StepContext:
    """The StepContext the trainer's step builds (features -> detached leaves -> losses)."""
    placeholder = build("ew", len(model.heads))
    step_obj = make_step(placeholder, model, torch.optim.SGD(model.parameters(), lr=0.0))
    return step_obj.forward(TinyBatch(x, y, scales), step, epoch).ctx


def train_step(method, model, opt, step: int, epoch: int, scales=None) -> tuple[StepResult, TrainStep]:
    """One step of the trainer's step object on this step's batch; returns (result, the step)."""
    T = len(model.heads)
    x, y = batch(T, step, dtype=next(model.parameters()).dtype)
    step_obj = make_step(method, model, opt)
    result = step_obj(TinyBatch(x, y, scales), step, epoch)
    assert not result.skipped, result.reason
    return result, step_obj


def _levels(name: str) -> list[str]:
    cls = get(name)
    return [lv.value for lv in cls.levels] or ["parameter"]


CASES = [(n, lv) for n in names() for lv in _levels(n)]
SPEC = OptimizerSpec(name="sgd", lr=0.05, momentum=0.9)


def check_one_step(step: TrainStep, step_batch, label: str, T: int) -> None:
    """The contract of one step of any model family: the method writes a finite `.grad` to every
    parameter (the network's and its own), moves the shared parameters, reports `[T]` finite weights
    that the step logs in float32, and the update changes the parameters without non-finite values.
    tests/test_dense_contract.py runs it on the dense family."""
    model, method = step.model, step.method
    params = list(model.module.named_parameters())
    before = [p.detach().clone() for _, p in params]
    state = step.forward(step_batch, 0, 0)
    report = step.backward(state)
    owned = [(f"method.{k}", v) for k, v in method.named_parameters()]
    for pname, p in params + owned:
        assert p.grad is not None, f"{label}: no .grad on {pname}"
        assert torch.isfinite(p.grad).all(), f"{label}: non-finite .grad on {pname}"
    assert any(p.grad.abs().sum() > 0 for p in model.shared_parameters()), f"{label}: zero shared update"
    if report.weights is not None:
        assert report.weights.shape == (T,) and torch.isfinite(report.weights).all()
    result = step.update(state, report)
    assert not result.skipped, result.reason
    if report.weights is not None:
        assert result.weights == [float(w) for w in report.weights.float()]  # logged in float32
    after = [p for _, p in params]
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(before, after)), f"{label}: the step changed nothing"


@pytest.mark.parametrize("name,level", CASES)
@pytest.mark.parametrize("T,dtype", [(t, torch.float64) for t in range(2, 8)] + [(3, torch.float32)])
def test_backward_writes_finite_grad_to_every_parameter(name: str, level: str, T: int, dtype) -> None:
    torch.manual_seed(0)
    model = TinyMTL(T, dtype=dtype)
    method = build(name, T, level=level)
    step = make_step(method, model, make_optimizer(method, model, SPEC))
    x, y = batch(T, 0, dtype=dtype)
    check_one_step(step, TinyBatch(x, y), f"{name}/{level}", T)


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

    # the step seeds a stochastic method's draws by (seed, step), like the trainer: nothing to reseed
    rep_a, _ = train_step(method, model, opt, 3, epoch=3)
    rep_b, _ = train_step(method_b, model_b, opt_b, 3, epoch=3)
    for (pname, pa), pb in zip(model.named_parameters(), model_b.parameters()):
        assert torch.equal(pa, pb), f"{name}/{level}: parameter {pname} differs after the resumed step"
    for (k, va), vb in zip(method.state_dict().items(), method_b.state_dict().values()):
        assert torch.equal(va, vb), f"{name}/{level}: state {k} differs after the resumed step"
    assert rep_a.weights == rep_b.weights and rep_a.extras == rep_b.extras


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
    assert sorted(entries) == sorted([*names(), *aliases()])
    # the -UB methods are aliases: the target method fixed at the feature level
    assert entries["mgda_ub"]["alias_of"] == "mgda" and entries["mgda_ub"]["levels"] == ["feature"]
    assert entries["alignedmtl_ub"]["alias_of"] == "alignedmtl" and entries["mgda"]["alias_of"] is None
    famo = entries["famo"]
    assert famo["hyperparameters"]["w_lr"] == {"type": "float", "default": 0.025}
    assert famo["needs_post_step"] and famo["levels"] == [] and famo["level_note"]
    assert entries["pcgrad"]["levels"] == ["parameter", "feature"]
    assert main(["methods"]) == 0
    text = capsys.readouterr().out
    assert all(f"\n{n}  (" in text for n in [*names(), *aliases()])
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


def test_ub_aliases_build_the_target_method_at_the_feature_level() -> None:
    for alias, target in (("mgda_ub", "mgda"), ("alignedmtl_ub", "alignedmtl")):
        method = build(alias, 3)
        assert type(method) is get(target) and method.level is Level.FEATURE and method.name == target
        assert build(alias, 3, level="feature").level is Level.FEATURE
        with pytest.raises(ValueError, match=f"{alias} is {target} at the feature level"):
            build(alias, 3, level="parameter")
    assert "mgda_ub" not in names() and aliases()["mgda_ub"].target == "mgda"
