"""The run-directory contract: file names and metric keys of a training run (one owner, like
`mtl_grasp/contract.py` owns the ONNX schema).

Written by the trainer's hooks (`training.engine.hooks`, `training.diagnostics.hook`), read by
`python -m training report` (`training.diagnostics.runs`), `train --resume`, `export`, `sweep` and
`demo`. Layout (docs/architecture.md, "Run directory"):

    RUN_DIR/config.yaml          resolved config
    RUN_DIR/metrics.csv          one row per step: STEP_COLUMNS, loss/<loss>, weight/<task>, diag/<key>
    RUN_DIR/eval.csv             one row per evaluation: step + the evaluator's metric keys
    RUN_DIR/metrics.json         final evaluation + SUMMARY_KEYS
    RUN_DIR/tb/                  TensorBoard events (the same scalars; eval/<key>, method/<extra>)
    RUN_DIR/checkpoints/last.pt  (+ step_<N>.pt)
    RUN_DIR/plots/               losses.png, weights.png
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

CONFIG = "config.yaml"
METRICS_CSV = "metrics.csv"
EVAL_CSV = "eval.csv"
METRICS_JSON = "metrics.json"
TB_DIR = "tb"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
PLOTS_DIR = "plots"
ROBUSTNESS_DIR = "robustness"  # python -m training evaluate --corruptions of the run's checkpoint

#: the first columns of metrics.csv, in this order
STEP_COLUMNS = ("step", "epoch", "lr", "time_s", "skipped")
#: keys metrics.json holds besides the final evaluation
SUMMARY_KEYS = ("step", "method", "seed", "level", "train_time_s")

LOSS_PREFIX = "loss/"  # loss/<loss name>: the model's named losses (metrics.csv, TensorBoard)
WEIGHT_PREFIX = "weight/"  # weight/<task name>: a method's effective task weights
DIAG_PREFIX = "diag/"  # diag/<measure>: diagnostics (training.diagnostics)
METHOD_PREFIX = "method/"  # method/<extra>: a method's scalar internals (TensorBoard only)
EVAL_PREFIX = "eval/"  # eval/<metric>: evaluations (TensorBoard only; eval.csv has the bare keys)

#: diagnostics measure -> the suffix of its per-level keys (diag/gds_param, diag/gds_feature, ...)
LEVEL_SUFFIX = {"parameter": "param", "feature": "feature"}
DIAG_FD = "diag/fd"
SIMILARITY_MEASURES = ("gds", "gms", "cr")
#: inter-task vs inter-sample measures (`InterSimilarity`); the parameter level (the study's
#: definition) has no suffix, the feature level "_feature"
INTER_MEASURES = (
    "inter_task_cos", "inter_task_gms", "inter_sample_cos", "inter_sample_gms",
    "inter_task_sign_conflict", "inter_sample_sign_conflict",
)  # fmt: skip
INTER_SUFFIX = {"parameter": "", "feature": "_feature"}


def similarity_keys(level: str) -> tuple[str, ...]:
    """diag/gds_<suffix>, diag/gms_<suffix>, diag/cr_<suffix> of a gradient level (parameter/feature)."""
    return tuple(f"{DIAG_PREFIX}{m}_{LEVEL_SUFFIX[level]}" for m in SIMILARITY_MEASURES)


def inter_sample_keys(level: str) -> tuple[str, ...]:
    """diag/inter_{task,sample}_{cos,gms,sign_conflict}<suffix> of a gradient level."""
    return tuple(f"{DIAG_PREFIX}{m}{INTER_SUFFIX[level]}" for m in INTER_MEASURES)


#: the diagnostics columns metrics.csv always has (empty cells when not computed)
DIAG_KEYS: tuple[str, ...] = (DIAG_FD, *similarity_keys("parameter"), *similarity_keys("feature"))


def loss_key(name: str) -> str:
    return LOSS_PREFIX + name


def weight_key(task: str) -> str:
    return WEIGHT_PREFIX + task


def metrics_columns(
    loss_names: Sequence[str], task_names: Sequence[str], diag_keys: Iterable[str]
) -> list[str]:
    """The header of metrics.csv: step columns, losses, task weights, the standard and the extra diag keys."""
    extra = [k for k in diag_keys if k not in DIAG_KEYS]
    return [
        *STEP_COLUMNS,
        *(loss_key(n) for n in loss_names),
        *(weight_key(t) for t in task_names),
        *DIAG_KEYS,
        *extra,
    ]


class RunDir:
    """Paths of one run directory (nothing is created until a hook writes)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    @property
    def robustness(self) -> Path:
        return self.root / ROBUSTNESS_DIR

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def metrics_csv(self) -> Path:
        return self.root / METRICS_CSV

    @property
    def eval_csv(self) -> Path:
        return self.root / EVAL_CSV

    @property
    def metrics_json(self) -> Path:
        return self.root / METRICS_JSON

    @property
    def tensorboard(self) -> Path:
        return self.root / TB_DIR

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINT_DIR

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / LAST_CHECKPOINT

    def step_checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"step_{step}.pt"

    @property
    def plots(self) -> Path:
        return self.root / PLOTS_DIR


def checkpoint_file(path: str | Path) -> Path:
    """A checkpoint file, or the last checkpoint of a run directory (or of a checkpoints/ folder)."""
    p = Path(path)
    if not p.is_dir():
        return p
    return RunDir(p).last_checkpoint if (p / CHECKPOINT_DIR).is_dir() else p / LAST_CHECKPOINT


def run_dir_of_checkpoint(path: str | Path) -> Path | None:
    """The run directory holding checkpoint file `path` (None when it is not inside checkpoints/)."""
    p = Path(path).resolve()
    return p.parent.parent if p.parent.name == CHECKPOINT_DIR else None
