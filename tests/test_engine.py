"""The engine with a second model family (test_ddp's TinyNet): hook phases and resource ownership, the
diagnostics hook, exact resume through the trainer, the checkpoint and run-directory contracts.

The bin-picking family runs the same engine in tests/test_train.py and tests/test_engine_pin.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from test_ddp import TASKS, TinyFamily, TinyNet

from training import rundir
from training.checkpoint import CHECKPOINT_KEYS, MODEL_KEYS, read_checkpoint
from training.config import config_from_dict
from training.diagnostics import DiagnosticsConfig, DiagnosticsHook
from training.engine.assembly import build_run, build_trainer
from training.engine.hooks import Hook
from training.engine.protocols import MTLModel
from training.tasks import TaskSpec

CPU = torch.device("cpu")


def tiny_cfg(run_dir: Path, steps: int = 4, **mtl) -> object:
    return config_from_dict({
        "seed": 2, "run_dir": str(run_dir), "data": {"num_workers": 0}, "optim": {"lr": 0.05},
        "schedule": {"warmup_steps": 0, "warmup_factor": 1.0}, "mtl": {"name": "pcgrad", **mtl},
        "train": {"steps": steps, "batch_size": 4, "device": "cpu", "progress": False},
    })  # fmt: skip


class Phases(Hook):
    """Records every phase call; optionally fails in after_step at a given step."""

    def __init__(self, log: list[str], fail_at: int | None = None) -> None:
        self.log, self.fail_at = log, fail_at

    def on_start(self, loop) -> None:
        self.log.append("start")

    def on_gradients(self, ctx) -> dict[str, float]:
        self.log.append(f"gradients {ctx.step}")
        return {"diag/test_norm": float(ctx.feature_grads().norm())}

    def after_step(self, loop, result) -> None:
        self.log.append(f"after {loop.step} {sorted(result.metrics)}")
        if loop.step == self.fail_at:
            raise RuntimeError("hook failed")

    def on_end(self, loop) -> None:
        self.log.append("end")

    def close(self) -> None:
        self.log.append("close")


def test_the_second_family_satisfies_the_protocol() -> None:
    assert isinstance(TinyNet(), MTLModel)


def test_hook_phases_run_in_order_and_every_hook_is_closed_after_an_error(tmp_path: Path) -> None:
    a, b = [], []
    hooks = [Phases(a), Phases(b, fail_at=2)]
    trainer = build_trainer(build_run(tiny_cfg(tmp_path), CPU, TinyFamily(), hooks=hooks, evaluate=False))
    with pytest.raises(RuntimeError, match="hook failed"):
        trainer.fit()
    # the gradient phase runs inside each step, before the method; its metrics reach the step's result
    metrics = "['diag/test_norm']"
    assert a == ["start", "gradients 0", f"after 1 {metrics}", "gradients 1", f"after 2 {metrics}", "close"]
    assert b[-1] == "close" and "end" not in b


class FailingClose(Hook):
    def close(self) -> None:
        raise OSError("disk full while closing")


def test_a_hook_whose_close_fails_does_not_keep_the_others_open(tmp_path: Path) -> None:
    # the run itself succeeds: every hook is closed, then the close error is raised
    log: list[str] = []
    hooks = [FailingClose(), Phases(log)]
    trainer = build_trainer(build_run(tiny_cfg(tmp_path / "a"), CPU, TinyFamily(), hooks, evaluate=False))
    with pytest.raises(OSError, match="disk full"):
        trainer.fit()
    assert log[-2:] == ["end", "close"]
    # the run fails: every hook is closed and the caller sees the run's error, not the close error
    log = []
    hooks = [FailingClose(), Phases(log, fail_at=1)]
    trainer = build_trainer(build_run(tiny_cfg(tmp_path / "b"), CPU, TinyFamily(), hooks, evaluate=False))
    with pytest.warns(UserWarning, match="disk full"), pytest.raises(RuntimeError, match="hook failed"):
        trainer.fit()
    assert log[-1] == "close"


def test_diagnostics_hook_measures_on_due_steps_only(tmp_path: Path) -> None:
    rows = []

    class Rows(Hook):
        def after_step(self, loop, result) -> None:
            rows.append(dict(result.metrics))

    cfg = DiagnosticsConfig(every=2, fd=True, levels=("feature",))
    hooks = [DiagnosticsHook(cfg), Rows()]
    run = build_run(tiny_cfg(tmp_path, level="feature"), CPU, TinyFamily(), hooks, evaluate=False)
    build_trainer(run).fit()
    keys = sorted(cfg.keys())
    assert [sorted(r) for r in rows] == [keys, [], keys, []]  # steps 0..3
    assert all(math.isfinite(v) for r in rows for v in r.values())
    assert rundir.DIAG_FD in keys and set(rundir.similarity_keys("feature")) <= set(keys)


def _params(trainer) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in trainer.module.parameters()])


def test_resume_through_the_checkpoint_reader_repeats_the_uninterrupted_run(tmp_path: Path) -> None:
    straight = build_trainer(build_run(tiny_cfg(tmp_path / "a"), CPU, TinyFamily(), hooks=[], evaluate=False))
    straight.fit()
    half = build_trainer(build_run(tiny_cfg(tmp_path / "b", steps=2), CPU, TinyFamily(), [], evaluate=False))
    half.fit()
    path = half.save_checkpoint(rundir.RunDir(tmp_path / "b").last_checkpoint)
    resumed = build_trainer(build_run(tiny_cfg(tmp_path / "b"), CPU, TinyFamily(), hooks=[], evaluate=False))
    ckpt = read_checkpoint(tmp_path / "b")  # a run directory resolves to checkpoints/last.pt
    assert ckpt["path"] == str(path) and set(CHECKPOINT_KEYS) <= set(ckpt) and ckpt["step"] == 2
    resumed.load_state_dict(ckpt)
    resumed.fit()
    assert torch.equal(_params(resumed), _params(straight))  # PCGrad: stochastic, stateless
    assert not torch.equal(_params(resumed), torch.cat([p.reshape(-1) for p in TinyNet().parameters()]))


def test_the_one_checkpoint_reader_names_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="checkpoint: no such file"):
        read_checkpoint(tmp_path / "missing.pt")
    partial = tmp_path / "partial.pt"
    torch.save({"model": {}, "config": {"model": {}}}, partial)
    assert set(read_checkpoint(partial, required=MODEL_KEYS)) == {"model", "config", "path"}  # export's need
    lacks = r"lacks \['optimizer', 'scheduler', 'method', 'rng', 'step', 'epoch'\]"
    with pytest.raises(ValueError, match=lacks):
        read_checkpoint(partial)  # resume needs everything
    bad_config = tmp_path / "bad_config.pt"
    torch.save({"model": {}, "config": [1, 2]}, bad_config)
    with pytest.raises(ValueError, match="'config' of .* must be a dict, got list"):
        read_checkpoint(bad_config, required=MODEL_KEYS)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        read_checkpoint(garbage)


def test_run_directory_contract() -> None:
    run = rundir.RunDir("runs/x")
    assert run.last_checkpoint == Path("runs/x/checkpoints/last.pt")
    assert run.config == Path("runs/x/config.yaml")
    assert run.step_checkpoint(7) == Path("runs/x/checkpoints/step_7.pt")
    assert rundir.run_dir_of_checkpoint("runs/x/checkpoints/last.pt") == Path("runs/x").resolve()
    assert rundir.run_dir_of_checkpoint("elsewhere/last.pt") is None
    columns = rundir.metrics_columns(["l1"], ["t1"], ["diag/fd", "diag/extra"])
    assert columns[:5] == list(rundir.STEP_COLUMNS) and columns[5:7] == ["loss/l1", "weight/t1"]
    assert columns[7 : 7 + len(rundir.DIAG_KEYS)] == list(rundir.DIAG_KEYS) and columns[-1] == "diag/extra"


def test_task_spec_groups_any_family_losses() -> None:
    spec = TaskSpec.from_mapping({"ab": ["a", "b"], "c": ["c"]}, TASKS)
    assert spec.names == ("ab", "c")
    losses = {n: torch.tensor(float(i + 1)) for i, n in enumerate(TASKS)}
    assert [float(v) for v in spec.task_losses(losses)] == [3.0, 3.0]
    with pytest.raises(ValueError, match="names unknown loss 'rpn_box'"):
        TaskSpec.from_mapping({"x": ["rpn_box"]}, TASKS)
    with pytest.raises(ValueError, match=r"losses \['c'\] belong to no task"):
        TaskSpec.from_mapping({"ab": ["a", "b"]}, TASKS)


def test_kept_step_checkpoints_are_written_atomically(tmp_path: Path, monkeypatch) -> None:
    """checkpoints/step_<N>.pt (keep_checkpoints) is atomic like last.pt: a copy that dies half-way
    leaves no torn step file behind."""
    import shutil

    from training.engine.hooks import Checkpoint

    class Loop:
        step, run_dir = 3, rundir.RunDir(tmp_path)

        def save_checkpoint(self, path):
            from training.checkpoint import atomic_save

            return atomic_save({"step": 3}, path)

    def dies_half_way(src, dst, *args, **kwargs):
        Path(dst).write_bytes(Path(src).read_bytes()[:5])
        raise OSError("killed mid-copy")

    monkeypatch.setattr(shutil, "copyfile", dies_half_way)
    with pytest.raises(OSError, match="mid-copy"):
        Checkpoint(every=1, keep=True).on_end(Loop())
    assert not Loop.run_dir.step_checkpoint(3).exists()
    monkeypatch.undo()
    Checkpoint(every=1, keep=True).on_end(Loop())
    assert read_checkpoint(Loop.run_dir.step_checkpoint(3), required=("step",))["step"] == 3
