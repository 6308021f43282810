"""The comparison report of several runs: markdown tables and PNG plots (see docs/diagnostics.md).

`write_report(run_dirs, out_dir)` writes into `out_dir`:
- report.md — everything below, with the plots embedded;
- table_benchmark.md — methods x (BBox/VMask/AMask mAP, mAR): mean ± sample std over seeds, marked
  ↑/↓/− against the baseline (a difference beyond `threshold`, absolute, in the metric's units);
- table_levels.md — feature level vs parameter level: relative change (feature − parameter)/parameter
  per metric, for each method run at both levels;
- dynamics_<measure>.png — FD, GDS, GMS, conflict ratio (and inter-task/inter-sample when logged) over
  training: the seed-mean trajectory smoothed by a centred moving average over 1/10 of its points,
  and its difference to the baseline (a difference, not a ratio: GDS crosses 0);
- table_ranking.md, ranking_similarity.png — Ranking Similarity of each measure (its trajectory
  summarised by the mean of the last `last` logged points) against each final test metric, reported as
  S − 0.5: the magnitude is |S − 0.5|, the sign the direction;
- report.json — the numbers behind the tables.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.diagnostics.ranking import RankingSimilarity, ranking_similarity
from training.diagnostics.robustness import robustness_section
from training.diagnostics.runs import (
    SUMMARY_METRICS,
    TASK_METRICS,
    MethodGroup,
    find_group,
    group_runs,
    load_run,
)

UP, DOWN, SAME = "\u2191", "\u2193", "\u2212"
# measure families plotted together: (file stem, title, metrics.csv keys in display order)
FAMILIES = (
    ("fd", "FD: feature disentanglement (entropy of task saliency)", ("diag/fd",)),
    (
        "gds",
        "GDS: gradient direction similarity (mean pairwise cosine)",
        ("diag/gds_param", "diag/gds_feature"),
    ),
    ("gms", "GMS: gradient magnitude similarity", ("diag/gms_param", "diag/gms_feature")),
    (
        "cr",
        "Conflict ratio (share of task pairs with g_i\u00b7g_j < 0)",
        ("diag/cr_param", "diag/cr_feature"),
    ),
    (
        "inter",
        "Inter-task vs inter-sample similarity (shared-parameter gradients; _feature: w.r.t. Z)",
        tuple(
            f"diag/{k}{suffix}"
            for suffix in ("", "_feature")
            for k in (
                "inter_task_cos", "inter_sample_cos", "inter_task_gms", "inter_sample_gms",
                "inter_task_sign_conflict", "inter_sample_sign_conflict",
            )
        ),  # fmt: skip
    ),
)
KEY_LABELS = {
    "diag/fd": "FD",
    "diag/gds_param": "GDS (parameter)",
    "diag/gds_feature": "GDS (feature)",
    "diag/gms_param": "GMS (parameter)",
    "diag/gms_feature": "GMS (feature)",
    "diag/cr_param": "CR (parameter)",
    "diag/cr_feature": "CR (feature)",
    "diag/inter_task_cos": "inter-task cos",
    "diag/inter_sample_cos": "inter-sample cos",
    "diag/inter_task_gms": "inter-task GMS",
    "diag/inter_sample_gms": "inter-sample GMS",
    "diag/inter_task_sign_conflict": "inter-task sign conflict",
    "diag/inter_sample_sign_conflict": "inter-sample sign conflict",
    "diag/inter_task_cos_feature": "inter-task cos (feature)",
    "diag/inter_sample_cos_feature": "inter-sample cos (feature)",
    "diag/inter_task_gms_feature": "inter-task GMS (feature)",
    "diag/inter_sample_gms_feature": "inter-sample GMS (feature)",
    "diag/inter_task_sign_conflict_feature": "inter-task sign conflict (feature)",
    "diag/inter_sample_sign_conflict_feature": "inter-sample sign conflict (feature)",
}
METRIC_LABELS = {f"{p}/{m}": f"{t} {m}" for t, p in TASK_METRICS for m in ("mAP", "mAR")}


def smoothing_window(n: int) -> int:
    """Moving-average window for a trajectory of n points: 1/10 of it, at least 1."""
    return max(1, int(round(n / 10)))


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average; near the ends the window is truncated to the points that exist."""
    x = np.asarray(values, dtype=np.float64)
    if window <= 1 or x.size == 0:
        return x.copy()
    half_lo, half_hi = (window - 1) // 2, window // 2
    c = np.concatenate([[0.0], np.cumsum(x)])
    idx = np.arange(x.size)
    lo, hi = np.clip(idx - half_lo, 0, x.size), np.clip(idx + half_hi + 1, 0, x.size)
    return (c[hi] - c[lo]) / (hi - lo)


