"""The CAGrad two-objective toy (Liu et al., NeurIPS 2021) with the project's EW, PCGrad and CAGrad.

Problem (re-implemented from the definition in the official repository's `toy.py`,
Cranial-XIX/CAGrad): x = (x1, x2) ∈ R², two losses
    a1 = ½(−x1 − 7) − tanh(−x2),            a2 = ½(−x1 + 3) + tanh(−x2) + 2,
    f1ˡ = log max(|a1|, 5e-6) + 6,           f2ˡ = log max(|a2|, 5e-6) + 6,
    q1 = ((x1 − 7)² + 0.1(x2 + 8)²)/10 − 20,  q2 = ((x1 + 7)² + 0.1(x2 + 8)²)/10 − 20,
    c1 = max(tanh(x2/2), 0),                 c2 = max(tanh(−x2/2), 0),
    L_i = c1·f_iˡ + c2·q_i.
For x2 < 0 the average loss is c2·((x1² + 49)/10 + 0.01(x2 + 8)² − 20): its minimum is at x1 = 0,
x2 ≈ −8.3552 (`average_minimum`), in the middle of the Pareto set {x1 ∈ [−7, 7], x2 ≈ −8.3552}. The
official initial points are (−8.5, 7.5), (−8.5, −5) and (9, 9); the official run uses Adam, lr 0.001,
100 000 iterations, CAGrad with c = 0.5 and the rescale ÷(1 + c).

Study: for plain gradient descent (x ← x − lr·d) and Adam (torch's update rule, β = (0.9, 0.999),
ε = 1e-8) × {EW, PCGrad, CAGrad} × the learning rates {10, 5, 1, 0.5, 0.1, 0.05, 0.01, 0.005, 0.001},
count the iterations until the iterate first reaches the minimum of the average loss, i.e.
F̄(x) − F̄* ≤ `tol` (default 1e-3: |x1| ≲ 0.1 on the Pareto set, whose ends are 4.9 above F̄*), from
each official initial point; a run stops as "diverged" (non-finite or |x| > 1e4), "stalled" (the
iterate moved less than 1e-12 for 1000 iterations) or "budget" (default 100 000 iterations, the
official run's length). The table cell is the largest count over the three initial points, "–" when
one of them does not reach the minimum (with how many did).

The directions come from the project's methods (`training.mtl.build`): EW's weights on the task
gradients, PCGrad's and CAGrad's `combine(G)` on the 2 x 2 task-gradient matrix. They use the sum
scale of this project (EW = g1 + g2, twice the official toy's mean), so for plain GD a learning rate
here equals twice that learning rate with the official mean-scaled directions; Adam is unaffected.
CAGrad runs with c = 0.5, rescale 2 (÷(1 + c)), the official toy's settings.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

HELP = "CAGrad 2-D toy: iterations to the average loss's minimum, GD/Adam x EW/PCGrad/CAGrad x lr"
DESCRIPTION = __doc__.split("\n\n", 1)[1] if __doc__ else HELP

LOWER = 5e-6
INITS: tuple[tuple[float, float], ...] = ((-8.5, 7.5), (-8.5, -5.0), (9.0, 9.0))
LRS: tuple[float, ...] = (10.0, 5.0, 1.0, 0.5, 0.1, 0.05, 0.01, 0.005, 0.001)
METHODS: dict[str, dict[str, float]] = {"ew": {}, "pcgrad": {}, "cagrad": {"c": 0.5, "rescale": 2}}
OPTIMIZERS = ("gd", "adam")
STALL_STEP, STALL_ITERS, DIVERGED = 1e-12, 1000, 1e4


def losses_and_jacobian(x1: float, x2: float) -> tuple[np.ndarray, np.ndarray]:
    """Task losses `[2]` and task gradients `[2 tasks, 2 coordinates]` at (x1, x2) (closed form).

    Gradients follow the clamps' subgradient convention of torch (0 where a clamp is active).
    """
    th = math.tanh(-x2)
    sech2 = 1.0 - th * th  # d tanh(-x2)/dx2 = -sech²(x2); sech² is even
    a1, a2 = 0.5 * (-x1 - 7.0) - th, 0.5 * (-x1 + 3.0) + th + 2.0
    fl1, fl2 = math.log(max(abs(a1), LOWER)) + 6.0, math.log(max(abs(a2), LOWER)) + 6.0
    # d log|a| = a'/a where |a| > LOWER (a1' = (-½, sech²), a2' = (-½, -sech²))
    dl1 = (-0.5 / a1, sech2 / a1) if abs(a1) > LOWER else (0.0, 0.0)
    dl2 = (-0.5 / a2, -sech2 / a2) if abs(a2) > LOWER else (0.0, 0.0)
    t_half = math.tanh(0.5 * x2)
    c1, c2 = max(t_half, 0.0), max(-t_half, 0.0)
    dc = 0.5 * (1.0 - t_half * t_half)  # d tanh(x2/2)/dx2
    dc1, dc2 = (dc if t_half > 0 else 0.0), (-dc if t_half < 0 else 0.0)
    yy = 0.1 * (x2 + 8.0) ** 2
    q1, q2 = ((x1 - 7.0) ** 2 + yy) / 10.0 - 20.0, ((x1 + 7.0) ** 2 + yy) / 10.0 - 20.0
    dq_y = 0.02 * (x2 + 8.0)
    losses = np.array([c1 * fl1 + c2 * q1, c1 * fl2 + c2 * q2])
    J = np.array(
        [
            [c1 * dl1[0] + c2 * (x1 - 7.0) / 5.0, c1 * dl1[1] + fl1 * dc1 + c2 * dq_y + q1 * dc2],
            [c1 * dl2[0] + c2 * (x1 + 7.0) / 5.0, c1 * dl2[1] + fl2 * dc1 + c2 * dq_y + q2 * dc2],
        ]
    )
    return losses, J


def average_loss(x1: np.ndarray | float, x2: np.ndarray | float) -> np.ndarray:
    """F̄ = (L1 + L2)/2, vectorised over arrays of points (for contours)."""
    x1, x2 = np.asarray(x1, dtype=np.float64), np.asarray(x2, dtype=np.float64)
    th = np.tanh(-x2)
    fl1 = np.log(np.maximum(np.abs(0.5 * (-x1 - 7.0) - th), LOWER)) + 6.0
    fl2 = np.log(np.maximum(np.abs(0.5 * (-x1 + 3.0) + th + 2.0), LOWER)) + 6.0
    c1, c2 = np.maximum(np.tanh(0.5 * x2), 0.0), np.maximum(np.tanh(-0.5 * x2), 0.0)
    yy = 0.1 * (x2 + 8.0) ** 2
    q1, q2 = ((x1 - 7.0) ** 2 + yy) / 10.0 - 20.0, ((x1 + 7.0) ** 2 + yy) / 10.0 - 20.0
    return 0.5 * (c1 * (fl1 + fl2) + c2 * (q1 + q2))


def average_minimum() -> tuple[tuple[float, float], float]:
    """(x*, F̄*): x1* = 0 by symmetry, x2* by a bounded scalar minimisation on [−20, 0]."""
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(lambda y: float(average_loss(0.0, y)), bounds=(-20.0, 0.0), method="bounded",
                          options={"xatol": 1e-12})  # fmt: skip
    return (0.0, float(res.x)), float(res.fun)


class GradientDescent:
    """x ← x − lr·d."""

    def __init__(self, lr: float) -> None:
        self.lr = lr

    def step(self, x: np.ndarray, d: np.ndarray) -> np.ndarray:
        return x - self.lr * d


class Adam:
    """torch.optim.Adam's update (no weight decay, no amsgrad) on a numpy vector."""

    def __init__(self, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.m = self.v = None
        self.t = 0

    def step(self, x: np.ndarray, d: np.ndarray) -> np.ndarray:
        if self.m is None:
            self.m, self.v = np.zeros_like(x), np.zeros_like(x)
        self.t += 1
        self.m = self.b1 * self.m + (1.0 - self.b1) * d
        self.v = self.b2 * self.v + (1.0 - self.b2) * d * d
        denom = np.sqrt(self.v) / math.sqrt(1.0 - self.b2**self.t) + self.eps
        return x - (self.lr / (1.0 - self.b1**self.t)) * self.m / denom


def make_optimizer(name: str, lr: float) -> GradientDescent | Adam:
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {name!r}")
    return GradientDescent(lr) if name == "gd" else Adam(lr)


class ProjectMethod:
    """Direction of one of the project's MTL methods for a task-gradient matrix (2 tasks)."""

    def __init__(self, name: str, **hparams: float) -> None:
        from training.mtl import GradientCombination, build

        self.name = name
        self.method = build(name, 2, **hparams)
        self.combines = isinstance(self.method, GradientCombination)

    def __call__(self, losses: np.ndarray, J: np.ndarray) -> np.ndarray:
        import torch

        G = torch.from_numpy(J)
        if self.combines:
            return self.method.combine(G).direction.detach().double().cpu().numpy()
        w = self.method.weights(torch.from_numpy(losses))  # loss weighting: Σ w_i g_i
        return (w.to(G.dtype) @ G).numpy()


@dataclass
class RunResult:
    """One (optimizer, method, lr, initial point) run."""

    optimizer: str
    method: str
    lr: float
    init: tuple[float, float]
    iterations: int | None  # iterations until F̄ − F̄* ≤ tol; None = not reached
    status: str  # reached | diverged | stalled | budget
    final: tuple[float, float]
    final_gap: float
    trajectory: np.ndarray | None = field(default=None, repr=False)


def run_one(
    optimizer: str, method: str, lr: float, init: Sequence[float], budget: int, tol: float,
    f_star: float, record: bool = False,
) -> RunResult:  # fmt: skip
    """Iterate from `init` until F̄(x) − F̄* ≤ tol (checked before each step) or a stop condition."""
    import torch

    torch.manual_seed(0)  # PCGrad's task order comes from torch's RNG (irrelevant for T = 2)
    direction = ProjectMethod(method, **METHODS[method])
    opt = make_optimizer(optimizer, lr)
    x = np.asarray(init, dtype=np.float64)
    path = [x.copy()] if record else None
    status, reached, still = "budget", None, 0
    for it in range(budget + 1):
        losses, J = losses_and_jacobian(float(x[0]), float(x[1]))
        gap = float(losses.mean()) - f_star
        if gap <= tol:
            status, reached = "reached", it
            break
        if it == budget:
            break
        new = opt.step(x, direction(losses, J))
        if not np.all(np.isfinite(new)) or float(np.abs(new).max()) > DIVERGED:
            status = "diverged"
            break
        still = still + 1 if float(np.abs(new - x).max()) < STALL_STEP else 0
        x = new
        if path is not None:
            path.append(x.copy())
        if still >= STALL_ITERS:
            status = "stalled"
            break
    final_gap = float(average_loss(x[0], x[1])) - f_star
    return RunResult(optimizer, method, lr, (float(init[0]), float(init[1])), reached, status,
                     (float(x[0]), float(x[1])), final_gap, np.asarray(path) if record else None)  # fmt: skip


def cell(results: Sequence[RunResult]) -> str:
    """Largest iteration count over the initial points, or '–' (with how many reached)."""
    counts = [r.iterations for r in results]
    if all(c is not None for c in counts):
        return str(max(counts))
    done = sum(c is not None for c in counts)
    return "\u2013" if done == 0 else f"\u2013 ({done}/{len(counts)})"


def table(results: Sequence[RunResult], lrs: Sequence[float]) -> tuple[list[str], list[list[str]]]:
    """Header and rows (one per optimizer x method) of the iteration table."""
    header = ["optimizer", "method"] + [f"{lr:g}" for lr in lrs]
    rows = []
    for opt in OPTIMIZERS:
        for m in METHODS:
            mine = [r for r in results if r.optimizer == opt and r.method == m]
            if not mine:
                continue
            rows.append([opt, m] + [cell([r for r in mine if r.lr == lr]) for lr in lrs])
    return header, rows


def format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows])


