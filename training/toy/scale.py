"""Loss-scale invariance (appendix A2 of "Examining Common Paradigms in MTL"), with the project's methods.

Setting: two regression tasks on a tiny shared MLP — backbone 2 hidden layers x 20 units with
LeakyReLU, two heads of 2 layers (20 units, LeakyReLU, then 1 output) — trained full-batch with the
L1 loss on fixed synthetic data (x ∈ [−2, 2]², y1 = sin(2 x1) + x2/2, y2 = x1·x2/2). Each setup runs
twice from the same initialisation: once on the plain losses and once with task 1's loss ×10 and task
2's ×0.1 (`--scales`). Setups, each with a frozen backbone (only the heads train) and a free one:
- `ew_sgd`: EW (`training.mtl.build("ew")`) + SGD (no momentum), lr 0.02;
- `ew_adam`: EW + Adam, lr 2e-3;
- `uwo_sgd`: UW-O (weights 1/L_i, `build("uw_o")`) + SGD, lr 0.005 (its step grows like 1/L);
- `adam_per_task`: one Adam per task — AdaTask (`build("adatask")`): per-task Adam moments on the
  shared parameters, and Adam on the heads, each of which only sees its own task's gradient; lr 2e-3.
Per step it records the (unscaled) task losses, the gradient norms and the update norms of head 1,
head 2 and the backbone, and the update vectors. Invariance of a part = relative difference
‖u_scaled − u‖ / ‖u‖ of its update between the two runs, at the first step and the largest over the
run. Expected (the study's claims; `check_claims` tests them):
- Adam: a head's update is invariant (the head only sees its own task's gradient, whose scale
  Adam's normalisation removes): over the whole run with a frozen backbone; with a free backbone at
  the first step only — after that the heads see a backbone that moved differently, because
- Adam's backbone update mixes the two scaled gradients before normalising: not invariant;
- UW-O: every update is invariant (∇(cL)/(cL) = ∇L/L), frozen or free;
- one Adam per task: every update is invariant, frozen or free;
- SGD: no update is invariant (every gradient scales with its loss).
All invariances hold up to Adam's ε and UW-O's ε; both are 1e-12 here (torch's and the project's
default 1e-8 is comparable to some head gradients of this freshly initialised MLP, which would blur
the invariances by up to 7 %).
"""

from __future__ import annotations

import argparse
import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

HELP = "loss-scale invariance: which updates change when the task losses are rescaled (tiny MLP)"
DESCRIPTION = __doc__.split("\n\n", 1)[1] if __doc__ else HELP

PARTS = ("head1", "head2", "backbone")
#: Adam's ε and UW-O's ε: the invariances hold up to ε, and with PyTorch's default initialisation
#: some head gradients are ~1e-8 (Adam's default ε), so the toy uses 1e-12 to make them visible
EPS = 1e-12
#: setup -> (MTL method, its hyperparameters, optimiser rule, learning rate)
SETUPS: dict[str, tuple[str, dict, str, float]] = {
    "ew_sgd": ("ew", {}, "sgd", 0.02),
    "ew_adam": ("ew", {}, "adam", 2e-3),
    "uwo_sgd": ("uw_o", {"eps": EPS}, "sgd", 0.005),
    "adam_per_task": ("adatask", {}, "adam", 2e-3),
}
#: relative update difference below which a part counts as invariant, above which as not invariant
INVARIANT, NOT_INVARIANT = 1e-3, 5e-2


class TinyShared(nn.Module):
    """Backbone 2 -> 20 -> 20 (LeakyReLU); head i: 20 -> 20 (LeakyReLU) -> 1."""

    def __init__(self, d_in: int = 2, width: int = 20) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(d_in, width), nn.LeakyReLU(), nn.Linear(width, width),
                                      nn.LeakyReLU())  # fmt: skip
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(width, width), nn.LeakyReLU(), nn.Linear(width, 1)) for _ in range(2)
        )

    def head_losses(self, z: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        """Per-task L1 losses (mean absolute error) of the heads on features z."""
        return [(head(z)[:, 0] - y[:, i]).abs().mean() for i, head in enumerate(self.heads)]


def make_data(n: int = 128, seed: int = 0, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, 2, generator=g, dtype=dtype) * 4.0) - 2.0
    y = torch.stack([torch.sin(2 * x[:, 0]) + 0.5 * x[:, 1], 0.5 * x[:, 0] * x[:, 1]], dim=1)
    return x, y


