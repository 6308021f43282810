"""`python -m training report RUN_DIR [RUN_DIR ...] --out DIR`: compare runs of several methods and seeds."""

from __future__ import annotations

import argparse

HELP = "compare runs: benchmark table, feature vs parameter level, diagnostics plots, ranking similarity"
DESCRIPTION = (
    "Reads run directories written by `python -m training train` (config.yaml, metrics.csv, eval.csv, "
    "metrics.json), groups them by method and level (seeds of the same method are averaged) and writes "
    "markdown tables, PNG plots, report.md and report.json into --out.\n\n"
    "Tables: final BBox/VMask/AMask mAP and mAR per method (mean \u00b1 std over seeds, \u2191/\u2193/\u2212 "
    "against the baseline with --threshold); feature level vs parameter level (relative change); Ranking "
    "Similarity of each logged diagnostic (mean of its last --last points) against each test metric, "
    "reported as |S \u2212 0.5| with its sign. Plots: FD, GDS, GMS and conflict ratio over training, "
    "smoothed over 1/10 of the run, absolute and relative to the baseline. See docs/diagnostics.md."
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


def run(args: argparse.Namespace) -> int:
    from training.diagnostics.report import write_report

    report = write_report(
        args.run_dirs,
        args.out,
        baseline=args.baseline,
        threshold=args.threshold,
        last=args.last,
        ties=args.ties,
    )
    print(f"report: {len(report.files)} files in {report.out_dir}; open {report.out_dir / 'report.md'}")
    return 0
