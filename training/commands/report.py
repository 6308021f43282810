"""`python -m training report RUN_DIR [RUN_DIR ...] --out DIR`: compare runs of several methods and seeds."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - types only
    from training.diagnostics.report import Report

HELP = "compare runs: benchmark table, feature vs parameter level, diagnostics plots, ranking similarity"
DESCRIPTION = (
    "Reads run directories written by `python -m training train` (config.yaml, metrics.csv, eval.csv, "
    "metrics.json), groups them by method and level (seeds of the same method are averaged) and writes "
    "markdown tables, PNG plots, report.md and report.json into --out.\n\n"
    "Tables: final BBox/VMask/AMask mAP and mAR per method (mean \u00b1 std over seeds, \u2191/\u2193/\u2212 "
    "against the baseline with --threshold); feature level vs parameter level (relative change); Ranking "
    "Similarity of each logged diagnostic (mean of its last --last points) against each test metric, "
    "reported as |S \u2212 0.5| with its sign. Plots: FD, GDS, GMS and conflict ratio over training, "
    "smoothed over 1/10 of the run, absolute and relative to the baseline. See docs/diagnostics.md.\n\n"
    "Dense-family runs (NYU-v2, CityScapes; docs/dense.md) get the study's Tables 2/3 instead: every "
    "metric with \u2191/\u2193 and \u0394m against the single-task runs among RUN_DIRs (runs training one "
    "task; see `sweep --single-task`), the variant set by --delta-m-averaging/--delta-m-sign and stated in "
    "the table; and Tables 6/7: ranking similarity of GDS, GMS and FD against each metric and \u0394m."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories to compare")
    parser.add_argument("--out", required=True, help="output directory for the report")
    parser.add_argument("--baseline", default="ew", help="method the others are compared with (default: ew)")
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.01,
        help="absolute difference to the baseline that earns \u2191/\u2193 (default: 0.01)",
    )
    parser.add_argument(
        "--last",
        type=int,
        default=50,
        help="logged points at the end of a diagnostic's trajectory averaged for ranking (default: 50)",
    )
    parser.add_argument(
        "--ties",
        choices=("half", "sign", "exclude"),
        default="half",
        help="ranking similarity: a pair tied in either score counts 1/2 (default); 'sign': the FD "
        "paper's eq. 9 (tied in both = agree, tied in one = disagree); 'exclude': tied pairs left out",
    )
    parser.add_argument(
        "--delta-m-averaging", choices=("metric", "task"), default="metric",
        help="dense runs: \u0394m averages over all metrics (default; Nash-MTL/FAMO/CAGrad tables) or over "
        "tasks of per-task means (LibMTL)",
    )  # fmt: skip
    parser.add_argument(
        "--delta-m-sign", choices=("improvement", "degradation"), default="improvement",
        help="dense runs: \u0394m > 0 means better than the single-task baselines (default; LibMTL's "
        "\u0394p) or worse ('degradation': the \u0394m%% \u2193 of Nash-MTL/FAMO)",
    )  # fmt: skip


def write_any_report(run_dirs: Sequence[str | Path], out: str | Path, **options: Any) -> Report:
    """The dense report (`training.diagnostics.dense_report`) when every run is a dense-family run, the
    bin-picking report (`training.diagnostics.report`) when none is; a mix is an error naming both.

    options: baseline, threshold, last, ties, averaging, sign (each report takes the ones it knows)."""
    from training.diagnostics.dense_report import is_dense_run, write_dense_report
    from training.diagnostics.report import write_report

    dense = [p for p in run_dirs if is_dense_run(p)]
    if dense and len(dense) < len(run_dirs):
        other = [str(p) for p in run_dirs if p not in dense]
        raise ValueError(f"RUN_DIR: dense-family runs {[str(p) for p in dense]} mixed with {other}")
    keep = ("baseline", "last", "ties") + (("averaging", "sign") if dense else ("threshold",))
    kwargs = {k: v for k, v in options.items() if k in keep}
    return (write_dense_report if dense else write_report)(run_dirs, out, **kwargs)


def run(args: argparse.Namespace) -> int:
    report = write_any_report(
        args.run_dirs, args.out, baseline=args.baseline, threshold=args.threshold, last=args.last,
        ties=args.ties, averaging=args.delta_m_averaging, sign=args.delta_m_sign,
    )  # fmt: skip
    print(f"report: {len(report.files)} files in {report.out_dir}; open {report.out_dir / 'report.md'}")
    return 0
