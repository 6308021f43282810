"""Δm: the average relative difference of a multi-task model's metrics to single-task baselines.

    Δm = 100 % · avg_k  s_k · (M_k - B_k) / B_k,      s_k = +1 if higher is better, -1 if lower

M_k is the multi-task model's metric k, B_k the single-task baseline's (the same backbone trained on
that metric's task alone). Two choices are made explicit by required arguments, because the
literature uses both and they give different numbers:

* ``averaging="metric"``: the mean over all metrics (Nash-MTL, FAMO, CAGrad, Aligned-MTL tables;
  NYU-v2 then weighs the normal task 5/9). ``averaging="task"``: the mean over tasks of the mean over
  each task's metrics (LibMTL's ``count_improvement``; Maninis et al. 2019 with one metric per task).
* ``sign="improvement"``: positive = better than the baselines (LibMTL's Δp). ``sign="degradation"``:
  the negation, positive = worse (the "Δm% ↓" column of Nash-MTL / FAMO, whose code computes
  ``mean((-1)^higher_is_better (M - B) / B)``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from mtl_grasp.evaluation.dense import METRIC_DIRECTIONS

AVERAGINGS = ("metric", "task")
SIGNS = ("improvement", "degradation")


def relative_differences(
    results: Mapping[str, float],
    baselines: Mapping[str, float],
    metrics: Sequence[str] | None = None,
    directions: Mapping[str, int] = METRIC_DIRECTIONS,
) -> dict[str, float]:
    """``{k: s_k (M_k - B_k) / B_k}`` for the metrics ``k`` (default: every key of ``baselines``)."""
    keys = list(baselines) if metrics is None else list(metrics)
    if not keys:
        raise ValueError("metrics: no metric to compare")
    out: dict[str, float] = {}
    for key in keys:
        if key not in directions:
            raise ValueError(f"metrics: no direction (higher/lower is better) known for {key!r}")
        for name, table in (("results", results), ("baselines", baselines)):
            if key not in table or not math.isfinite(float(table[key])):
                raise ValueError(f"{name}: missing or non-finite value for {key!r}")
        base = float(baselines[key])
        if base == 0.0:
            raise ValueError(f"baselines: {key!r} is 0, so a relative difference is undefined")
        out[key] = directions[key] * (float(results[key]) - base) / abs(base)
    return out


def delta_m(
    results: Mapping[str, float],
    baselines: Mapping[str, float],
    *,
    averaging: str,
    sign: str,
    metrics: Sequence[str] | None = None,
    directions: Mapping[str, int] = METRIC_DIRECTIONS,
) -> float:
    """Δm in percent (module docstring); metric keys are ``"<task>/<metric>"``."""
    if averaging not in AVERAGINGS:
        raise ValueError(f"averaging: expected one of {AVERAGINGS}, got {averaging!r}")
    if sign not in SIGNS:
        raise ValueError(f"sign: expected one of {SIGNS}, got {sign!r}")
    rel = relative_differences(results, baselines, metrics, directions)
    if averaging == "metric":
        mean = sum(rel.values()) / len(rel)
    else:
        by_task: dict[str, list[float]] = {}
        for key, value in rel.items():
            by_task.setdefault(key.split("/", 1)[0], []).append(value)
        mean = sum(sum(v) / len(v) for v in by_task.values()) / len(by_task)
    return 100.0 * mean * (1.0 if sign == "improvement" else -1.0)


def single_task_baselines(runs: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Combine single-task runs ``{task: metrics of the run trained on that task}`` into one baseline
    table holding each task's metrics from its own run."""
    out: dict[str, float] = {}
    for task, metrics in runs.items():
        own = {k: float(v) for k, v in metrics.items() if k.split("/", 1)[0] == task}
        if not own:
            raise ValueError(f"runs[{task!r}]: no '{task}/...' metric in {sorted(metrics)}")
        out.update(own)
    return out
