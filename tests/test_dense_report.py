"""The dense report (Tables 2/3 with Δm against single-task runs, Tables 6/7 ranking similarity) on
hand-made run directories with known numbers, the `report` command's dispatch, and the sweep's
single-task baselines (planning by default; a complete small sweep with -m slow)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from dense_fixtures import CITYSCAPES3, tiny_dense

from training.cli import main
from training.config import config_from_dict, dump_config
from training.diagnostics.dense_report import load_dense_study, write_dense_report
from training.rundir import RunDir

REPO = Path(__file__).resolve().parents[1]
TASKS = ["segmentation", "depth", "normal"]
BASE = {
    "segmentation/miou": 0.5, "segmentation/pixel_acc": 0.8, "depth/abs_err": 0.4, "depth/rel_err": 0.2,
    "normal/mean": 20.0, "normal/median": 15.0, "normal/within_11.25": 0.3, "normal/within_22.5": 0.6,
    "normal/within_30": 0.7,
}  # fmt: skip


def make_run(root: Path, tasks: list[str], method: str, seed: int, final: dict, diag: dict | None = None,
             level: str = "parameter") -> Path:  # fmt: skip
    """A run directory as the trainer writes it: config.yaml, metrics.json and (with diag) metrics.csv."""
    run = RunDir(root)
    run.root.mkdir(parents=True)
    cfg = config_from_dict(tiny_dense(root / "data", root, mtl={"name": method, "level": level}, seed=seed),
                           [f"dense.model.tasks={tasks}"])  # fmt: skip
    dump_config(cfg, run.config)
    summary = {**final, "method": method, "level": level, "seed": seed, "step": 10}
    run.metrics_json.write_text(json.dumps(summary))
    if diag:
        with open(run.metrics_csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["step", *diag])
            writer.writeheader()
            for step in (1, 2):
                writer.writerow({"step": step, **diag})
    return run.root


@pytest.fixture()
def study_runs(tmp_path: Path) -> list[Path]:
    """EW (2 seeds: mIoU 0.54 / 0.56), PCGrad (depth error 0.3), MGDA feature level (mIoU 0.45), and one
    single-task run per task at the baseline values. FD orders the methods like Δm, GDS inversely."""
    runs = []
    for task in TASKS:
        own = {k: v for k, v in BASE.items() if k.startswith(task)}
        runs.append(make_run(tmp_path / f"single-{task}", [task], "ew", 0, own))
    cases = [
        ("ew", 0, {"segmentation/miou": 0.54}, 0.5, "parameter"),
        ("ew", 1, {"segmentation/miou": 0.56}, 0.5, "parameter"),
        ("pcgrad", 0, {"depth/abs_err": 0.3}, 0.7, "parameter"),
        ("mgda", 0, {"segmentation/miou": 0.45}, 0.3, "feature"),
    ]
    for method, seed, change, fd, level in cases:
        diag = {"diag/fd": fd, "diag/gds_feature": -fd, "diag/gms_feature": 0.5}
        path = tmp_path / f"{method}-{level}-{seed}"
        runs.append(make_run(path, TASKS, method, seed, {**BASE, **change}, diag, level))
    return runs


def test_table_2_3_rows_columns_and_delta_m(study_runs, tmp_path) -> None:
    report = write_dense_report(study_runs, tmp_path / "report", averaging="metric", sign="improvement")
    table = (tmp_path / "report" / "table_results.md").read_text()
    header = table.splitlines()[0]
    titles = ("Seg. mIoU \u2191", "Depth Abs Err \u2193", "Normal 11.25\u00b0 \u2191",
              "\u0394m% \u2191 (per-metric mean)")  # fmt: skip
    assert all(title in header for title in titles), header
    results = report.data["results"]
    # EW: +8 % and +12 % on one of 9 metrics -> 0.889 and 1.333 -> 1.111 +- 0.314
    ew = results["ew"]["delta_m"]
    assert ew["per_seed"] == pytest.approx([8 / 9, 12 / 9])
    assert ew["mean"] == pytest.approx(10 / 9) and "| ew | 0,1 | 0.5500 \u00b1 0.0141" in table
    assert "1.11 \u00b1 0.31 |" in table
    assert results["pcgrad"]["delta_m"]["mean"] == pytest.approx(25 / 9)  # depth error 0.4 -> 0.3: +25 %
    assert results["mgda (feature)"]["delta_m"]["mean"] == pytest.approx(-10 / 9)
    assert "| Single-task baselines | 0 | 0.5000 |" in table
    assert "sign 'improvement': positive = better than the baselines" in table
    per_task = write_dense_report(study_runs, tmp_path / "r2", averaging="task", sign="degradation")
    assert per_task.data["results"]["ew"]["delta_m"]["mean"] == pytest.approx(-5 / 3)  # -(10 % / 2) / 3
    assert "\u0394m% \u2193 (per-task mean)" in (tmp_path / "r2" / "table_results.md").read_text()


def test_table_6_7_ranking_similarity_is_oriented_so_that_higher_is_better(study_runs, tmp_path) -> None:
    report = write_dense_report(study_runs, tmp_path / "report")
    rank = report.data["ranking_similarity"]
    # FD orders mgda < ew < pcgrad, as their delta_m: S = 1; GDS (= -FD) the inverse: S = 0
    assert rank["diag/fd"]["delta_m"]["S"] == 1.0 and rank["diag/gds_feature"]["delta_m"]["S"] == 0.0
    # depth abs err (lower is better) 0.4 / 0.3 / 0.4: two concordant pairs, one tie -> (2 + 0.5) / 3
    assert rank["diag/fd"]["depth/abs_err"]["S"] == pytest.approx(2.5 / 3)
    assert rank["diag/gms_feature"]["delta_m"]["S"] == 0.5  # constant measure: every pair tied
    table = (tmp_path / "report" / "table_ranking.md").read_text()
    header = table.splitlines()[0]
    assert header.startswith("| Measure | Seg. mIoU |") and header.endswith("\u0394m |")
    assert "| GDS (feature) |" in table and "| FD |" in table and "+0.50" in table and "\u22120.50" in table
    for name in ("report.md", "ranking_similarity.png", "dynamics_fd.png", "report.json"):
        assert (tmp_path / "report" / name).is_file(), name
    assert json.loads((tmp_path / "report" / "report.json").read_text())["delta_m"]["sign"] == "improvement"


def test_report_command_dispatches_on_the_family_and_states_the_variant(study_runs, tmp_path, capsys) -> None:
    out = tmp_path / "cli"
    argv = ["report", *map(str, study_runs), "--out", str(out), "--delta-m-sign", "degradation"]
    assert main(argv) == 0
    assert "table_results.md" in {p.name for p in out.iterdir()}
    assert "\u0394m% \u2193" in (out / "report.md").read_text()
    bin_run = tmp_path / "bin"
    bin_run.mkdir()
    (bin_run / "metrics.json").write_text(json.dumps({"method": "ew", "seed": 0, "bbox/mAP": 0.1}))
    assert main(["report", str(study_runs[-1]), str(bin_run), "--out", str(tmp_path / "mixed")]) == 2
    assert "dense-family runs" in capsys.readouterr().err


def test_runs_of_other_datasets_or_tasks_are_named(study_runs, tmp_path) -> None:
    other = make_run(tmp_path / "two", ["segmentation", "depth"], "ew", 5, BASE)
    with pytest.raises(ValueError, match="trains \\['segmentation', 'depth'\\]"):
        load_dense_study([*study_runs, other])
    only_single = [p for p in study_runs if "single" in p.name]
    with pytest.raises(ValueError, match="no multi-task run"):
        load_dense_study(only_single)
    without_depth = [p for p in study_runs if p.name != "single-depth"]
    report = write_dense_report(without_depth, tmp_path / "partial")
    assert math.isnan(report.data["results"]["ew"]["delta_m"]["mean"])
    assert "No single-task baseline for ['depth']" in (tmp_path / "partial" / "table_results.md").read_text()
    normal = {k: v for k, v in BASE.items() if k.startswith("normal")} | {"normal/within_11.25": 0.0}
    zero = make_run(tmp_path / "zero", ["normal"], "ew", 0, normal)
    runs = [p for p in study_runs if p.name != "single-normal"] + [zero]
    report = write_dense_report(runs, tmp_path / "zero-report")
    assert math.isnan(report.data["results"]["pcgrad"]["delta_m"]["mean"])
    text = (tmp_path / "zero-report" / "table_results.md").read_text()
    assert "the baselines of ['normal/within_11.25'] are 0" in text


def test_sweep_plans_single_task_baselines_for_a_dense_config(tmp_path, capsys) -> None:
    cfg = REPO / "config" / "train" / "nyuv2-synthetic.yaml"
    argv = ["sweep", "--config", str(cfg), "--methods", "ew,pcgrad", "--levels", "feature", "--single-task",
            "--out", str(tmp_path / "sw"), "--dry-run"]  # fmt: skip
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    singles = [line for line in lines if "dense.model.tasks=" in line]
    assert len(lines) == 5 and len(singles) == 3
    for task in TASKS:
        assert any(f"dense.model.tasks=[{task}]" in line and f"single-{task}" in line for line in singles)
    assert all("mtl.name=ew" in line for line in singles)
    bin_cfg = REPO / "config" / "train" / "synthetic.yaml"
    argv = ["sweep", "--config", str(bin_cfg), "--methods", "ew", "--single-task", "--out", str(tmp_path),
            "--dry-run"]  # fmt: skip
    assert main(argv) == 2
    assert "--single-task: only for dense-family configs" in capsys.readouterr().err


@pytest.mark.slow
def test_a_dense_sweep_with_single_task_baselines_writes_the_tables(tmp_path) -> None:
    base = tiny_dense(tmp_path / "data", tmp_path / "unused", dataset=CITYSCAPES3, train={"steps": 4},
                      diagnostics={"every": 1, "levels": ["feature"]})  # fmt: skip
    cfg = tmp_path / "cfg.yaml"
    import yaml

    cfg.write_text(yaml.safe_dump({k: v for k, v in base.items() if k != "run_dir"}))
    argv = ["sweep", "--config", str(cfg), "--methods", "ew,pcgrad", "--levels", "feature", "--seeds", "0",
            "--single-task", "--out", str(tmp_path / "sw")]  # fmt: skip
    assert main(argv) == 0
    data = json.loads((tmp_path / "sw" / "report" / "report.json").read_text())
    assert set(data["groups"]) == {"ew", "pcgrad (feature)"} and set(data["baselines"]) == set(CITYSCAPES3[1])
    # CityScapes: no metric is a share that a barely trained baseline scores as exactly 0 (NYU-v2's
    # normal/within_11.25 is, after a few steps, so its delta_m is undefined there)
    assert all(data["results"][g]["delta_m"]["mean"] is not None for g in data["groups"]), data["results"]
    assert "diag/fd" in data["ranking_similarity"]
