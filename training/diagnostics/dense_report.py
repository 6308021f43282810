"""The report of dense-family runs (NYU-v2, CityScapes), shaped like the feature-disentanglement study's
Tables 2/3 (test metrics with Δm against single-task baselines) and 6/7 (ranking similarity of GDS, GMS
and FD against each metric). `python -m training report` picks it when every run is a dense run.

Runs are told apart by their config.yaml: `dense.model.tasks` with one task = a **single-task
baseline** (any method; `python -m training sweep --single-task` trains them with EW), more tasks = a
multi-task run, grouped by (method, level) with its seeds as in `training.diagnostics.runs`. Every
multi-task run must train the same tasks on the same dataset.

`write_dense_report(run_dirs, out_dir)` writes into `out_dir`:
- table_results.md — Tables 2/3: one row per method group (mean ± sample std over seeds) and the
  single-task row, one column per metric with ↑/↓ (higher/lower is better), and Δm in percent
  (`mtl_grasp.evaluation.delta_m`; the variant — per-metric or per-task averaging, improvement or
  degradation sign — is stated in the header and the note). Δm is the mean over seeds of each seed's Δm
  against the seed-mean baselines; a metric without a single-task baseline makes it "—".
- table_ranking.md, ranking_similarity.png — Tables 6/7: rows GDS, GMS (parameter / feature level), FD
  (those logged; each summarised by the mean of the last `last` logged points of its seed-mean
  trajectory), columns every metric and Δm, cells S − 0.5 over the method groups with each metric
  **oriented so that higher is better** (+: methods with a larger measure scored better).
- dynamics_<measure>.png — FD/GDS/GMS/CR over training (as the bin-picking report);
- report.md (everything, plots embedded), report.json (the numbers).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mtl_grasp.evaluation.delta_m import AVERAGINGS, SIGNS, delta_m
from mtl_grasp.evaluation.dense import METRIC_DIRECTIONS, metric_keys
from training.diagnostics.ranking import ranking_similarity
from training.diagnostics.report import (
    FAMILIES,
    KEY_LABELS,
    Report,
    _jsonable,
    _markdown,
    dynamics_plot,
    ranking_plot,
)
from training.diagnostics.runs import MethodGroup, find_group, group_runs, load_run
from training.rundir import RunDir

UP, DOWN = "\u2191", "\u2193"
DATASET_TITLES = {
    "nyuv2": "NYU-v2",
    "cityscapes": "CityScapes (2 tasks)",
    "cityscapes3": "CityScapes (3 tasks)",
}
METRIC_TITLES = {
    "segmentation/miou": "Seg. mIoU", "segmentation/pixel_acc": "Seg. Pix Acc",
    "depth/abs_err": "Depth Abs Err", "depth/rel_err": "Depth Rel Err",
    "normal/mean": "Normal Mean", "normal/median": "Normal Median",
    "normal/within_11.25": "Normal 11.25\u00b0", "normal/within_22.5": "Normal 22.5\u00b0",
    "normal/within_30": "Normal 30\u00b0", "instance/l1": "Instance L1",
}  # fmt: skip
#: the measures of the study's Tables 6/7, in their order (GDS, GMS, FD), at the levels logged
STUDY_MEASURES = ("diag/gds_param", "diag/gds_feature", "diag/gms_param", "diag/gms_feature", "diag/fd")
DELTA_M = "delta_m"


def metric_title(key: str) -> str:
    """'Seg. mIoU ↑' etc.: the column title with the metric's direction."""
    arrow = UP if METRIC_DIRECTIONS.get(key, 1) > 0 else DOWN
    return f"{METRIC_TITLES.get(key, key)} {arrow}"


def delta_m_note(averaging: str, sign: str) -> str:
    """The Δm variant in words (the report states it next to every Δm)."""
    over = "metrics" if averaging == "metric" else "tasks (each the mean of its metrics)"
    flip = "" if sign == "improvement" else "minus "
    meaning = "better" if sign == "improvement" else "worse"
    return (
        f"\u0394m = {flip}100 % \u00b7 the mean over the {over} of s_k (M_k \u2212 B_k)/B_k, s_k = +1 where "
        f"higher is better and \u22121 where lower is, against single-task baselines B (same backbone, one "
        f"task each); sign '{sign}': positive = {meaning} than the baselines."
    )


def delta_m_title(averaging: str, sign: str) -> str:
    arrow = UP if sign == "improvement" else DOWN
    return f"\u0394m% {arrow} ({'per-metric' if averaging == 'metric' else 'per-task'} mean)"