@dataclass
class Trace:
    """Per-step records of one run: losses [S, 2], gradient/update norms [S, 3], updates per part."""

    losses: list[np.ndarray] = field(default_factory=list)
    grad_norms: list[np.ndarray] = field(default_factory=list)
    update_norms: list[np.ndarray] = field(default_factory=list)
    updates: dict[str, list[np.ndarray]] = field(default_factory=lambda: {p: [] for p in PARTS})


def _flat(params: list[nn.Parameter]) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params]) if params else torch.zeros(0)


def _grad_norm(params: list[nn.Parameter]) -> float:
    grads = [p.grad.reshape(-1) for p in params if p.grad is not None]
    return float(torch.cat(grads).norm()) if grads else 0.0


class ToyBatch(NamedTuple):
    x: torch.Tensor  # [n, 2]
    y: torch.Tensor  # [n, 2]

    def to(self, device: torch.device) -> ToyBatch:
        return ToyBatch(self.x.to(device), self.y.to(device))


class ToyModel:
    """TinyShared as the engine's `MTLModel`, with scaled task losses and an optionally frozen backbone.

    A frozen backbone computes Z without a graph (Z itself requires grad, absorbing the unused backbone
    backward) and exposes one empty shared parameter, so the methods' code path is the same and
    nothing of the backbone is ever updated.
    """

    def __init__(self, net: TinyShared, scales: tuple[float, float], frozen: bool) -> None:
        self.net, self.scales, self.frozen = net, scales, frozen
        self._frozen_shared = [nn.Parameter(torch.zeros(0, dtype=torch.float64))]

    @property
    def module(self) -> nn.Module:
        return self.net

    def features(self, batch: ToyBatch) -> torch.Tensor:
        if not self.frozen:
            return self.net.backbone(batch.x)
        with torch.no_grad():
            z = self.net.backbone(batch.x)
        return z.requires_grad_()

    def heads(self, Z: torch.Tensor, batch: ToyBatch) -> dict[str, torch.Tensor]:
        losses = self.net.head_losses(Z, batch.y)
        return {f"task{i + 1}": loss * float(s) for i, (loss, s) in enumerate(zip(losses, self.scales))}

    def shared_parameters(self) -> list[nn.Parameter]:
        return self._frozen_shared if self.frozen else list(self.net.backbone.parameters())

    def task_parameters(self) -> list[nn.Parameter]:
        return list(self.net.heads.parameters())


def run_setup(setup: str, frozen: bool, scales: tuple[float, float], steps: int, seed: int = 0) -> Trace:
    """Train one setup for `steps` full-batch steps with the trainer's step object; returns its trace
    (losses unscaled)."""
    from training.engine.assembly import build_optimizer
    from training.engine.step import TrainStep
    from training.mtl import OptimizerSpec, build
    from training.tasks import TaskSpec

    method_name, hparams, rule, lr = SETUPS[setup]
    torch.manual_seed(seed)
    net = TinyShared().double()
    batch = ToyBatch(*make_data(seed=seed))
    model = ToyModel(net, scales, frozen)
    method = build(method_name, 2, **hparams)
    opt = build_optimizer(method, model, OptimizerSpec(rule, lr=lr, momentum=0.0, eps=EPS))
    step_fn = TrainStep(model, TaskSpec.one_per_loss(("task1", "task2")), method, opt, torch.device("cpu"))
    heads = [list(h.parameters()) for h in net.heads]
    trace = Trace()
    parts = {"head1": heads[0], "head2": heads[1], "backbone": list(net.backbone.parameters())}
    for step in range(steps):
        state = step_fn.forward(batch, step, 0)
        trace.losses.append((state.ctx.losses.detach() / torch.tensor(scales, dtype=torch.float64)).numpy())
        before = {p: _flat(ps) for p, ps in parts.items()}
        report = step_fn.backward(state)
        trace.grad_norms.append(np.array([_grad_norm(parts[p]) for p in PARTS]))
        result = step_fn.update(state, report)
        if result.skipped:
            raise FloatingPointError(f"toy scale {setup}: step {step} skipped ({result.reason})")
        for p in PARTS:
            trace.updates[p].append((_flat(parts[p]) - before[p]).numpy())
        trace.update_norms.append(np.array([np.linalg.norm(trace.updates[p][-1]) for p in PARTS]))
    return trace


