"""Trainer hooks: everything around the step loop (logging, progress, checkpoints, evaluation, plots).

A hook implements any of the phases, called in this order:
    on_start(loop)              before the first step of this process (also after a resume)
    on_gradients(ctx) -> dict   inside every step, after the losses and the per-task-gradient context
                                exist and before the method's backward (per-task gradients asked for
                                here are cached and reused by the method); returns metrics for this
                                step's row (e.g. diag/*). Runs on every rank.
    after_step(loop, result)    after each step (skipped steps included)
    on_end(loop)                after the last step, in reverse order of installation
    close()                     always, also when the run stops with an error: release what it opened
`loop.step` is the number of optimiser steps done (1 after the first step). Hooks that write files are
installed on the main rank only (`training.engine.assembly.build_hooks` decides); file names and metric
keys come from `training.rundir`.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from torch import nn

from training import rundir
from training.checkpoint import atomic_copy
from training.engine.protocols import Evaluator
from training.engine.step import StepResult
from training.mtl.context import StepContext

if TYPE_CHECKING:  # pragma: no cover - types only
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm


class Loop(Protocol):
    """What hooks see of the trainer (`training.engine.trainer.Trainer` implements it)."""

    step: int
    epoch: int
    total_steps: int
    resumed: bool
    train_time_s: float
    run_dir: rundir.RunDir

    @property
    def lr(self) -> float: ...

    @property
    def module(self) -> nn.Module: ...

    def save_checkpoint(self, path: str | Path) -> Path: ...


class Hook:
    """Base class: every phase does nothing."""

    def on_start(self, loop: Loop) -> None:
        """Before the first step of this process (also after a resume)."""

    def on_gradients(self, ctx: StepContext) -> Mapping[str, float]:
        """Inside the step, before the method's backward; metrics for this step's row."""
        return {}

    def after_step(self, loop: Loop, result: StepResult) -> None:
        """After each step (skipped steps included)."""

    def on_end(self, loop: Loop) -> None:
        """After the last step."""

    def close(self) -> None:
        """Release files, writers and bars; called once, also after an error."""


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


class _CsvFile:
    """A CSV with a fixed header; on resume, rows after `keep_until_step` are dropped (they were lost)."""

    def __init__(self, path: Path, columns: list[str], keep_until_step: int | None) -> None:
        self.path, self.columns = path, columns
        rows: list[dict[str, str]] = []
        if keep_until_step is not None and path.is_file():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= keep_until_step]
        self.file = open(path, "w", newline="")  # noqa: SIM115 - kept open for the whole run
        self.writer = csv.DictWriter(self.file, fieldnames=columns, extrasaction="ignore")
        self.writer.writeheader()
        self.writer.writerows(rows)
        self.file.flush()

    def write(self, row: dict[str, Any]) -> None:
        self.writer.writerow({k: _cell(row.get(k)) for k in self.columns})
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class MetricsCSV(Hook):
    """metrics.csv: step, epoch, lr, time_s, skipped, loss/<name>, weight/<task>, diag/<key>."""

    def __init__(
        self, loss_names: Sequence[str], task_names: Sequence[str], diag_keys: Sequence[str]
    ) -> None:
        self.columns = rundir.metrics_columns(loss_names, task_names, diag_keys)
        self.task_names = list(task_names)
        self.csv: _CsvFile | None = None
        self._last = time.perf_counter()

    def on_start(self, loop: Loop) -> None:
        keep = loop.step if loop.resumed else None
        self.csv = _CsvFile(loop.run_dir.metrics_csv, self.columns, keep)
        self._last = time.perf_counter()

    def after_step(self, loop: Loop, result: StepResult) -> None:
        now = time.perf_counter()
        row: dict[str, Any] = {
            "step": loop.step, "epoch": loop.epoch, "lr": loop.lr,
            "time_s": round(now - self._last, 6), "skipped": int(result.skipped),
        }  # fmt: skip
        self._last = now
        row.update({rundir.loss_key(k): v for k, v in result.named_losses.items()})
        if result.weights is not None:
            row.update({rundir.weight_key(t): w for t, w in zip(self.task_names, result.weights)})
        row.update(result.metrics)
        assert self.csv is not None, "MetricsCSV.after_step before on_start"
        self.csv.write(row)

    def close(self) -> None:
        if self.csv is not None:
            self.csv.close()
            self.csv = None


class TensorBoard(Hook):
    """tb/: the same scalars as the CSVs (plus the method's extras) for TensorBoard."""

    def __init__(self, task_names: Sequence[str]) -> None:
        self.task_names = list(task_names)
        self.writer: SummaryWriter | None = None

    def on_start(self, loop: Loop) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events a killed run wrote after its last checkpoint
        purge = loop.step + 1 if loop.resumed else None
        self.writer = SummaryWriter(str(loop.run_dir.tensorboard), purge_step=purge)

    def after_step(self, loop: Loop, result: StepResult) -> None:
        w, s = self.writer, loop.step
        assert w is not None, "TensorBoard.after_step before on_start"
        w.add_scalar("lr", loop.lr, s)
        w.add_scalar("skipped", float(result.skipped), s)
        for k, v in result.named_losses.items():
            w.add_scalar(rundir.loss_key(k), v, s)
        if result.weights is not None:
            for t, v in zip(self.task_names, result.weights):
                w.add_scalar(rundir.weight_key(t), v, s)
        extras = {rundir.METHOD_PREFIX + k: v for k, v in result.extras.items()}
        for k, v in {**result.metrics, **extras}.items():
            w.add_scalar(k, v, s)

    def log_eval(self, step: int, metrics: Mapping[str, float]) -> None:
        if self.writer is not None:
            for k, v in metrics.items():
                self.writer.add_scalar(rundir.EVAL_PREFIX + k, v, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class Progress(Hook):
    """tqdm bar: step, total loss, lr, speed and ETA; skipped steps are printed with their reason."""

    def __init__(self, enabled: bool = True, desc: str = "train") -> None:
        self.enabled, self.desc = enabled, desc
        self.bar: tqdm[Any] | None = None

    def on_start(self, loop: Loop) -> None:
        from tqdm import tqdm

        self.bar = tqdm(
            total=loop.total_steps, initial=loop.step, disable=not self.enabled, unit="step",
            dynamic_ncols=True, desc=self.desc,
        )  # fmt: skip

    def after_step(self, loop: Loop, result: StepResult) -> None:
        assert self.bar is not None, "Progress.after_step before on_start"
        if result.skipped:
            self.bar.write(f"step {loop.step}: skipped ({result.reason})")
        total = sum(v for v in result.named_losses.values())
        self.bar.set_postfix(loss=f"{total:.4g}", lr=f"{loop.lr:.3g}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Checkpoint(Hook):
    """checkpoints/last.pt every `every` steps and at the end (+ step_<N>.pt when `keep`)."""

    def __init__(self, every: int, keep: bool = False) -> None:
        self.every, self.keep = every, keep

    def after_step(self, loop: Loop, result: StepResult) -> None:
        if self.every > 0 and loop.step % self.every == 0 and loop.step < loop.total_steps:
            self._save(loop)

    def on_end(self, loop: Loop) -> None:
        self._save(loop)

    def _save(self, loop: Loop) -> None:
        path = loop.save_checkpoint(loop.run_dir.last_checkpoint)
        if self.keep:
            atomic_copy(path, loop.run_dir.step_checkpoint(loop.step))


class Evaluate(Hook):
    """eval.csv every `every` steps (and at the end); metrics.json with the final evaluation.

    evaluator: any `training.engine.protocols.Evaluator` (its `keys` are the columns of eval.csv);
    summary: what metrics.json records besides the metrics (method, level, seed).
    """

    def __init__(
        self,
        evaluator: Evaluator,
        every: int,
        at_start: bool = False,
        tensorboard: TensorBoard | None = None,
        summary: Mapping[str, Any] | None = None,
    ) -> None:
        self.evaluator, self.every, self.at_start, self.tb = evaluator, every, at_start, tensorboard
        self.summary = dict(summary or {})
        self.csv: _CsvFile | None = None
        self.last: dict[str, float] = {}
        self.last_step = -1

    def on_start(self, loop: Loop) -> None:
        keep = loop.step if loop.resumed else None
        self.csv = _CsvFile(loop.run_dir.eval_csv, ["step", *self.evaluator.keys], keep)
        if self.at_start and loop.step == 0:
            self._run(loop)

    def after_step(self, loop: Loop, result: StepResult) -> None:
        if self.every > 0 and loop.step % self.every == 0:
            self._run(loop)

    def on_end(self, loop: Loop) -> None:
        if self.last_step != loop.step:
            self._run(loop)
        summary = {
            **self.last, **self.summary, "step": loop.step, "train_time_s": round(loop.train_time_s, 3),
        }  # fmt: skip
        loop.run_dir.metrics_json.write_text(json.dumps(summary, indent=2))

    def _run(self, loop: Loop) -> None:
        self.last = self.evaluator(loop.module)
        self.last_step = loop.step
        assert self.csv is not None, "Evaluate before on_start"
        self.csv.write({"step": loop.step, **self.last})
        if self.tb is not None:
            self.tb.log_eval(loop.step, self.last)

    def close(self) -> None:
        if self.csv is not None:
            self.csv.close()
            self.csv = None


class Plots(Hook):
    """plots/losses.png (per-loss curves) and plots/weights.png (task weights) from metrics.csv."""

    def __init__(self, title: str = "") -> None:
        self.title = title

    def on_end(self, loop: Loop) -> None:
        with open(loop.run_dir.metrics_csv, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            return
        out = loop.run_dir.plots
        out.mkdir(exist_ok=True)
        self._plot(rows, rundir.LOSS_PREFIX, "loss", out / "losses.png")
        self._plot(rows, rundir.WEIGHT_PREFIX, "task weight", out / "weights.png")

    def _plot(self, rows: list[dict[str, str]], prefix: str, ylabel: str, path: Path) -> None:
        """One figure of every `prefix` column against the step (nothing when all cells are empty)."""
        from matplotlib.figure import Figure

        steps = [int(r["step"]) for r in rows]
        series = []
        for c in (c for c in rows[0] if c.startswith(prefix)):
            pts = [(s, float(r[c])) for s, r in zip(steps, rows) if r[c] not in ("", None)]
            if pts:
                series.append((c[len(prefix) :], pts))
        if not series:
            return
        fig = Figure(figsize=(8, 4.5))
        ax = fig.subplots()
        for label, pts in series:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, label=label, linewidth=1)
        if prefix == rundir.LOSS_PREFIX:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{self.title}: {ylabel}" if self.title else ylabel)
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
