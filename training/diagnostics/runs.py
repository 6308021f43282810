"""Reading run directories (see docs/architecture.md "Run directory") for reports.

A run is identified by its method, level and seed, taken from metrics.json (keys `method`, `level`,
`seed`) and, where missing there, from config.yaml (`mtl.name`, `mtl.level`, `seed`). Runs of the same
method and level are the seeds of one `MethodGroup`. Loss-weighting methods have no level (they need no
per-task gradients); their recorded level is dropped so that, e.g., EW runs with `mtl.level=feature`
still group with the other EW runs.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from training.rundir import RunDir

# Test metrics of the benchmark table: (column title, key prefix in eval.csv / metrics.json)
TASK_METRICS = (("BBox", "bbox"), ("VMask", "vmask"), ("AMask", "amask"))
SUMMARY_METRICS = tuple(f"{prefix}/{m}" for _, prefix in TASK_METRICS for m in ("mAP", "mAR"))


def _float(text: object) -> float:
    if text is None:
        return math.nan
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    try:
        return float(str(text).strip()) if str(text).strip() else math.nan
    except ValueError:
        return math.nan


def read_csv_columns(path: Path) -> dict[str, np.ndarray]:
    """A CSV with a header as {column: float array}; empty or non-numeric cells become NaN."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None:
            raise ValueError(f"{path}: expected a CSV file with a header row, found an empty file")
        columns: dict[str, list[float]] = {name: [] for name in reader.fieldnames}
        for row in reader:
            for name in reader.fieldnames:
                columns[name].append(_float(row.get(name)))
    return {name: np.asarray(values, dtype=np.float64) for name, values in columns.items()}


def _level_free(method: str) -> bool | None:
    """Whether the registry says `method` takes no level; None when the method is not registered."""
    try:
        from training.mtl.registry import get

        return not get(method).levels
    except Exception:  # noqa: BLE001 - the registry is only a hint here; the recorded level still works
        return None


@dataclass
class Run:
    """One training run: identity, per-step metrics (metrics.csv), evaluations (eval.csv), final metrics."""

    path: Path
    method: str
    level: str | None
    seed: int
    metrics: dict[str, np.ndarray]
    evals: dict[str, np.ndarray]
    final: dict[str, float]

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of a metrics.csv column where the value was computed (finite)."""
        if key not in self.metrics or "step" not in self.metrics:
            return np.zeros(0), np.zeros(0)
        steps, values = self.metrics["step"], self.metrics[key]
        ok = np.isfinite(values) & np.isfinite(steps)
        return steps[ok], values[ok]

    def final_value(self, key: str) -> float:
        """The final test metric: metrics.json, else the last finite row of eval.csv, else NaN."""
        value = self.final.get(key, math.nan)
        if math.isfinite(value):
            return value
        column = self.evals.get(key)
        if column is not None and np.isfinite(column).any():
            return float(column[np.isfinite(column)][-1])
        return math.nan


def load_run(path: str | Path) -> Run:
    """Read one run directory; errors name the directory and the missing or malformed file."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"RUN_DIR: {root} is not a directory")
    config: dict = {}
    paths = RunDir(root)
    if paths.config.is_file():
        config = yaml.safe_load(paths.config.read_text()) or {}
        if not isinstance(config, dict):
            raise ValueError(f"{paths.config}: expected a mapping, got {type(config).__name__}")
    final_raw: dict = {}
    if paths.metrics_json.is_file():
        final_raw = json.loads(paths.metrics_json.read_text())
        if not isinstance(final_raw, dict):
            raise ValueError(
                f"{paths.metrics_json}: expected a JSON object, got {type(final_raw).__name__}"
            )
    if not config and not final_raw:
        raise FileNotFoundError(
            f"RUN_DIR: {root} has neither config.yaml nor metrics.json; is it a run directory?"
        )
    mtl = config.get("mtl") or {}
    method = final_raw.get("method") or mtl.get("name")
    if not method:
        raise ValueError(f"{root}: no method name (metrics.json 'method' or config.yaml 'mtl.name')")
    level = final_raw["level"] if "level" in final_raw else mtl.get("level")
    seed = final_raw.get("seed", config.get("seed", 0))
    if _level_free(str(method)):
        level = None
    metrics = read_csv_columns(paths.metrics_csv) if paths.metrics_csv.is_file() else {}
    evals = read_csv_columns(paths.eval_csv) if paths.eval_csv.is_file() else {}
    final = {k: _float(v) for k, v in final_raw.items() if k not in ("method", "level", "seed")}
    return Run(
        root,
        str(method).lower(),
        None if level in (None, "") else str(level),
        int(seed),
        metrics,
        evals,
        final,
    )


@dataclass
class MethodGroup:
    """The seeds of one (method, level)."""

    method: str
    level: str | None
    runs: list[Run] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.method if self.level in (None, "parameter") else f"{self.method} ({self.level})"

    @property
    def seeds(self) -> list[int]:
        return sorted(r.seed for r in self.runs)

    def final_values(self, key: str) -> np.ndarray:
        """Finite final values of a test metric over the seeds."""
        values = np.asarray([r.final_value(key) for r in self.runs], dtype=np.float64)
        return values[np.isfinite(values)]

    def trajectory(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, seed-mean values) of a metrics.csv column, over the union of the seeds' steps."""
        series = [r.series(key) for r in self.runs]
        series = [(s, v) for s, v in series if s.size]
        if not series:
            return np.zeros(0), np.zeros(0)
        steps = np.unique(np.concatenate([s for s, _ in series]))
        total, count = np.zeros(steps.size), np.zeros(steps.size)
        for s, v in series:
            idx = np.searchsorted(steps, s)
            np.add.at(total, idx, v)
            np.add.at(count, idx, 1)
        return steps, total / count


def group_runs(runs: Iterable[Run]) -> list[MethodGroup]:
    """Group runs by (method, level), in the order methods first appear; warns on duplicate seeds."""
    groups: dict[tuple[str, str | None], MethodGroup] = {}
    for run in runs:
        key = (run.method, run.level)
        group = groups.setdefault(key, MethodGroup(run.method, run.level))
        if run.seed in group.seeds:
            raise ValueError(
                f"RUN_DIR: {run.path} repeats seed {run.seed} of {group.label} "
                f"(also in {next(r.path for r in group.runs if r.seed == run.seed)})"
            )
        group.runs.append(run)
    return list(groups.values())


def find_group(groups: Sequence[MethodGroup], method: str) -> MethodGroup | None:
    """The group of `method` at the parameter level (or level-free), else its only group."""
    matches = [g for g in groups if g.method == method.lower()]
    for g in matches:
        if g.level in (None, "parameter"):
            return g
    return matches[0] if len(matches) == 1 else None