# ---- runs ----------------------------------------------------------------------------------------


def run_config(path: str | Path) -> dict[str, Any]:
    """The resolved config.yaml of a run directory ({} when it has none)."""
    file = RunDir(path).config
    if not file.is_file():
        return {}
    config = yaml.safe_load(file.read_text()) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{file}: expected a mapping, got {type(config).__name__}")
    return config


def is_dense_run(path: str | Path) -> bool:
    """Whether the run directory was trained with `family: dense`."""
    return run_config(path).get("family") == "dense"


@dataclass
class DenseStudy:
    """Dense runs of one dataset: multi-task method groups and single-task baselines (task -> group)."""

    dataset: str
    tasks: tuple[str, ...]
    groups: list[MethodGroup]
    baselines: dict[str, MethodGroup]

    @property
    def metrics(self) -> tuple[str, ...]:
        return metric_keys(self.tasks)


def _dataset_and_tasks(path: str | Path) -> tuple[str, tuple[str, ...]]:
    config = run_config(path)
    if config.get("family") != "dense":
        raise ValueError(f"RUN_DIR: {path} is not a dense-family run (config.yaml family: dense)")
    dense = config.get("dense") or {}
    return str(dense.get("dataset")), tuple((dense.get("model") or {}).get("tasks") or ())


def load_dense_study(run_dirs: Sequence[str | Path]) -> DenseStudy:
    """Read and sort the runs; errors name the run that does not fit (other dataset, other tasks)."""
    infos = [(p, *_dataset_and_tasks(p)) for p in run_dirs]
    datasets = sorted({d for _, d, _ in infos})
    if len(datasets) != 1:
        raise ValueError(f"RUN_DIR: the runs mix the datasets {datasets}; report one dataset at a time")
    multi = [(p, t) for p, _, t in infos if len(t) > 1]
    if not multi:
        raise ValueError("RUN_DIR: no multi-task run among the runs (all train a single task)")
    tasks = multi[0][1]
    for path, other in multi:
        if set(other) != set(tasks):
            raise ValueError(f"RUN_DIR: {path} trains {list(other)}, the first multi-task run {list(tasks)}")
    single: dict[str, list[str | Path]] = {}
    for path, _, t in infos:
        if len(t) == 1:
            if t[0] not in tasks:
                raise ValueError(
                    f"RUN_DIR: {path} is a single-task run of {t[0]!r}, not one of {list(tasks)}"
                )
            single.setdefault(t[0], []).append(path)
    baselines = {}
    for task, paths in single.items():
        runs = [load_run(p) for p in paths]
        baselines[task] = MethodGroup(f"single-task {task}", None, runs)
    return DenseStudy(datasets[0], tasks, group_runs(load_run(p) for p, _ in multi), baselines)


# ---- numbers -------------------------------------------------------------------------------------


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan


def baseline_values(study: DenseStudy) -> dict[str, float]:
    """metric -> seed mean of its task's single-task runs (tasks without a baseline are left out)."""
    out: dict[str, float] = {}
    for key in study.metrics:
        group = study.baselines.get(key.split("/", 1)[0])
        if group is not None:
            out[key] = _mean(group.final_values(key))
    return out


def seed_delta_m(
    group: MethodGroup, study: DenseStudy, baselines: Mapping[str, float], averaging: str, sign: str
) -> np.ndarray:
    """Δm (percent) of each seed of `group`; empty when a metric lacks a finite, non-zero baseline."""
    if any(not math.isfinite(baselines.get(k, math.nan)) or baselines[k] == 0 for k in study.metrics):
        return np.zeros(0)
    values = []
    for run in group.runs:
        result = {k: run.final_value(k) for k in study.metrics}
        if all(math.isfinite(v) for v in result.values()):
            values.append(delta_m(result, baselines, averaging=averaging, sign=sign, metrics=study.metrics))
    return np.asarray(values, dtype=np.float64)


def _cell(values: np.ndarray, digits: int = 4) -> str:
    if not values.size:
        return "\u2014"
    text = f"{values.mean():.{digits}f}"
    return text + (f" \u00b1 {values.std(ddof=1):.{digits}f}" if values.size >= 2 else "")


