"""`python -m training report` on small fixture run directories written in the documented format."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from training.cli import main
from training.diagnostics.report import moving_average, smoothing_window, write_report
from training.diagnostics.runs import load_run
from training.model.names import LOSS_NAMES

METRIC_KEYS = [f"{t}/{m}" for t in ("bbox", "vmask", "amask") for m in ("mAP", "AP50", "AP75", "mAR")]
DIAG_KEYS = [
    "diag/fd",
    "diag/gds_param",
    "diag/gms_param",
    "diag/cr_param",
    "diag/gds_feature",
    "diag/gms_feature",
    "diag/cr_feature",
]


def write_run(
    root: Path, method: str, level: str, seed: int, quality: float, fd: float, steps: int = 200
) -> Path:
    """A run dir as `train` writes it: `quality` sets every final metric, `fd` the late FD level."""
    root.mkdir(parents=True)
    (root / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "mtl": {"name": method, "level": level}}))
    rng = np.random.default_rng(seed)
    header = ["step", "epoch", "lr", "time_s", "skipped"] + [f"loss/{n}" for n in LOSS_NAMES] + DIAG_KEYS
    with open(root / "metrics.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for step in range(steps):
            row = [step, 0, 1e-3, 0.1 * step, 0] + [1.0 / (1 + step)] * len(LOSS_NAMES)
            if step % 2 == 0:  # diagnostics every 2 steps; empty cells otherwise
                t = step / steps
                row += [fd * t + 0.01 * rng.standard_normal(), -fd * t, 0.5, 0.2, 0.1, 0.6, 0.3]
            else:
                row += [""] * len(DIAG_KEYS)
            w.writerow(row)
    with open(root / "eval.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["step"] + METRIC_KEYS + ["occ/accuracy", "occ/f1"])
        w.writerow([steps // 2] + [quality / 2] * len(METRIC_KEYS) + [0.5, 0.5])
        w.writerow([steps] + [quality] * len(METRIC_KEYS) + [0.6, 0.6])
    final = {k: quality for k in METRIC_KEYS} | {"method": method, "seed": seed, "level": level}
    final["amask/mAR"] = quality - 0.05 if method == "pcgrad" else quality  # one clear drop
    (root / "metrics.json").write_text(json.dumps(final))
    return root


@pytest.fixture
def runs(tmp_path: Path) -> list[Path]:
    spec = [  # (method, level, quality, fd): FD ranks methods like the metrics; GDS (= -FD) inversely
        ("ew", "parameter", 0.300, 1.0),
        ("pcgrad", "parameter", 0.350, 1.5),
        ("pcgrad", "feature", 0.305, 1.2),
        ("mgda", "feature", 0.250, 0.5),
    ]
    dirs = []
    for method, level, quality, fd in spec:
        for seed in (0, 1):
            jitter = 0.002 * seed  # seed spread well below the 0.01 threshold
            dirs.append(
                write_run(
                    tmp_path / "runs" / f"{method}-{level}" / f"seed{seed}",
                    method,
                    level,
                    seed,
                    quality + jitter,
                    fd,
                )
            )
    return dirs


def test_report_tables_plots_and_numbers(runs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert main(["report", *map(str, runs), "--out", str(out)]) == 0
    for name in [
        "report.md",
        "table_benchmark.md",
        "table_levels.md",
        "table_ranking.md",
        "report.json",
        "dynamics_fd.png",
        "dynamics_gds.png",
        "dynamics_gms.png",
        "dynamics_cr.png",
        "ranking_similarity.png",
    ]:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert not (out / "dynamics_inter.png").exists()  # not logged, not plotted
    assert (out / "dynamics_fd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    data = json.loads((out / "report.json").read_text())
    assert data["baseline"] == "ew"
    # EW is level-free: its recorded level does not split it; pcgrad has two groups
    assert set(data["groups"]) == {"ew", "pcgrad", "pcgrad (feature)", "mgda (feature)"}
    bench = data["benchmark"]
    assert bench["pcgrad"]["bbox/mAP"]["mean"] == pytest.approx(0.351)
    assert bench["pcgrad"]["bbox/mAP"]["std"] == pytest.approx(np.std([0.350, 0.352], ddof=1))
    assert bench["pcgrad"]["bbox/mAP"]["mark"] == "\u2191"
    assert bench["pcgrad (feature)"]["bbox/mAP"]["mark"] == "\u2212"  # +0.005: within the threshold
    assert bench["mgda (feature)"]["vmask/mAR"]["mark"] == "\u2193"
    assert bench["pcgrad"]["amask/mAR"]["mark"] == "\u2212"  # 0.301 vs 0.301
    levels = data["levels"]
    assert list(levels) == ["pcgrad"]
    assert levels["pcgrad"]["bbox/mAP"]["relative_change"] == pytest.approx((0.306 - 0.351) / 0.351)

    rank = data["ranking_similarity"]
    # FD orders the 4 groups exactly like bbox/mAP, GDS exactly inversely
    assert rank["diag/fd"]["bbox/mAP"]["signed"] == pytest.approx(0.5)
    assert rank["diag/gds_param"]["bbox/mAP"]["signed"] == pytest.approx(-0.5)
    assert rank["diag/gms_param"]["bbox/mAP"]["signed"] == pytest.approx(0.0)  # constant: all ties
    assert rank["diag/fd"]["bbox/mAP"]["n_items"] == 4

    table = (out / "table_benchmark.md").read_text()
    assert "| pcgrad | 0,1 | 0.351 \u00b1 0.001 \u2191 |" in table
    assert "ew (baseline)" in table
    ranking_md = (out / "table_ranking.md").read_text()
    assert "| FD | +0.50 |" in ranking_md and "| GDS (parameter) | \u22120.50 |" in ranking_md
    report_md = (out / "report.md").read_text()
    assert "![" in report_md and "dynamics_gds.png" in report_md


def test_report_without_baseline_and_bad_input(runs: list[Path], tmp_path: Path, capsys) -> None:
    rep = write_report(runs[2:4], tmp_path / "r2", baseline="ew")  # only pcgrad seeds
    assert "no comparison marks" in (tmp_path / "r2" / "table_benchmark.md").read_text()
    assert rep.data["baseline"] is None
    assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "r3")]) == 2
    assert "missing" in capsys.readouterr().err
    with pytest.raises(ValueError, match="repeats seed 0"):
        write_report([runs[0], runs[0]], tmp_path / "r4")


def test_run_loading_and_smoothing(runs: list[Path]) -> None:
    run = load_run(runs[0])
    assert (run.method, run.level, run.seed) == ("ew", None, 0)
    steps, fd = run.series("diag/fd")
    assert steps.size == 100 and np.all(steps % 2 == 0)  # empty cells are "not computed"
    assert run.final_value("bbox/mAP") == pytest.approx(0.3)
    assert smoothing_window(200) == 20 and smoothing_window(3) == 1
    x = np.arange(10, dtype=float)
    assert np.allclose(moving_average(x, 3)[1:-1], x[1:-1])  # linear data is unchanged inside
    assert moving_average(x, 3)[0] == pytest.approx(0.5)  # truncated window at the border
    assert not math.isnan(moving_average(x, 20).sum())


def test_level_table_pairs_ub_aliases_with_their_parameter_level_method(tmp_path: Path) -> None:
    """mgda_ub / alignedmtl_ub runs are the feature level of mgda / alignedmtl in table_levels."""
    dirs = []
    for method, level, quality in [
        ("ew", "parameter", 0.3), ("mgda", "parameter", 0.4), ("mgda_ub", "feature", 0.2),
        ("alignedmtl", "parameter", 0.5), ("alignedmtl_ub", "feature", 0.25),
    ]:  # fmt: skip
        dirs.append(write_run(tmp_path / "runs" / method / "seed0", method, level, 0, quality, 1.0, steps=20))
    out = tmp_path / "report"
    assert main(["report", *map(str, dirs), "--out", str(out)]) == 0
    levels = json.loads((out / "report.json").read_text())["levels"]
    assert set(levels) == {"mgda / mgda_ub", "alignedmtl / alignedmtl_ub"}
    assert levels["mgda / mgda_ub"]["bbox/mAP"]["relative_change"] == pytest.approx((0.2 - 0.4) / 0.4)
    assert "| mgda / mgda_ub |" in (out / "table_levels.md").read_text()
