"""`python -m training sweep`: planning, failure handling, and (slow) a complete synthetic sweep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.cli import main

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC = REPO / "config" / "train" / "synthetic.yaml"


def test_sweep_dry_run_plans_levels_and_seeds(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("seed: 0\n")
    args = [
        "sweep",
        "--config",
        str(cfg),
        "--methods",
        "ew,pcgrad",
        "--seeds",
        "0,1",
        "--levels",
        "parameter,feature",
        "--out",
        str(tmp_path / "sw"),
        "--dry-run",
        "train.steps=3",
    ]
    assert main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    # EW is level-free: once per seed; pcgrad at both levels
    assert len(lines) == 6
    assert sum("mtl.name=ew" in line for line in lines) == 2
    assert any(
        "mtl.level=feature" in line
        and f"run_dir={tmp_path / 'sw' / 'runs' / 'pcgrad-feature' / 'seed1'}" in line
        for line in lines
    )
    assert all(" train --config " in line and "train.steps=3" in line for line in lines)


@pytest.mark.parametrize(
    ("extra", "word"),
    [
        (["--methods", "pcgradd"], "--methods"),
        (["--methods", "ew", "--seeds", "a"], "--seeds"),
        (["--methods", "pcgrad", "--levels", "pixel"], "--levels"),
        (["--methods", "ew", "seed=3"], "seed"),
        (["--methods", "ew", "novalue"], "KEY=VALUE"),
    ],
)
def test_sweep_bad_input(tmp_path: Path, capsys, extra: list[str], word: str) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("seed: 0\n")
    assert main(["sweep", "--config", str(cfg), "--out", str(tmp_path / "sw"), "--dry-run", *extra]) == 2
    assert word in capsys.readouterr().err


def test_sweep_reports_a_failing_run(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("no_such_option: 1\n")  # the train command rejects it: the run fails, the sweep says so
    assert main(["sweep", "--config", str(cfg), "--methods", "ew", "--out", str(tmp_path / "sw")]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "1 of 1 runs failed" in out
    assert (tmp_path / "sw" / "logs" / "ew-seed0.log").is_file()
    assert not (tmp_path / "sw" / "report").exists()


@pytest.mark.slow
def test_synthetic_sweep_two_methods_two_seeds(tmp_path: Path) -> None:
    pytest.importorskip("training.commands.train", reason="the train command is not available")
    if not SYNTHETIC.is_file():
        pytest.skip(f"{SYNTHETIC} does not exist")
    out = tmp_path / "sweep"
    overrides = [
        f"data.root={tmp_path / 'data'}",
        "train.steps=6",
        "diagnostics.every=2",
        "train.eval_max_images=2",
        "train.progress=false",
    ]
    code = main(
        [
            "sweep",
            "--config",
            str(SYNTHETIC),
            "--methods",
            "ew,pcgrad",
            "--seeds",
            "0,1",
            "--out",
            str(out),
            *overrides,
        ]
    )
    assert code == 0
    report = out / "report"
    for name in [
        "report.md",
        "table_benchmark.md",
        "table_levels.md",
        "table_ranking.md",
        "dynamics_fd.png",
        "dynamics_gds.png",
        "dynamics_gms.png",
        "ranking_similarity.png",
    ]:
        assert (report / name).is_file(), name
    data = json.loads((report / "report.json").read_text())
    assert set(data["groups"]) == {"ew", "pcgrad"} and data["baseline"] == "ew"
    assert data["groups"]["pcgrad"]["seeds"] == [0, 1]
    # a rerun skips the finished runs
    assert (
        main(
            [
                "sweep",
                "--config",
                str(SYNTHETIC),
                "--methods",
                "ew",
                "--seeds",
                "0",
                "--out",
                str(out),
                *overrides,
            ]
        )
        == 0
    )
