"""The Trainer: a short loop over the one training step; everything else is a hook.

    parts = build_run(cfg, device, family)         # training.engine.assembly: the one place that builds
    trainer = build_trainer(parts)                 # = Trainer(parts.step, parts.scheduler, parts.loader,
                                                   #   parts.hooks, total_steps=..., run_dir=..., config=...)
    trainer.load_state_dict(read_checkpoint(path))   # optional: resume
    trainer.fit()

The loop never looks at which MTL method or model family runs. Data order is a function of (seed,
epoch) (sampler.py) and checkpoints hold every RNG, so a resumed run repeats an uninterrupted one
exactly on CPU.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.checkpoint import atomic_save, rng_state, set_rng_state
from training.engine.hooks import Hook
from training.engine.sampler import TrainLoader
from training.engine.step import StepResult, TrainStep
from training.rundir import RunDir


class TrainingDivergedError(RuntimeError):
    """Too many consecutive steps had non-finite losses or gradients."""


class Trainer:
    """Runs `step` on the loader's batches until `total_steps`, calling `hooks` around it.

    config: the resolved config as plain data, stored in every checkpoint (export rebuilds the model
    from it). max_nonfinite: consecutive skipped steps that stop the run.
    """

    def __init__(
        self,
        step: TrainStep,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        loader: TrainLoader,
        hooks: Sequence[Hook],
        total_steps: int,
        run_dir: str | Path,
        config: Mapping[str, Any] | None = None,
        max_nonfinite: int = 5,
    ) -> None:
        self.train_step, self.scheduler, self.loader = step, scheduler, loader
        self.hooks = list(hooks)
        self.total_steps, self.max_nonfinite = total_steps, max_nonfinite
        self.run_dir = RunDir(run_dir)
        self.config = dict(config or {})
        self.step, self.epoch, self.resumed, self.train_time_s = 0, 0, False, 0.0
        self.consecutive_skips = 0

    # ---- state ---------------------------------------------------------------------------------
    @property
    def module(self) -> nn.Module:
        return self.train_step.model.module

    @property
    def lr(self) -> float:
        return float(self.train_step.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        """A checkpoint (format: `training.checkpoint`)."""
        return {
            "model": self.module.state_dict(),
            "optimizer": self.train_step.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "method": self.train_step.method.state_dict(),
            "rng": {**rng_state(), "loader_seed": self.loader.epoch_seed(self.epoch)},
            "step": self.step,
            "epoch": self.epoch,
            "config": self.config,
            "train_time_s": self.train_time_s,
        }

    def save_checkpoint(self, path: str | Path) -> Path:
        return atomic_save(self.state_dict(), path)

    def load_state_dict(self, ckpt: Mapping[str, Any]) -> None:
        """Continue from a checkpoint of `read_checkpoint` (same model/method/optimiser structure)."""
        self.module.load_state_dict(ckpt["model"])
        self.train_step.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.train_step.method.load_state_dict(ckpt["method"])
        set_rng_state(ckpt["rng"])
        self.step, self.epoch = int(ckpt["step"]), int(ckpt["epoch"])
        self.train_time_s = float(ckpt.get("train_time_s", 0.0))
        self.resumed = True

    # ---- loop ----------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Run until `total_steps`; returns {"step", "skipped", "train_time_s"}."""
        self.module.train()
        skipped = 0
        try:
            for h in self.hooks:
                h.on_start(self)
            per_epoch = self.loader.batches_per_epoch
            while self.step < self.total_steps:
                self.epoch = self.step // per_epoch
                for batch in self.loader.epoch(self.epoch, self.step % per_epoch):
                    skipped += int(self._one_step(batch).skipped)
                    if self.step >= self.total_steps:
                        break
            for h in reversed(self.hooks):  # last installed ends first: the final eval still logs to TB
                h.on_end(self)
        except BaseException:
            self._close_hooks(raise_errors=False)  # close files; the caller sees the run's own error
            raise
        self._close_hooks(raise_errors=True)
        return {"step": self.step, "skipped": skipped, "train_time_s": self.train_time_s}

    def _close_hooks(self, raise_errors: bool) -> None:
        """`close()` every hook, also when one of them fails; the first failure is raised afterwards
        (`raise_errors`) or warned about (while another error is already on its way to the caller)."""
        errors: list[Exception] = []
        for h in self.hooks:
            try:
                h.close()
            except Exception as exc:  # noqa: BLE001 - the other hooks must still release what they hold
                errors.append(exc)
        first = errors[0] if errors and raise_errors else None
        for error in errors:
            if error is not first:
                warnings.warn(f"{type(error).__name__} while closing a hook: {error}", stacklevel=3)
        if first is not None:
            raise first

    def _one_step(self, batch: Any) -> StepResult:
        t0 = time.perf_counter()
        result = self.train_step(batch, self.step, self.epoch, self.hooks)
        with warnings.catch_warnings():
            # a skipped step did not call optimizer.step(); the schedule advances anyway
            warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*optimizer.step")
            self.scheduler.step()
        self.step += 1
        self.train_time_s += time.perf_counter() - t0
        self._guard(result)
        for h in self.hooks:
            h.after_step(self, result)
        return result

    def _guard(self, result: StepResult) -> None:
        self.consecutive_skips = self.consecutive_skips + 1 if result.skipped else 0
        if self.consecutive_skips >= self.max_nonfinite:
            raise TrainingDivergedError(
                f"stopped at step {self.step}: {self.consecutive_skips} consecutive steps had non-finite "
                f"losses or gradients (train.max_nonfinite = {self.max_nonfinite}); last: "
                f"{result.reason}. Try a lower optim.lr, optim.grad_clip > 0 or a longer "
                f"schedule.warmup_steps; the last good checkpoint is {self.run_dir.last_checkpoint}"
            )