def _fmt(x: float, digits: int = 3) -> str:
    return "\u2014" if not math.isfinite(x) else f"{x:.{digits}f}"


def _mark(diff: float, threshold: float) -> str:
    if not math.isfinite(diff):
        return ""
    return UP if diff > threshold else DOWN if diff < -threshold else SAME


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


@dataclass
class Report:
    """What `write_report` produced: file paths and the numbers behind the tables."""

    out_dir: Path
    files: list[Path] = field(default_factory=list)
    data: dict = field(default_factory=dict)


# ---- tables ------------------------------------------------------------------------------------


def benchmark_table(
    groups: Sequence[MethodGroup], baseline: MethodGroup | None, threshold: float
) -> tuple[str, dict]:
    header = ["Method", "seeds"] + [METRIC_LABELS[k] for k in SUMMARY_METRICS]
    rows, data = [], {}
    base_means = (
        {k: float(np.mean(v)) if (v := baseline.final_values(k)).size else math.nan for k in SUMMARY_METRICS}
        if baseline
        else {}
    )
    for g in groups:
        cells, entry = [], {}
        for k in SUMMARY_METRICS:
            v = g.final_values(k)
            mean = float(v.mean()) if v.size else math.nan
            spread = float(v.std(ddof=1)) if v.size >= 2 else math.nan
            diff = mean - base_means.get(k, math.nan) if baseline and g is not baseline else math.nan
            mark = _mark(diff, threshold)
            text = _fmt(mean) + (f" \u00b1 {_fmt(spread)}" if math.isfinite(spread) else "")
            cells.append(f"{text} {mark}".strip())
            entry[k] = {"mean": mean, "std": spread, "n": int(v.size), "vs_baseline": diff, "mark": mark}
        label = g.label + (" (baseline)" if g is baseline else "")
        rows.append([label, ",".join(map(str, g.seeds))] + cells)
        data[g.label] = entry
    note = (
        f"Final test metrics: mean \u00b1 sample std over seeds. {UP}/{DOWN}: the mean is more "
        f"than {threshold:g} above/below the baseline's ({baseline.label}); {SAME}: within {threshold:g}."
        if baseline
        else "No baseline among the runs, so no comparison marks."
    )
    return _markdown(header, rows) + "\n" + note + "\n", data


def _parameter_level_name(method: str) -> str:
    """The registered method that a feature-only alias runs at the parameter level (mgda_ub -> mgda).

    Found from the registry: a feature-only method whose class derives from (or is) another registered
    method pairs with it. Unknown names stay as they are.
    """
    try:
        from training.mtl.base import Level
        from training.mtl.registry import get, names

        cls = get(method)
        if tuple(cls.levels) != (Level.FEATURE,):
            return cls.name
        for other in names():
            base = get(other)
            if other != method and Level.PARAMETER in base.levels and issubclass(cls, base):
                return other
        return cls.name
    except Exception:  # noqa: BLE001 - the registry is only a hint for pairing; never fail a report on it
        return method