def save_png(fig, path: Path, dpi: int) -> None:
    """Save a figure as a small PNG (64-colour palette: a few tens of kB for the docs)."""
    from PIL import Image

    fig.savefig(path, dpi=dpi)
    with Image.open(path) as img:
        small = img.convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def plot_trajectories(runs: dict[tuple[str, str], list[RunResult]], x_star, path: Path) -> None:
    """Rows: optimizers, columns: methods; contours of F̄ with the trajectories from each init."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    grid = np.linspace(-10.5, 10.5, 241)
    X, Y = np.meshgrid(grid, grid)
    F = average_loss(X, Y)
    opts = [o for o in OPTIMIZERS if any(k[0] == o for k in runs)]
    fig = Figure(figsize=(10.5, 3.5 * len(opts)))
    axes = fig.subplots(len(opts), len(METHODS), squeeze=False)
    colors = ("tab:red", "tab:blue", "tab:green")
    for r, opt in enumerate(opts):
        for c, m in enumerate(METHODS):
            ax = axes[r][c]
            ax.contour(X, Y, F, levels=20, cmap="viridis", linewidths=0.8)
            ax.plot([-7, 7], [x_star[1]] * 2, color="0.6", lw=4, zorder=1, label="Pareto set")
            ax.plot(*x_star, marker="*", ms=12, color="k", zorder=5)
            for k, res in enumerate(runs.get((opt, m), [])):
                traj = res.trajectory
                ax.plot(traj[:, 0], traj[:, 1], color=colors[k % 3], lw=1.5, zorder=3)
                ax.plot(*res.init, marker="o", ms=6, color=colors[k % 3], zorder=4)
            lr = runs[(opt, m)][0].lr if runs.get((opt, m)) else math.nan
            ax.set_title(f"{'GD' if opt == 'gd' else 'Adam'} lr={lr:g}, {m}", fontsize=10)
            ax.set_xlim(-10.5, 10.5)
            ax.set_ylim(-10.5, 10.5)
            ax.set_aspect("equal")
    fig.tight_layout()
    save_png(fig, path, dpi=72)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/toy_cagrad", help="output folder (default: runs/toy_cagrad)")
    parser.add_argument("--budget", type=int, default=100_000,
                        help="iterations per run before it counts as not reached (default: 100000, "
                        "the official run's length)")  # fmt: skip
    parser.add_argument("--tol", type=float, default=1e-3,
                        help="reached when F̄(x) − F̄* <= tol (default: 1e-3)")  # fmt: skip
    parser.add_argument("--lrs", default=",".join(f"{lr:g}" for lr in LRS),
                        help="comma-separated learning rates (default: the study's nine)")  # fmt: skip
    parser.add_argument("--optimizers", default="gd,adam", help="comma-separated: gd, adam")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated: ew, pcgrad, cagrad")
    parser.add_argument("--plot-lr", default="gd=0.1,adam=0.001",
                        help="learning rate whose trajectories are plotted, per optimizer "
                        "(default: gd=0.1,adam=0.001; adam 0.001 is the official run)")  # fmt: skip
    parser.add_argument("--no-plot", action="store_true", help="do not write trajectories.png")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="processes running the 162 independent runs (default: the CPU count, at "
                        "most 8); the results do not depend on it")  # fmt: skip
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="show a progress bar over the runs (default: on)")  # fmt: skip


def _csv_list(text: str, name: str, allowed: Sequence[str] | None = None) -> list[str]:
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise ValueError(f"--{name}: expected a comma-separated list, got {text!r}")
    if allowed is not None:
        bad = [t for t in items if t not in allowed]
        if bad:
            raise ValueError(f"--{name}: unknown {bad}; expected some of {list(allowed)}")
    return items


def parse_settings(args: argparse.Namespace) -> dict:
    """Validated settings from the command line (errors name the option)."""
    if args.workers < 1:
        raise ValueError(f"--workers: expected a positive number of processes, got {args.workers}")
    if args.budget < 1:
        raise ValueError(f"--budget: expected a positive number of iterations, got {args.budget}")
    if not args.tol > 0:
        raise ValueError(f"--tol: expected a positive loss gap, got {args.tol}")
    try:
        lrs = [float(t) for t in _csv_list(args.lrs, "lrs")]
        plot = {k: float(v) for k, v in (p.split("=") for p in _csv_list(args.plot_lr, "plot-lr"))}
    except ValueError as exc:
        raise ValueError(f"--lrs/--plot-lr: expected numbers (plot-lr as gd=0.1,adam=0.001): {exc}") from None
    if any(not lr > 0 for lr in lrs):
        raise ValueError(f"--lrs: expected positive learning rates, got {lrs}")
    opts = _csv_list(args.optimizers, "optimizers", OPTIMIZERS)
    methods = _csv_list(args.methods, "methods", list(METHODS))
    return {"lrs": lrs, "plot": plot, "optimizers": opts, "methods": methods,
            "budget": args.budget, "tol": args.tol}  # fmt: skip


def _single_thread() -> None:
    """Worker initialiser: 2-element tensors gain nothing from intra-op threads, which only add overhead."""
    import torch

    torch.set_num_threads(1)


def run_study(settings: dict, progress: bool = False, workers: int = 1) -> list[RunResult]:
    """Every (optimizer, method, lr, init) run, in `workers` processes; trajectories are kept for the
    plotted learning rates. Results are in job order whatever the number of workers (runs are
    independent and seeded)."""
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    _, f_star = average_minimum()
    jobs = [(o, m, lr, init, settings["budget"], settings["tol"], f_star, settings["plot"].get(o) == lr)
            for o in settings["optimizers"] for m in settings["methods"] for lr in settings["lrs"]
            for init in INITS]  # fmt: skip
    bar = tqdm(total=len(jobs), desc="toy cagrad", unit="run", disable=not progress)
    if workers <= 1:
        out = []
        for job in jobs:
            out.append(run_one(*job))
            bar.update()
    else:
        with ProcessPoolExecutor(workers, initializer=_single_thread) as pool:
            futures = [pool.submit(run_one, *job) for job in jobs]
            out = []
            for f in futures:
                out.append(f.result())
                bar.update()
    bar.close()
    return out


def write_outputs(results: Sequence[RunResult], settings: dict, out: Path, plot: bool) -> str:
    """table.csv, results.json, table.md (and trajectories.png); returns the printed table."""
    out.mkdir(parents=True, exist_ok=True)
    x_star, f_star = average_minimum()
    header, rows = table(results, settings["lrs"])
    with open(out / "table.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([header] + rows)
    records = [{k: v for k, v in asdict(r).items() if k != "trajectory"} for r in results]
    config = {**settings, "inits": INITS, "x_star": x_star, "f_star": f_star,
              "method_hparams": METHODS, "adam": {"betas": (0.9, 0.999), "eps": 1e-8}}  # fmt: skip
    (out / "results.json").write_text(json.dumps({"config": config, "runs": records}, indent=1))
    (out / "table.md").write_text(markdown_table(header, rows) + "\n")
    if plot:
        chosen = {}
        for r in results:
            if r.trajectory is not None:
                chosen.setdefault((r.optimizer, r.method), []).append(r)
        if chosen:
            plot_trajectories(chosen, x_star, out / "trajectories.png")
    return format_table(header, rows)


def run(args: argparse.Namespace) -> int:
    import torch

    settings = parse_settings(args)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: intra-op threads only add overhead (5x on 2 cores)
    try:
        results = run_study(settings, progress=args.progress, workers=args.workers)
    finally:
        torch.set_num_threads(threads)
    text = write_outputs(results, settings, Path(args.out), plot=not args.no_plot)
    x_star, f_star = average_minimum()
    print(f"CAGrad toy: iterations until F̄(x) − F̄* <= {settings['tol']:g} from all of {list(INITS)} "
          f"(x* = ({x_star[0]:g}, {x_star[1]:.4f}), F̄* = {f_star:.4f}; budget {settings['budget']}; "
          "'–' = not reached by every initial point, (k/3) = reached by k)")  # fmt: skip
    print(text)
    print(f"wrote {Path(args.out) / 'table.csv'}, results.json, table.md"
          + ("" if args.no_plot else ", trajectories.png"))  # fmt: skip
    return 0
