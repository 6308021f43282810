"""Trainer hooks: everything around the step loop (logging, progress, checkpoints, evaluation, plots).

A hook implements any of `on_start(trainer)`, `after_step(trainer, result)` and `on_end(trainer)`;
`trainer.step` is the number of optimiser steps done (1 after the first step). Hooks that write files
run on the main rank only (the trainer decides which hooks it installs).
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtl_grasp.evaluation import OCCLUSION_KEYS, metric_keys
from training.engine.step import StepResult

if TYPE_CHECKING:  # pragma: no cover
    from training.engine.trainer import Trainer

#: the diagnostics columns of metrics.csv named by docs/architecture.md (more when enabled)
DIAG_KEYS = (
    "diag/fd", "diag/gds_param", "diag/gms_param", "diag/cr_param",
    "diag/gds_feature", "diag/gms_feature", "diag/cr_feature",
)  # fmt: skip
EVAL_KEYS = tuple(metric_keys()) + OCCLUSION_KEYS


class Hook:
    def on_start(self, trainer: Trainer) -> None:
        """Before the first step of this process (also after a resume)."""

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        """After each step (skipped steps included)."""

    def on_end(self, trainer: Trainer) -> None:
        """After the last step."""


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

    def __init__(self, loss_names: list[str], task_names: list[str], diag_keys: list[str]) -> None:
        diag = list(DIAG_KEYS) + [k for k in diag_keys if k not in DIAG_KEYS]
        self.columns = (
            ["step", "epoch", "lr", "time_s", "skipped"]
            + [f"loss/{n}" for n in loss_names]
            + [f"weight/{t}" for t in task_names]
            + diag
        )
        self.task_names = task_names
        self.csv: _CsvFile | None = None
        self._last = time.perf_counter()

    def on_start(self, trainer: Trainer) -> None:
        keep = trainer.step if trainer.resumed else None
        self.csv = _CsvFile(trainer.run_dir / "metrics.csv", self.columns, keep)
        self._last = time.perf_counter()

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        now = time.perf_counter()
        row: dict[str, Any] = {
            "step": trainer.step, "epoch": trainer.epoch, "lr": trainer.lr,
            "time_s": round(now - self._last, 6), "skipped": int(result.skipped),
        }  # fmt: skip
        self._last = now
        row.update({f"loss/{k}": v for k, v in result.named_losses.items()})
        if result.weights is not None:
            row.update({f"weight/{t}": w for t, w in zip(self.task_names, result.weights)})
        row.update(result.diagnostics)
        assert self.csv is not None
        self.csv.write(row)

    def on_end(self, trainer: Trainer) -> None:
        if self.csv is not None:
            self.csv.close()


class TensorBoard(Hook):
    """tb/: the same scalars as the CSVs (plus the method's extras) for TensorBoard."""

    def __init__(self, task_names: list[str]) -> None:
        self.task_names, self.writer = task_names, None

    def on_start(self, trainer: Trainer) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events a killed run wrote after its last checkpoint
        purge = trainer.step + 1 if trainer.resumed else None
        self.writer = SummaryWriter(str(trainer.run_dir / "tb"), purge_step=purge)

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        w, s = self.writer, trainer.step
        assert w is not None
        w.add_scalar("lr", trainer.lr, s)
        w.add_scalar("skipped", float(result.skipped), s)
        for k, v in result.named_losses.items():
            w.add_scalar(f"loss/{k}", v, s)
        if result.weights is not None:
            for t, v in zip(self.task_names, result.weights):
                w.add_scalar(f"weight/{t}", v, s)
        for k, v in {**result.diagnostics, **{f"method/{k}": v for k, v in result.extras.items()}}.items():
            w.add_scalar(k, v, s)

    def log_eval(self, step: int, metrics: dict[str, float]) -> None:
        if self.writer is not None:
            for k, v in metrics.items():
                self.writer.add_scalar(f"eval/{k}", v, step)
            self.writer.flush()

    def on_end(self, trainer: Trainer) -> None:
        if self.writer is not None:
            self.writer.close()


class Progress(Hook):
    """tqdm bar: step, total loss, lr, speed and ETA; skipped steps are printed with their reason."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled, self.bar = enabled, None

    def on_start(self, trainer: Trainer) -> None:
        from tqdm import tqdm

        self.bar = tqdm(
            total=trainer.total_steps, initial=trainer.step, disable=not self.enabled, unit="step",
            dynamic_ncols=True, desc=f"train {trainer.method.name}",
        )  # fmt: skip

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        assert self.bar is not None
        if result.skipped:
            self.bar.write(f"step {trainer.step}: skipped ({result.reason})")
        total = sum(v for v in result.named_losses.values())
        self.bar.set_postfix(loss=f"{total:.4g}", lr=f"{trainer.lr:.3g}", refresh=False)
        self.bar.update(1)

    def on_end(self, trainer: Trainer) -> None:
        if self.bar is not None:
            self.bar.close()


class Checkpoint(Hook):
    """checkpoints/last.pt every `every` steps and at the end (+ step_<N>.pt when `keep`)."""

    def __init__(self, every: int, keep: bool = False) -> None:
        self.every, self.keep = every, keep

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        if self.every > 0 and trainer.step % self.every == 0 and trainer.step < trainer.total_steps:
            self._save(trainer)

    def on_end(self, trainer: Trainer) -> None:
        self._save(trainer)

    def _save(self, trainer: Trainer) -> None:
        path = trainer.save_checkpoint(trainer.run_dir / "checkpoints" / "last.pt")
        if self.keep:
            import shutil

            shutil.copyfile(path, path.with_name(f"step_{trainer.step}.pt"))


class Evaluate(Hook):
    """eval.csv every `every` steps (and at the end); metrics.json with the final evaluation."""

    def __init__(self, evaluator, every: int, at_start: bool = False, tensorboard: TensorBoard | None = None):
        self.evaluator, self.every, self.at_start, self.tb = evaluator, every, at_start, tensorboard
        self.csv: _CsvFile | None = None
        self.last: dict[str, float] = {}
        self.last_step = -1

    def on_start(self, trainer: Trainer) -> None:
        keep = trainer.step if trainer.resumed else None
        self.csv = _CsvFile(trainer.run_dir / "eval.csv", ["step", *EVAL_KEYS], keep)
        if self.at_start and trainer.step == 0:
            self._run(trainer)

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        if self.every > 0 and trainer.step % self.every == 0:
            self._run(trainer)

    def on_end(self, trainer: Trainer) -> None:
        if self.last_step != trainer.step:
            self._run(trainer)
        summary = {
            **self.last, "step": trainer.step, "method": trainer.method.name, "seed": trainer.cfg.seed,
            "level": trainer.cfg.mtl.level if trainer.method.level is not None else None,
            "train_time_s": round(trainer.train_time_s, 3),
        }  # fmt: skip
        (trainer.run_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
        if self.csv is not None:
            self.csv.close()

    def _run(self, trainer: Trainer) -> None:
        self.last = self.evaluator(trainer.model)
        self.last_step = trainer.step
        assert self.csv is not None
        self.csv.write({"step": trainer.step, **self.last})
        if self.tb is not None:
            self.tb.log_eval(trainer.step, self.last)


class Plots(Hook):
    """plots/losses.png (per-loss curves) and plots/weights.png (task weights) from metrics.csv."""

    def on_end(self, trainer: Trainer) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        with open(trainer.run_dir / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            return
        out = trainer.run_dir / "plots"
        out.mkdir(exist_ok=True)
        steps = [int(r["step"]) for r in rows]
        kinds = (("loss/", "losses.png", "loss"), ("weight/", "weights.png", "task weight"))
        for prefix, fname, ylabel in kinds:
            cols = [c for c in rows[0] if c.startswith(prefix)]
            fig, ax = plt.subplots(figsize=(8, 4.5))
            drawn = False
            for c in cols:
                pts = [(s, float(r[c])) for s, r in zip(steps, rows) if r[c] not in ("", None)]
                if pts:
                    ax.plot(*zip(*pts), label=c[len(prefix):], linewidth=1)
                    drawn = True
            if not drawn:
                plt.close(fig)
                continue
            if prefix == "loss/":
                ax.set_yscale("log")
            ax.set_xlabel("step")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{trainer.method.name}: {ylabel}")
            ax.legend(fontsize=7, ncol=2)
            fig.tight_layout()
            fig.savefig(out / fname, dpi=100)
            plt.close(fig)