def relative_differences(a: Trace, b: Trace) -> dict[str, tuple[float, float]]:
    """{part: (first-step, largest-over-run) ‖u_b − u_a‖ / ‖u_a‖}; NaN for a part that never moves."""
    out = {}
    for p in PARTS:
        rel = []
        for ua, ub in zip(a.updates[p], b.updates[p]):
            na = float(np.linalg.norm(ua))
            rel.append(float(np.linalg.norm(ub - ua)) / na if na > 0 else np.nan)
        arr = np.asarray(rel)
        out[p] = (float(arr[0]), float(np.nanmax(arr)) if np.isfinite(arr).any() else np.nan)
    return out


def run_study(steps: int, scales: tuple[float, float], setups=tuple(SETUPS), progress: bool = False):
    """{(setup, mode): (unscaled trace, scaled trace, relative differences)}."""
    from tqdm import tqdm

    out = {}
    jobs = [(s, mode) for s in setups for mode in ("frozen", "free")]
    for setup, mode in tqdm(jobs, desc="toy scale", unit="setup", disable=not progress):
        a = run_setup(setup, mode == "frozen", (1.0, 1.0), steps)
        b = run_setup(setup, mode == "frozen", scales, steps)
        out[(setup, mode)] = (a, b, relative_differences(a, b))
    return out


def expected_invariance(setup: str, mode: str, part: str, when: str) -> bool:
    """The study's claim for one cell: is `part`'s update invariant (at `when` = "first" | "run")?"""
    if mode == "frozen" and part == "backbone":
        raise ValueError("a frozen backbone has no update")
    if setup in ("uwo_sgd", "adam_per_task"):
        return True
    if setup == "ew_sgd":
        return False
    # ew_adam: heads invariant; over the run only while the backbone cannot drift apart
    return part != "backbone" and (mode == "frozen" or when == "first")


def check_claims(results) -> list[str]:
    """Cells that contradict the claims (empty = every claim holds), with the measured difference."""
    bad = []
    for (setup, mode), (_, _, rel) in results.items():
        for part in PARTS:
            if mode == "frozen" and part == "backbone":
                continue
            for k, when in enumerate(("first", "run")):
                value = rel[part][k]
                if expected_invariance(setup, mode, part, when):
                    ok = value <= INVARIANT
                else:
                    ok = value >= NOT_INVARIANT
                if not ok:
                    bad.append(f"{setup} {mode} {part} {when}: relative update difference {value:.2e}")
    return bad


def table_rows(results) -> tuple[list[str], list[list[str]]]:
    header = ["setup", "backbone"] + [f"{p} {w}" for p in PARTS for w in ("first", "run")]
    rows = []
    for (setup, mode), (_, _, rel) in results.items():
        cells = []
        for p in PARTS:
            for k in range(2):
                v = rel[p][k]
                frozen_backbone = mode == "frozen" and p == "backbone"
                cells.append("\u2014" if frozen_backbone or not np.isfinite(v) else f"{v:.1e}")
        rows.append([setup, mode] + cells)
    return header, rows


