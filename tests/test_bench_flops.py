"""FLOP counting for the benchmarks: torch's formulas, backward passes and `autograd.grad` included."""

from __future__ import annotations

import re

import torch
from torch.utils.flop_counter import FlopCounterMode

from training.bench.flops import FlopCount
from training.cli import main


def test_linear_flops_are_pinned_for_forward_and_each_backward_part() -> None:
    layer = torch.nn.Linear(4, 3, bias=False)
    x = torch.randn(2, 4, requires_grad=True)
    with FlopCount() as forward:
        y = layer(x)
    assert forward.total == 2 * 2 * 4 * 3  # 2 FLOPs per multiply-add, [2,4] @ [4,3]
    with FlopCount() as input_only:
        torch.autograd.grad(y.sum(), [x], retain_graph=True)
    assert input_only.total == 48  # dL/dx = g @ W: same size of product
    with FlopCount() as both:
        y.sum().backward()
    assert both.total == 96  # dL/dx and dL/dW


def test_matches_torch_flop_counter_on_a_conv_net() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 14 * 14, 5)
    )
    x = torch.randn(2, 3, 16, 16)
    with FlopCount() as ours:
        net(x).square().sum().backward()
    with FlopCounterMode(display=False) as reference:
        net(x).square().sum().backward()
    assert ours.total == reference.get_total_flops() > 0


def test_counts_autograd_grad_on_detached_leaves_where_torch_counter_fails() -> None:
    # the MTL step's per-task gradients: heads run on detached copies of the shared features
    torch.manual_seed(0)
    trunk, head = torch.nn.Linear(6, 6), torch.nn.Linear(6, 2)
    z = trunk(torch.randn(3, 6))
    leaf = z.detach().requires_grad_()
    losses = head(leaf).sum(0)
    with FlopCount() as counter:
        for i in range(2):
            torch.autograd.grad(losses[i], [leaf], retain_graph=True)
    assert counter.total > 0


def test_bench_diagnostics_flops_order_the_measures(capsys) -> None:
    argv = ["bench", "diagnostics", "--device", "cpu", "--size", "64", "--batch", "1", "--objects", "2",
            "--channels", "16", "--flops", "--threads", "1"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out

    def gflop(name: str) -> float:
        return float(re.search(re.escape(name) + r"\s+([\d.]+)\s", out).group(1))

    fd, param, feat = gflop("FD"), gflop("GDS/GMS/CR parameter level"), gflop("GDS/GMS/CR feature level")
    assert 0 < fd <= feat < param  # parameter level = the feature-level work + T backbone VJPs
    assert gflop("FD entropy only (dL/dZ reused)") < 0.01 * fd  # a method's dL/dZ are reused
    assert "FD / GDS-GMS parameter level" in out and "GFLOP" in out
    # the cost model's inputs and its EW prediction (3 x the forward) against the count
    counted, model3f = re.search(r"EW step\s+counted ([\d.]+) GFLOP, model 3F = ([\d.]+)", out).groups()
    assert abs(float(counted) - float(model3f)) <= 0.1 * float(counted)
    kappa = float(re.search(r"kappa = ([\d.]+);", out).group(1))
    assert 1.0 <= kappa <= 7.0  # every head visited at least once, at most once per task


def test_bench_methods_flops_levels(capsys) -> None:
    argv = ["bench", "methods", "--device", "cpu", "--size", "64", "--batch", "1", "--warmup", "0",
            "--channels", "16", "--flops", "--methods", "ew", "pcgrad", "--threads", "1"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    ratio = {
        tuple(c.strip() for c in line.split("|")[1:3]): float(line.split("|")[5])
        for line in out.splitlines()
        if line.startswith("| ") and "---" not in line and "x EW" not in line
    }
    assert abs(ratio[("ew", "n/a")] - 1.0) < 0.05
    assert 1.0 < ratio[("pcgrad", "feature")] < ratio[("pcgrad", "parameter")]