def level_table(groups: Sequence[MethodGroup]) -> tuple[str, dict]:
    """Methods run at both levels; `mgda_ub` / `alignedmtl_ub` runs are the feature level of `mgda` /
    `alignedmtl` (a feature-level run of the base method wins if both exist)."""
    by_method: dict[str, dict[str | None, MethodGroup]] = {}
    for g in sorted(groups, key=lambda g: g.method != _parameter_level_name(g.method)):
        by_method.setdefault(_parameter_level_name(g.method), {}).setdefault(g.level, g)
    header = ["Method"] + [METRIC_LABELS[k] for k in SUMMARY_METRICS]
    rows, data = [], {}
    for method, levels in by_method.items():
        param, feat = levels.get("parameter"), levels.get("feature")
        if param is None or feat is None:
            continue
        cells, entry = [], {}
        for k in SUMMARY_METRICS:
            p, f = param.final_values(k), feat.final_values(k)
            pm = float(p.mean()) if p.size else math.nan
            fm = float(f.mean()) if f.size else math.nan
            rel = (fm - pm) / abs(pm) if math.isfinite(pm) and pm != 0 else math.nan
            cells.append("\u2014" if not math.isfinite(rel) else f"{100 * rel:+.1f}%")
            entry[k] = {"parameter": pm, "feature": fm, "relative_change": rel}
        label = method if feat.method == method else f"{method} / {feat.method}"
        rows.append([label] + cells)
        data[label] = entry
    if not rows:
        return "No method was run at both the parameter and the feature level.\n", {}
    note = (
        "Relative change of the seed-mean final metric when the per-task gradients are taken w.r.t. the "
        "shared features Z instead of the shared parameters: (feature \u2212 parameter) / parameter."
    )
    return _markdown(header, rows) + "\n" + note + "\n", data


def _measure_keys(groups: Sequence[MethodGroup]) -> list[str]:
    present: set[str] = set()
    for g in groups:
        for r in g.runs:
            present.update(k for k in r.metrics if k.startswith("diag/") and np.isfinite(r.metrics[k]).any())
    ordered = [k for _, _, keys in FAMILIES for k in keys if k in present]
    return ordered + sorted(present - set(ordered))


def ranking_table(
    groups: Sequence[MethodGroup], last: int, ties: str
) -> tuple[str, dict, list[str], np.ndarray]:
    """Rows: measures; columns: test metrics; cells: S − 0.5 over the method groups (items)."""
    keys = _measure_keys(groups)
    summary: dict[str, dict[str, float]] = {}
    for g in groups:
        summary[g.label] = {}
        for k in keys:
            _, values = g.trajectory(k)
            summary[g.label][k] = float(values[-last:].mean()) if values.size else math.nan
    signed = np.full((len(keys), len(SUMMARY_METRICS)), np.nan)
    rows: list[list[str]] = []
    data: dict[str, dict[str, Any]] = {}
    for i, k in enumerate(keys):
        cells = []
        data[k] = {}
        for j, metric in enumerate(SUMMARY_METRICS):
            items = [
                (summary[g.label][k], float(np.mean(v)))
                for g in groups
                if (v := g.final_values(metric)).size and math.isfinite(summary[g.label][k])
            ]
            if len(items) < 2:
                cells.append("n/a")
                data[k][metric] = None
                continue
            a, b = zip(*items)
            r: RankingSimilarity = ranking_similarity(a, b, ties=ties)
            signed[i, j] = r.signed
            cells.append(r.format())
            data[k][metric] = {
                "S": r.s,
                "signed": r.signed,
                "abs": r.deviation,
                "tau": r.tau,
                "n_items": len(items),
            }
        rows.append([KEY_LABELS.get(k, k)] + cells)
    if not keys:
        return "No diagnostics were logged (metrics.csv has no diag/ values).\n", {}, keys, signed
    header = ["Measure"] + [METRIC_LABELS[m] for m in SUMMARY_METRICS]
    note = (
        f"Cells: |S \u2212 0.5| with its sign (+: methods with a higher measure have a higher metric, "
        f"\u2212: the inverted order; 0.5 = perfect, 0 = no better than random). Items: the "
        f"{len(groups)} method groups; a measure is summarised by the mean of the last {last} logged points "
        f"of its seed-mean trajectory, a metric by its seed-mean final value. Ties: '{ties}'."
    )
    data["_summary"] = summary
    return _markdown(header, rows) + "\n" + note + "\n", data, keys, signed


# ---- plots -------------------------------------------------------------------------------------


def _colors(groups: Sequence[MethodGroup]) -> dict[str, tuple]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(groups) <= 10 else "tab20"]
    return {g.label: cmap(i % cmap.N) for i, g in enumerate(groups)}