def plot(results, mode: str, path: Path, scales: tuple[float, float]) -> None:
    """Rows: setups; columns: task losses, gradient norms, update norms (solid: plain, dashed: scaled)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    setups = [s for s, m in results if m == mode]
    fig = Figure(figsize=(11, 2.3 * len(setups)))
    axes = fig.subplots(len(setups), 3, squeeze=False)
    colors = {"head1": "tab:blue", "head2": "tab:orange", "backbone": "tab:green"}
    for r, setup in enumerate(setups):
        a, b, _ = results[(setup, mode)]
        for c, (title, key) in enumerate((("task losses (unscaled)", "losses"),
                                          ("gradient norm", "grad_norms"), ("update norm", "update_norms"))):
            ax = axes[r][c]
            for trace, style in ((a, "-"), (b, "--")):
                data = np.asarray(getattr(trace, key))
                names = ("task 1", "task 2") if key == "losses" else PARTS
                for k, name in enumerate(names):
                    if mode == "frozen" and name == "backbone":
                        continue
                    color = colors[PARTS[k]]
                    ax.plot(data[:, k], style, color=color, lw=1.2, label=name if style == "-" else None)
            if key != "losses":
                ax.set_yscale("log")
            ax.set_title(f"{setup} ({mode}): {title}", fontsize=9)
            ax.tick_params(labelsize=8)
            if r == 0:
                ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(f"solid: plain losses; dashed: task 1 x{scales[0]:g}, task 2 x{scales[1]:g}", fontsize=10)
    fig.tight_layout()
    from training.toy.cagrad import save_png

    save_png(fig, path, dpi=64)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/toy_scale", help="output folder (default: runs/toy_scale)")
    parser.add_argument("--steps", type=int, default=300, help="full-batch training steps (default: 300)")
    parser.add_argument(
        "--scales", default="10,0.1", help="loss factors of tasks 1 and 2 in the scaled run (default: 10,0.1)"
    )
    parser.add_argument("--no-plot", action="store_true", help="do not write the figures")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="show a progress bar (default: on)")  # fmt: skip


def _parse_scales(text: str) -> tuple[float, float]:
    try:
        values = tuple(float(t) for t in str(text).split(","))
    except ValueError:
        values = ()
    if len(values) != 2 or not all(v > 0 for v in values):
        raise ValueError(f"--scales: expected two positive factors like 10,0.1, got {text!r}")
    return values  # type: ignore[return-value]


def run(args: argparse.Namespace) -> int:
    if args.steps < 1:
        raise ValueError(f"--steps: expected a positive number of steps, got {args.steps}")
    scales = _parse_scales(args.scales)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 20-unit MLP: intra-op threads only add overhead (5x on 2 cores)
    try:
        results = run_study(args.steps, scales, progress=args.progress)
    finally:
        torch.set_num_threads(threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    header, rows = table_rows(results)
    with open(out / "invariance.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([header] + rows)
    bad = check_claims(results)
    data = {f"{s}/{m}": {p: {"first": r[p][0], "run": r[p][1]} for p in PARTS}
            for (s, m), (_, _, r) in results.items()}  # fmt: skip
    config = {"steps": args.steps, "scales": scales, "setups": SETUPS,
              "thresholds": {"invariant": INVARIANT, "not_invariant": NOT_INVARIANT}}  # fmt: skip
    (out / "invariance.json").write_text(json.dumps({"config": config, "relative_update_difference": data,
                                                     "contradicted_claims": bad}, indent=1))  # fmt: skip
    if not args.no_plot:
        for mode in ("frozen", "free"):
            plot(results, mode, out / f"scale_{mode}.png", scales)
    from training.toy.cagrad import format_table

    print(
        f"Relative update difference ‖u_scaled − u‖/‖u‖ (task 1 x{scales[0]:g}, task 2 x{scales[1]:g}; "
        f"{args.steps} steps; first step and largest over the run; <= {INVARIANT:g}: invariant)"
    )
    print(format_table(header, rows))
    print("every claim holds" if not bad else "CONTRADICTED:\n  " + "\n  ".join(bad))
    figures = "" if args.no_plot else ", scale_frozen.png, scale_free.png"
    print(f"wrote {out / 'invariance.csv'}, invariance.json{figures}")
    return 0 if not bad else 1
