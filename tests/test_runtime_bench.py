"""`python -m training bench runtime` end to end on a tiny model (a smoke test of the benchmark)."""

from __future__ import annotations

import re

import pytest

from training.cli import main as cli_main


def test_bench_runtime_prints_both_paths(capsys: pytest.CaptureFixture) -> None:
    args = ["bench", "runtime", "--sizes", "64x64,48x80", "--iters", "2", "--warmup", "1"]
    for override in (
        "image_size=64",
        "fpn_channels=32",
        "head_channels=32",
        "box_fc_dim=64",
        "rpn_post_nms_top_n_test=50",
    ):
        args += ["--set", override]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    rows = re.findall(
        r"^\s*(\d+)x(\d+)\s+(pytorch eager \(cpu\)|runtime CPU fp32)\s+([\d.]+)\s+([\d.]+)", out, re.M
    )
    assert {(h, w, name) for h, w, name, _, _ in rows} == {
        (h, w, name)
        for h, w in (("64", "64"), ("48", "80"))
        for name in ("pytorch eager (cpu)", "runtime CPU fp32")
    }
    for *_, p50, p95 in rows:
        assert 0 < float(p50) <= float(p95)


def test_bench_runtime_rejects_bad_arguments(capsys: pytest.CaptureFixture) -> None:
    assert cli_main(["bench", "runtime", "--sizes", "64by64"]) == 2
    assert "--sizes: expected entries like 512x512" in capsys.readouterr().err
    assert cli_main(["bench", "runtime", "--set", "fpn_channels"]) == 2
    assert "--set: expected KEY=VALUE" in capsys.readouterr().err


def test_bench_runtime_int8_side_by_side_with_profile(capsys: pytest.CaptureFixture) -> None:
    args = ["bench", "runtime", "--sizes", "64x64", "--iters", "2", "--warmup", "0", "--int8", "--no-eager",
            "--budget", "proposals=30,detections=5", "--compare-session", "graph_optimization=basic",
            "--profile"]  # fmt: skip
    for override in ("image_size=64", "fpn_channels=32", "head_channels=32", "box_fc_dim=64"):
        args += ["--set", override]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^\s*64x64\s+(runtime CPU \S+(?: \[[^\]]+\])?)\s+([\d.]+)\s+([\d.]+)", out, re.M)
    assert [name for name, *_ in rows] == [
        "runtime CPU fp32", "runtime CPU fp32 [graph_optimization=basic]",
        "runtime CPU int8", "runtime CPU int8 [graph_optimization=basic]",
    ]  # fmt: skip
    assert "{'proposals': 30, 'detections': 5}" in out
    # the profile: one table per model, stages of the network with their share of the kernel time
    assert out.count("| **total** |") == 2 and "box head on proposals" in out and "backbones" in out


def test_bench_runtime_times_several_budgets_side_by_side(capsys: pytest.CaptureFixture) -> None:
    args = ["bench", "runtime", "--sizes", "64x64", "--iters", "1", "--warmup", "0", "--no-eager",
            "--budget", "proposals=30,detections=5", "--budget", "fastest"]  # fmt: skip
    for override in ("image_size=64", "fpn_channels=16", "head_channels=16", "box_fc_dim=32"):
        args += ["--set", override]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^\s*64x64\s+(runtime CPU fp32 \S+)\s+[\d.]+", out, re.M)
    assert rows == ["runtime CPU fp32 proposals=30,detections=5", "runtime CPU fp32 fastest"]