def results_table(study: DenseStudy, averaging: str, sign: str) -> tuple[str, dict[str, Any]]:
    """Tables 2/3: rows = single-task baselines + method groups, columns = metrics + Δm."""
    baselines = baseline_values(study)
    header = ["Method", "seeds", *(metric_title(k) for k in study.metrics), delta_m_title(averaging, sign)]
    base_cells = [_cell(np.asarray([baselines[k]])) if k in baselines else "\u2014" for k in study.metrics]
    base_seeds = sorted({s for g in study.baselines.values() for s in g.seeds})
    rows = [["Single-task baselines", ",".join(map(str, base_seeds)) or "\u2014", *base_cells, "0.00"]]
    data: dict[str, Any] = {"_baselines": baselines}
    for g in study.groups:
        dm = seed_delta_m(g, study, baselines, averaging, sign)
        cells = [_cell(g.final_values(k)) for k in study.metrics]
        rows.append([g.label, ",".join(map(str, g.seeds)), *cells, _cell(dm, digits=2)])
        entry = {
            k: {"mean": _mean(v), "n": int(v.size)} for k in study.metrics if (v := g.final_values(k)).size
        }
        data[g.label] = {**entry, DELTA_M: {"mean": _mean(dm), "per_seed": dm.tolist()}}
    missing = [t for t in study.tasks if t not in study.baselines]
    note = (
        f"Final test metrics on {DATASET_TITLES.get(study.dataset, study.dataset)}: mean \u00b1 sample std "
        f"over seeds; {UP}/{DOWN}: higher/lower is better. " + delta_m_note(averaging, sign)
    )
    if missing:
        note += f" No single-task baseline for {missing}, so no \u0394m."
    if zero := [k for k, v in baselines.items() if v == 0 or not math.isfinite(v)]:
        note += f" \u0394m is undefined: the baselines of {zero} are 0 or NaN (it divides by B)."
    return _markdown(header, rows) + "\n" + note + "\n", data


def _oriented_scores(
    study: DenseStudy, averaging: str, sign: str
) -> tuple[list[str], dict[str, dict[str, float]]]:
    """Columns (metrics + Δm) and {group label: {column: score, higher = better}}."""
    baselines = baseline_values(study)
    columns = [*study.metrics, DELTA_M]
    flip = 1.0 if sign == "improvement" else -1.0
    scores: dict[str, dict[str, float]] = {}
    for g in study.groups:
        row = {k: METRIC_DIRECTIONS[k] * _mean(g.final_values(k)) for k in study.metrics}
        row[DELTA_M] = flip * _mean(seed_delta_m(g, study, baselines, averaging, sign))
        scores[g.label] = row
    return columns, scores


def _measure_summaries(groups: Sequence[MethodGroup], last: int) -> tuple[list[str], dict[str, dict]]:
    """The study's measures that were logged, and {group: {measure: mean of the last `last` points}}."""
    summary: dict[str, dict[str, float]] = {}
    for g in groups:
        summary[g.label] = {}
        for key in STUDY_MEASURES:
            _, values = g.trajectory(key)
            summary[g.label][key] = float(values[-last:].mean()) if values.size else math.nan
    keys = [k for k in STUDY_MEASURES if any(math.isfinite(s[k]) for s in summary.values())]
    return keys, summary


def ranking_table_dense(
    study: DenseStudy, last: int, ties: str, averaging: str, sign: str
) -> tuple[str, dict[str, Any], list[str], np.ndarray, list[str]]:
    """Tables 6/7: S − 0.5 of each measure against each metric (oriented) and Δm, over the groups."""
    columns, scores = _oriented_scores(study, averaging, sign)
    keys, summary = _measure_summaries(study.groups, last)
    signed = np.full((len(keys), len(columns)), np.nan)
    rows: list[list[str]] = []
    data: dict[str, Any] = {"_summary": summary, "_oriented_scores": scores}
    for i, key in enumerate(keys):
        cells: list[str] = []
        data[key] = {}
        for j, column in enumerate(columns):
            items = [
                (summary[g.label][key], scores[g.label][column])
                for g in study.groups
                if math.isfinite(summary[g.label][key]) and math.isfinite(scores[g.label][column])
            ]
            if len(items) < 2:
                cells.append("n/a")
                data[key][column] = None
                continue
            r = ranking_similarity([a for a, _ in items], [b for _, b in items], ties=ties)
            signed[i, j] = r.signed
            cells.append(r.format())
            data[key][column] = {"S": r.s, "signed": r.signed, "abs": r.deviation, "n_items": len(items)}
        rows.append([KEY_LABELS.get(key, key)] + cells)
    titles = [METRIC_TITLES.get(c, c) for c in study.metrics] + ["\u0394m"]
    if not keys:
        return "No GDS/GMS/FD values were logged (diagnostics.every = 0?).\n", data, keys, signed, titles
    note = (
        f"Cells: |S \u2212 0.5| with its sign over the {len(study.groups)} method groups; every metric is "
        f"oriented so that higher is better (lower-is-better metrics negated, \u0394m as an improvement), so "
        f"+ means: methods with a larger measure scored better. A measure is the mean of the last {last} "
        f"logged points of its seed-mean trajectory. Ties: '{ties}'."
    )
    return _markdown(["Measure", *titles], rows) + "\n" + note + "\n", data, keys, signed, titles


