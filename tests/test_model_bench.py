"""`python -m training bench model` runs end to end at a tiny size and reports what it promises."""

from __future__ import annotations

import re

from training.cli import main


def test_bench_model_prints_parameters_flops_and_times(capsys):
    args = [
        "bench", "model", "--device", "cpu", "--size", "64", "--batch", "1", "--flops-size", "64",
        "--flops-batch", "1", "--repeat", "1", "--warmup", "0", "--fpn-channels", "16", "--objects", "2",
    ]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    shared = int(re.search(r"shared \(-> Z\)\s+([\d,]+)", out).group(1).replace(",", ""))
    total = int(re.search(r"total\s+([\d,]+)", out).group(1).replace(",", ""))
    assert 22_000_000 < shared < total  # two ResNet18 trunks dominate the shared part
    for line in ("visible_mask", "amodal_mask", "occlusion", "training forward (7 losses)", "backward"):
        assert line in out, line
    assert float(re.search(r"training forward\+backward\s+([\d.]+) ms", out).group(1)) > 0


def test_bench_model_rejects_bad_sizes(capsys):
    assert main(["bench", "model", "--size", "0", "--no-flops"]) == 2
    assert "--size: expected a positive integer, got 0" in capsys.readouterr().err
