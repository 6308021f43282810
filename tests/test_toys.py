"""`python -m training toy cagrad|scale`: the paradigms study's toys, reduced (full tables: the CLI)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from training.cli import main
from training.toy import cagrad as C
from training.toy import scale as S


def _official_losses(x: torch.Tensor) -> torch.Tensor:
    """The toy's losses transcribed from the CAGrad paper's definition, with torch ops (for autograd)."""
    x1, x2 = x[0], x[1]
    a1 = (0.5 * (-x1 - 7) - torch.tanh(-x2)).abs().clamp_min(C.LOWER).log() + 6
    a2 = (0.5 * (-x1 + 3) + torch.tanh(-x2) + 2).abs().clamp_min(C.LOWER).log() + 6
    c1, c2 = torch.tanh(0.5 * x2).clamp_min(0), torch.tanh(-0.5 * x2).clamp_min(0)
    q1 = ((-x1 + 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    q2 = ((-x1 - 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    return torch.stack([a1 * c1 + q1 * c2, a2 * c1 + q2 * c2])


def test_cagrad_toy_closed_form_matches_autograd_and_the_minimum() -> None:
    rng = np.random.default_rng(0)
    for x in rng.uniform(-10, 10, (100, 2)):
        losses, J = C.losses_and_jacobian(*x)
        xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        ref = _official_losses(xt)
        Jt = torch.stack([torch.autograd.grad(ref[i], xt, retain_graph=True)[0] for i in range(2)])
        np.testing.assert_allclose(losses, ref.detach().numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(J, Jt.numpy(), rtol=1e-10, atol=1e-12)
        assert C.average_loss(*x) == pytest.approx(float(ref.detach().mean()), abs=1e-12)
    (x1, x2), f_star = C.average_minimum()
    assert x1 == 0.0 and x2 == pytest.approx(-8.3552, abs=2e-4)  # the official plot's star
    _, J = C.losses_and_jacobian(x1, x2)
    assert np.abs(J.mean(0)).max() < 1e-6  # stationary for the average
    grid = np.linspace(-10, 10, 201)
    assert C.average_loss(*np.meshgrid(grid, grid)).min() >= f_star - 1e-12


def test_cagrad_toy_adam_is_torch_adam() -> None:
    x = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([x], lr=0.05)
    ours, y = C.Adam(0.05), np.array([1.0, -2.0])
    rng = np.random.default_rng(1)
    for _ in range(50):
        d = rng.standard_normal(2) * 10 ** rng.uniform(-3, 2)
        x.grad = torch.from_numpy(d.copy())
        opt.step()
        y = ours.step(y, d)
    np.testing.assert_allclose(y, x.detach().numpy(), rtol=1e-13, atol=1e-15)


def test_cagrad_toy_table_reduced(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cagrad"
    args = ["toy", "cagrad", "--budget", "400", "--lrs", "5,1", "--out", str(out), "--workers", "1",
            "--no-progress", "--plot-lr", "gd=1,adam=1"]  # fmt: skip
    assert main(args) == 0
    with open(out / "table.csv") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["optimizer", "method", "5", "1"]
    table = {(r[0], r[1]): r[2:] for r in rows[1:]}
    assert list(table) == [(o, m) for o in ("gd", "adam") for m in ("ew", "pcgrad", "cagrad")]
    # pinned (deterministic: float64, seeded PCGrad order): Adam with EW/CAGrad reaches the minimum of the
    # average from all three official points; PCGrad stops on the Pareto set (its projection cancels)
    assert table[("adam", "ew")][1] == "146" and table[("adam", "cagrad")][1] == "168"
    assert table[("gd", "cagrad")][1] == "186"
    assert all(cell.startswith("\u2013") for cell in table[("gd", "pcgrad")])
    data = json.loads((out / "results.json").read_text())
    assert len(data["runs"]) == 2 * 3 * 2 * 3 and data["config"]["budget"] == 400
    stuck = [r for r in data["runs"] if r["optimizer"] == "gd" and r["method"] == "pcgrad"]
    assert all(r["status"] in ("stalled", "budget", "diverged") for r in stuck)
    # ...somewhere on the Pareto set {x2 = x2*, |x1| <= 7}, away from the average's minimum x1 = 0
    x2_star = data["config"]["x_star"][1]
    assert any(abs(r["final"][1] - x2_star) < 0.1 and 1.0 < abs(r["final"][0]) < 7 for r in stuck)
    assert (out / "trajectories.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "budget 400" in printed and "optimizer" in printed
    assert main(["toy", "cagrad", "--lrs", "0", "--out", str(out)]) == 2  # named error, no traceback
    assert "--lrs" in capsys.readouterr().err


def test_scale_toy_invariance_claims(tmp_path: Path, capsys) -> None:
    """The study's claims on 40 steps: Adam's heads, UW-O and one Adam per task everywhere, SGD nowhere."""
    assert main(["toy", "scale", "--steps", "40", "--out", str(tmp_path), "--no-progress"]) == 0
    data = json.loads((tmp_path / "invariance.json").read_text())
    assert data["contradicted_claims"] == []
    rel = data["relative_update_difference"]
    for part in ("head1", "head2"):
        assert rel["ew_adam/frozen"][part]["run"] < 1e-3  # Adam: head updates invariant
        assert rel["ew_adam/free"][part]["first"] < 1e-3
        assert rel["ew_sgd/frozen"][part]["first"] > 0.5  # SGD: scaled by 10 and 0.1
    assert rel["ew_adam/free"]["backbone"]["first"] > 0.1  # Adam mixes the scaled task gradients
    for setup in ("uwo_sgd", "adam_per_task"):
        for part in S.PARTS:
            assert rel[f"{setup}/free"][part]["run"] < 1e-3, (setup, part)
    assert rel["ew_sgd/free"]["backbone"]["first"] > 0.5
    for mode in ("frozen", "free"):
        assert (tmp_path / f"scale_{mode}.png").stat().st_size > 0
    assert "every claim holds" in capsys.readouterr().out


def test_scale_toy_claim_checker_can_fail() -> None:
    """check_claims reports a cell whose measurement contradicts the claim (the test above can fail)."""
    rel = {p: (0.5, 0.5) for p in S.PARTS}
    bad = S.check_claims({("uwo_sgd", "free"): (None, None, rel)})
    assert len(bad) == 6 and all("uwo_sgd free" in b for b in bad)
    assert S.check_claims({("ew_sgd", "free"): (None, None, rel)}) == []