def _draw_measure(
    axes: Sequence[Any],
    key: str,
    groups: Sequence[MethodGroup],
    baseline: MethodGroup | None,
    colors: dict[str, tuple],
    handles: dict[str, Any],
) -> None:
    """One row of the dynamics figure: smoothed values per group, and their difference to the baseline."""
    base_steps, base_values = baseline.trajectory(key) if baseline else (np.zeros(0), np.zeros(0))
    for g in groups:
        steps, values = g.trajectory(key)
        if not steps.size:
            continue
        is_base = g is baseline
        style = {
            "color": "black" if is_base else colors[g.label],
            "lw": 2.0 if is_base else 1.6,
            "ls": "--" if is_base else "-",
            # short runs: show the logged points themselves (a single point draws no line)
            "marker": "o" if steps.size < 30 else None,
            "ms": 3.5,
        }
        smooth = moving_average(values, smoothing_window(steps.size))
        (line,) = axes[0].plot(steps, smooth, label=g.label, **style)
        handles.setdefault(g.label + (" (baseline)" if is_base else ""), line)
        if len(axes) == 2 and not is_base and base_steps.size:
            inside = (steps >= base_steps[0]) & (steps <= base_steps[-1])
            if inside.any():
                diff = values[inside] - np.interp(steps[inside], base_steps, base_values)
                axes[1].plot(steps[inside], moving_average(diff, smoothing_window(diff.size)), **style)


def _label_measure(axes: Sequence[Any], key: str, baseline: MethodGroup | None) -> None:
    from matplotlib.ticker import MaxNLocator

    label = KEY_LABELS.get(key, key)
    axes[0].set_ylabel(label)
    axes[0].set_title(f"{label} (moving average over 1/10 of the run)", fontsize=10)
    if len(axes) == 2 and baseline is not None:
        axes[1].axhline(0.0, color="black", lw=1.0, ls="--")
        axes[1].set_ylabel(f"\u0394 {label}")
        axes[1].set_title(f"{label} minus {baseline.label} (same steps, smoothed)", fontsize=10)
    for ax in axes:
        ax.ticklabel_format(axis="y", useOffset=False)  # no "1e-13+1e-1" offsets on flat curves
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are integers
        ax.grid(alpha=0.3)
        ax.set_xlabel("step")


def dynamics_plot(
    groups: Sequence[MethodGroup],
    baseline: MethodGroup | None,
    stem: str,
    title: str,
    keys: Sequence[str],
    path: Path,
) -> bool:
    """One figure per measure family: rows = measures, columns = smoothed value / difference to baseline."""
    from matplotlib.figure import Figure

    keys = [k for k in keys if any(g.trajectory(k)[0].size for g in groups)]
    if not keys:
        return False
    colors = _colors(groups)
    ncols = 2 if baseline is not None else 1
    fig = Figure(figsize=(6.0 * ncols + 2.2, 3.0 * len(keys) + 0.8), layout="constrained")
    axes = fig.subplots(len(keys), ncols, squeeze=False)
    handles: dict[str, Any] = {}
    for row, key in enumerate(keys):
        _draw_measure(axes[row], key, groups, baseline, colors, handles)
        _label_measure(axes[row], key, baseline)
    fig.suptitle(title + " \u2014 seed means", fontsize=12)
    fig.legend(list(handles.values()), list(handles), loc="outside right center", fontsize=9)
    fig.savefig(path, dpi=110)
    return True


def ranking_plot(
    keys: Sequence[str], signed: np.ndarray, path: Path, column_labels: Sequence[str] | None = None
) -> None:
    """Heat map of S − 0.5 (measures x metrics), diverging around 0, annotated with the values.

    column_labels: the metrics' titles (default: the bin-picking benchmark's SUMMARY_METRICS)."""
    from matplotlib.figure import Figure

    labels = list(column_labels) if column_labels is not None else [METRIC_LABELS[m] for m in SUMMARY_METRICS]
    fig = Figure(figsize=(1.3 * len(labels) + 3.2, 0.45 * len(keys) + 1.8), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(np.ma.masked_invalid(signed), cmap="RdBu", vmin=-0.5, vmax=0.5, aspect="auto")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(keys)), [KEY_LABELS.get(k, k) for k in keys])
    for i in range(signed.shape[0]):
        for j in range(signed.shape[1]):
            v = signed[i, j]
            text = "n/a" if not math.isfinite(v) else f"{v:+.2f}"
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=9,
                color="white" if math.isfinite(v) and abs(v) > 0.3 else "black",
            )
    fig.colorbar(im, ax=ax, label="S \u2212 0.5  (sign = direction, size = |S \u2212 0.5|)")
    ax.set_title("Ranking similarity of each measure vs each test metric", fontsize=11)
    fig.savefig(path, dpi=110)


