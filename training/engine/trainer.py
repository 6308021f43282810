"""The Trainer: a short step loop; everything else is a hook (see hooks.py) or the step (step.py).

    trainer = Trainer(cfg, model, train_set, evaluator=...)
    trainer.resume(checkpoint)   # optional
    trainer.fit()

The loop never looks at which MTL method runs. Data order is a function of (seed, epoch) (sampler.py),
and checkpoints hold every RNG, so a resumed run repeats an uninterrupted one exactly on CPU.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from training.config import TrainConfig, dump_config, to_dict
from training.engine import distributed as D
from training.engine.build import build_method, build_optimizer_for, build_task_spec
from training.engine.checkpoint import atomic_save, rng_state, set_rng_state
from training.engine.hooks import Checkpoint, Evaluate, Hook, MetricsCSV, Plots, Progress, TensorBoard
from training.engine.sampler import EpochBatchSampler, epoch_seed
from training.engine.schedule import build_scheduler
from training.engine.step import StepResult, TrainStep
from training.tasks import TaskSpec


class TrainingDivergedError(RuntimeError):
    """Too many consecutive steps had non-finite losses or gradients."""


def _worker_init(worker_id: int) -> None:
    # numpy/random in workers follow torch's per-worker seed (itself derived from the epoch generator)
    import random

    import numpy as np

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class Trainer:
    """Train `model` on `train_set` per `cfg`; writes the run directory on the main rank."""

    def __init__(
        self,
        cfg: TrainConfig,
        model: torch.nn.Module,
        train_set: torch.utils.data.Dataset,
        collate: Callable[[list], Any],
        device: torch.device,
        evaluator: Callable[[torch.nn.Module], dict[str, float]] | None = None,
        task_spec: TaskSpec | None = None,
        loss_names: list[str] | None = None,
        run_dir: str | Path | None = None,
        hooks: list[Hook] | None = None,
    ) -> None:
        self.cfg, self.model, self.train_set, self.collate = cfg, model, train_set, collate
        self.device = device
        self.dist = D.current()
        self.run_dir = Path(run_dir if run_dir is not None else cfg.run_dir)
        self.task_spec = task_spec if task_spec is not None else build_task_spec(cfg)
        self.loss_names = loss_names or [n for _, group in self.task_spec.tasks for n in group]
        self.method = build_method(cfg, len(self.task_spec)).to(device)
        self.optimizer = build_optimizer_for(cfg, model, self.method)
        self.total_steps = cfg.train.steps
        if self.dist.is_main:
            for msg in self.method.schedule_warnings(self.total_steps, self.steps_per_epoch):
                warnings.warn(msg, stacklevel=2)
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule, self.total_steps)
        self.step, self.epoch, self.resumed, self.train_time_s = 0, 0, False, 0.0
        self.consecutive_skips = 0
        diag_fn, diag_due = None, None
        if cfg.diagnostics.every > 0:
            from training.diagnostics import compute_diagnostics

            dcfg = cfg.diagnostics

            def diag_fn(ctx):
                return compute_diagnostics(ctx, dcfg)

            diag_due = dcfg.due
        self.train_step = TrainStep(
            model, self.task_spec, self.method, self.optimizer, device, amp=cfg.train.amp,
            grad_clip=cfg.optim.grad_clip, batched_vjp=cfg.mtl.batched_vjp, diagnostics=diag_fn,
            diagnostics_due=diag_due, seed=cfg.seed,
        )  # fmt: skip
        if hooks is None:
            hooks = self.default_hooks(evaluator) if self.dist.is_main else []
        self.hooks = hooks

    def default_hooks(self, evaluator) -> list[Hook]:
        names = list(self.task_spec.names)
        diag_keys = self.cfg.diagnostics.keys() if self.cfg.diagnostics.every > 0 else []
        tb = TensorBoard(names)
        hooks: list[Hook] = [MetricsCSV(self.loss_names, names, diag_keys), tb]
        hooks.append(Progress(self.cfg.train.progress))
        if evaluator is not None:
            hooks.append(Evaluate(evaluator, self.cfg.train.eval_every, self.cfg.train.eval_at_start, tb))
        hooks += [Checkpoint(self.cfg.train.checkpoint_every, self.cfg.train.keep_checkpoints), Plots()]
        return hooks

    # ---- state ---------------------------------------------------------------------------------
    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    @property
    def steps_per_epoch(self) -> int:
        return EpochBatchSampler.batches_per_epoch(len(self.train_set), self.cfg.train.batch_size)

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "method": self.method.state_dict(),
            "rng": {**rng_state(), "loader_seed": epoch_seed(self.cfg.seed, self.epoch)},
            "step": self.step,
            "epoch": self.epoch,
            "config": to_dict(self.cfg),
            "train_time_s": self.train_time_s,
        }

    def save_checkpoint(self, path: str | Path) -> Path:
        return atomic_save(self.state_dict(), path)

    def resume(self, ckpt: dict[str, Any]) -> None:
        """Continue from a checkpoint of `load_checkpoint` (same model/method/optimiser structure)."""
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.method.load_state_dict(ckpt["method"])
        set_rng_state(ckpt["rng"])
        self.step, self.epoch = int(ckpt["step"]), int(ckpt["epoch"])
        self.train_time_s = float(ckpt.get("train_time_s", 0.0))
        self.resumed = True

    # ---- loop ----------------------------------------------------------------------------------
    def _loader(self, epoch: int, start_batch: int) -> torch.utils.data.DataLoader:
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch)  # augmentation draws depend on (seed, epoch, index)
        sampler = EpochBatchSampler(
            len(self.train_set), self.cfg.train.batch_size, self.cfg.seed, epoch,
            self.dist.rank, self.dist.world_size, start_batch,
        )  # fmt: skip
        workers = self.cfg.data.num_workers
        return torch.utils.data.DataLoader(
            self.train_set, batch_sampler=sampler, collate_fn=self.collate, num_workers=workers,
            pin_memory=self.cfg.data.pin_memory and self.device.type == "cuda",
            generator=torch.Generator().manual_seed(epoch_seed(self.cfg.seed, epoch)),
            worker_init_fn=_worker_init if workers > 0 else None,
        )  # fmt: skip

    def fit(self) -> dict[str, Any]:
        """Run until `train.steps`; returns {"step", "skipped", "train_time_s"}."""
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            dump_config(self.cfg, self.run_dir / "config.yaml")
        self.model.train()
        for h in self.hooks:
            h.on_start(self)
        skipped = 0
        spe = self.steps_per_epoch
        try:
            while self.step < self.total_steps:
                self.epoch = self.step // spe
                for batch in self._loader(self.epoch, self.step % spe):
                    t0 = time.perf_counter()
                    result = self.train_step(batch, self.step, self.epoch)
                    with warnings.catch_warnings():
                        # a skipped step did not call optimizer.step(); the schedule advances anyway
                        warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*optimizer.step")
                        self.scheduler.step()
                    self.step += 1
                    self.train_time_s += time.perf_counter() - t0
                    skipped += int(result.skipped)
                    self._guard(result)
                    for h in self.hooks:
                        h.after_step(self, result)
                    if self.step >= self.total_steps:
                        break
            for h in reversed(self.hooks):  # last installed ends first: the final eval still logs to TB
                h.on_end(self)
        finally:
            for h in self.hooks:  # close files even when the run stops with an error
                for attr in ("csv", "bar"):
                    obj = getattr(h, attr, None)
                    if obj is not None and hasattr(obj, "close"):
                        obj.close()
        return {"step": self.step, "skipped": skipped, "train_time_s": self.train_time_s}

    def _guard(self, result: StepResult) -> None:
        self.consecutive_skips = self.consecutive_skips + 1 if result.skipped else 0
        if self.consecutive_skips >= self.cfg.train.max_nonfinite:
            raise TrainingDivergedError(
                f"stopped at step {self.step}: {self.consecutive_skips} consecutive steps had non-finite "
                f"losses or gradients (train.max_nonfinite = {self.cfg.train.max_nonfinite}); last: "
                f"{result.reason}. Try a lower optim.lr, optim.grad_clip > 0 or a longer "
                f"schedule.warmup_steps; "
                f"the last good checkpoint is {self.run_dir / 'checkpoints' / 'last.pt'}"
            )