# ---- the whole report ----------------------------------------------------------------------------


def _check_args(run_dirs: Sequence[str | Path], last: int, averaging: str, sign: str) -> None:
    if not run_dirs:
        raise ValueError("RUN_DIR: expected at least one run directory, got none")
    if not isinstance(last, int) or last < 1:
        raise ValueError(f"last: expected a positive number of points, got {last!r}")
    if averaging not in AVERAGINGS:
        raise ValueError(f"averaging: expected one of {AVERAGINGS}, got {averaging!r}")
    if sign not in SIGNS:
        raise ValueError(f"sign: expected one of {SIGNS}, got {sign!r}")


def _report_md(
    study: DenseStudy, base: MethodGroup | None, tables: tuple[str, str], plots: list[Path]
) -> str:
    results_md, ranking_md = tables
    title = DATASET_TITLES.get(study.dataset, study.dataset)
    runs = sum(len(g.runs) for g in study.groups)
    single = ", ".join(f"{t} (seeds {','.join(map(str, g.seeds))})" for t, g in study.baselines.items())
    lines = [
        f"# Dense MTL report: {title}", "",
        f"Tasks {list(study.tasks)}; {runs} multi-task runs in {len(study.groups)} method groups; "
        f"single-task baselines: {single or 'none'}. "
        f"Dynamics plots compare with {base.label if base else 'none'}.",
        "", "## Results (the shape of the study's Tables 2/3)", "", results_md,
        "## Ranking similarity (the shape of the study's Tables 6/7)", "", ranking_md,
        "## Training dynamics", "",
    ]  # fmt: skip
    lines += [f"![{p.stem}]({p.name})\n" for p in plots if p.name.startswith("dynamics_")]
    if any(p.name == "ranking_similarity.png" for p in plots):
        lines.append("![Ranking similarity](ranking_similarity.png)\n")
    return "\n".join(lines)


def write_dense_report(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    baseline: str = "ew",
    last: int = 50,
    ties: str = "half",
    averaging: str = "metric",
    sign: str = "improvement",
) -> Report:
    """Load the dense runs; write the tables, plots, report.md and report.json into `out_dir`."""
    _check_args(run_dirs, last, averaging, sign)
    study = load_dense_study(run_dirs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out)
    results_md, results = results_table(study, averaging, sign)
    ranking_md, ranking, keys, signed, titles = ranking_table_dense(study, last, ties, averaging, sign)
    base = find_group(study.groups, baseline) if baseline else None
    plots = [out / f"dynamics_{stem}.png" for stem, _, _ in FAMILIES]
    plots = [
        p
        for p, (stem, title, fam) in zip(plots, FAMILIES)
        if dynamics_plot(study.groups, base, stem, title, fam, p)
    ]
    if keys:
        ranking_plot(keys, signed, out / "ranking_similarity.png", column_labels=titles)
        plots.append(out / "ranking_similarity.png")
    for name, text in (("table_results.md", results_md), ("table_ranking.md", ranking_md)):
        (out / name).write_text(text)
        report.files.append(out / name)
    report.files += plots
    (out / "report.md").write_text(_report_md(study, base, (results_md, ranking_md), plots))
    report.data = {
        "dataset": study.dataset, "tasks": list(study.tasks),
        "delta_m": {"averaging": averaging, "sign": sign},
        "groups": {g.label: {"method": g.method, "level": g.level, "seeds": g.seeds} for g in study.groups},
        "baselines": {t: [str(r.path) for r in g.runs] for t, g in study.baselines.items()},
        "results": results, "ranking_similarity": ranking,
    }  # fmt: skip
    (out / "report.json").write_text(json.dumps(_jsonable(report.data), indent=2))
    report.files += [out / "report.md", out / "report.json"]
    return report