def _jsonable(x: object) -> object:
    """NaN -> null (strict JSON), numpy scalars -> Python numbers."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


# ---- the whole report --------------------------------------------------------------------------


def _check_report_args(run_dirs: Sequence[str | Path], threshold: float, last: int) -> None:
    if not run_dirs:
        raise ValueError("RUN_DIR: expected at least one run directory, got none")
    if not threshold >= 0:
        raise ValueError(f"threshold: expected >= 0, got {threshold!r}")
    if not isinstance(last, int) or last < 1:
        raise ValueError(f"last: expected a positive number of points, got {last!r}")


def _plots(
    groups: Sequence[MethodGroup],
    base: MethodGroup | None,
    keys: Sequence[str],
    signed: np.ndarray,
    out: Path,
) -> list[tuple[str, Path]]:
    """The dynamics plots that have data, then the ranking heat map: [(title, path)]."""
    plots = []
    for stem, title, family in FAMILIES:
        path = out / f"dynamics_{stem}.png"
        if dynamics_plot(groups, base, stem, title, family, path):
            plots.append((title, path))
    if keys:
        ranking_plot(keys, signed, out / "ranking_similarity.png")
        plots.append(("Ranking similarity", out / "ranking_similarity.png"))
    return plots


def _report_md(
    groups: Sequence[MethodGroup],
    base: MethodGroup | None,
    baseline: str,
    tables: tuple[str, str, str],
    plots: Sequence[tuple[str, Path]],
) -> str:
    """report.md: the runs, the three tables and the plots (dynamics under their section)."""
    bench_md, levels_md, rank_md = tables
    runs = sum(len(g.runs) for g in groups)
    seeds = ", ".join(f"{g.label} (seeds {','.join(map(str, g.seeds))})" for g in groups)
    base_text = base.label if base else f"none ('{baseline}' not among the runs)"
    dynamics = [(title, path) for title, path in plots if path.name.startswith("dynamics_")]
    lines = [
        "# MTL comparison report", "",
        f"{runs} runs, {len(groups)} method groups: {seeds}. Baseline: {base_text}.", "",
        "## Benchmark (final test metrics)", "", bench_md,
        "## Feature level vs parameter level", "", levels_md,
        "## Training dynamics", "",
    ]  # fmt: skip
    lines += [f"![{title}]({path.name})\n" for title, path in dynamics] or ["No diagnostics were logged.\n"]
    lines += ["## Ranking similarity", "", rank_md]
    if len(dynamics) < len(plots):
        lines.append("![Ranking similarity](ranking_similarity.png)\n")
    return "\n".join(lines)


def write_report(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    baseline: str = "ew",
    threshold: float = 0.01,
    last: int = 50,
    ties: str = "half",
) -> Report:
    """Load the runs, write tables, plots, report.md and report.json into `out_dir`."""
    _check_report_args(run_dirs, threshold, last)
    groups = group_runs(load_run(p) for p in run_dirs)
    base = find_group(groups, baseline) if baseline else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out)

    def write(name: str, text: str) -> None:
        (out / name).write_text(text)
        report.files.append(out / name)

    bench_md, bench = benchmark_table(groups, base, threshold)
    levels_md, levels = level_table(groups)
    rank_md, rank, keys, signed = ranking_table(groups, last, ties)
    write("table_benchmark.md", bench_md)
    write("table_levels.md", levels_md)
    write("table_ranking.md", rank_md)
    plots = _plots(groups, base, keys, signed, out)
    report.files += [path for _, path in plots]
    robust_md, robust = robustness_section(groups)  # training/diagnostics/robustness.py
    write("table_robustness.md", robust_md)
    report_md = _report_md(groups, base, baseline, (bench_md, levels_md, rank_md), plots)
    write("report.md", report_md + "\n## Robustness under corruptions\n\n" + robust_md)
    report.data = {
        "baseline": base.label if base else None,
        "threshold": threshold,
        "groups": {
            g.label: {
                "method": g.method, "level": g.level, "seeds": g.seeds, "runs": [str(r.path) for r in g.runs]
            }
            for g in groups
        },
        "benchmark": bench,
        "levels": levels,
        "ranking_similarity": rank,
        "robustness": robust,
    }
    write("report.json", json.dumps(_jsonable(report.data), indent=2))
    return report
