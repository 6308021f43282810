"""`python -m training bench diagnostics`: the cost of FD and of GDS/GMS relative to one EW training step.

All on the real network (`training.model.AmodalRCNN`, random weights, T = 7 tasks) and a synthetic scene,
run by the trainer's step object (`training.engine.step.TrainStep`): its forward builds the step's
`StepContext` (Z = features, heads on detached leaves, one loss per task), and each diagnostic is the
trainer's `DiagnosticsHook.on_gradients(ctx)`, timed from a fresh context after the forward pass (which
the training step has already paid for):
- EW step: the step's forward + EW's backward (the one weighted backward through heads and backbone);
- FD: `ctx.feature_grads()` (T backward passes through the heads' activations, each visiting only its
  own task's heads, no weight gradients) + the entropy;
- FD entropy only: when a gradient method already computed ∂L_i/∂Z in this step (cached in the context);
- GDS/GMS parameter level: ∂L_i/∂Z, then T vector-Jacobian products through the backbone + the Gram matrix;
- GDS/GMS feature level: ∂L_i/∂Z + the Gram matrix.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from training.bench.common import add_device_arguments, bench_model, machine, require_positive, torch_device
from training.bench.scenes import add_fg_rois_argument, fg_rois, random_scene

HELP = "cost of FD and GDS/GMS (parameter and feature level) relative to one EW step, T = 7"
DESCRIPTION = (
    "Times the diagnostics of training.diagnostics on AmodalRCNN (random weights, synthetic scene) with "
    "the trainer's feature/head split, and prints each cost relative to one EW training step and FD's "
    "cost relative to GDS/GMS's (goal: below 15%). Medians over --repeat runs after --warmup runs."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_device_arguments(parser)
    parser.add_argument("--size", type=int, default=256, help="square input size (default 256)")
    parser.add_argument("--batch", type=int, default=2, help="batch size (default 2)")
    parser.add_argument("--objects", type=int, default=6, help="objects per synthetic image (default 6)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per measurement (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    parser.add_argument("--fd-window", type=int, default=1, help="FD neighbourhood window (default 1)")
    parser.add_argument("--channels", type=int, default=None,
                        help="fpn_channels = head_channels of the model (default: ModelConfig's, 256)")
    add_fg_rois_argument(parser)
    parser.add_argument("--flops", action="store_true",
                        help="count FLOPs (matmul/conv, training.bench.flops) once per measure instead of "
                             "timing: device-independent ratios")


class _Timer:
    """Median seconds (or FLOPs with --flops) of `measure(state)`, `state = prepare()` built untimed.

    CPU: process CPU time, robust to other jobs sharing the cores (the work runs in this process);
    CUDA: wall time around synchronisations.
    """

    def __init__(self, args: argparse.Namespace, device: Any) -> None:
        import torch

        self.args, self.device, self.torch = args, device, torch
        self.clock = time.perf_counter if device.type == "cuda" else time.process_time

    def _sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def __call__(self, prepare: Callable[[], Any], measure: Callable[[Any], Any]) -> float:
        if self.args.flops:
            from training.bench.flops import FlopCount

            state = prepare()
            with FlopCount() as counter:
                measure(state)
            _release(state)
            return float(counter.total)
        times = []
        for i in range(self.args.warmup + self.args.repeat):
            state = prepare()
            self._sync()
            start = self.clock()
            measure(state)
            self._sync()
            if i >= self.args.warmup:
                times.append(self.clock() - start)
            _release(state)
            del state
        return statistics.median(times)


def _release(state: Any) -> None:
    if hasattr(state, "release"):
        state.release()


def _measures(step: Any, batch: Any, timed: _Timer, fd_window: int) -> list[tuple[str, float]]:
    """(name, cost) of the EW step and of each diagnostic, all from the step object's contexts."""
    import torch

    from training.diagnostics import DiagnosticsConfig, DiagnosticsHook, GradientSimilarity

    def new_ctx() -> Any:
        torch.manual_seed(0)  # the ROI samplers draw from the global RNG: same ROIs every time
        return step.forward(batch, 0, 0).ctx

    def cached_ctx() -> Any:
        ctx = new_ctx()
        ctx.feature_grads()
        return ctx

    def ew_step(_: Any) -> None:
        torch.manual_seed(0)
        step.backward(step.forward(batch, 0, 0))

    fd_cfg = DiagnosticsConfig(every=1, fd=True, gradient_similarity=False, fd_window=fd_window)
    fd = DiagnosticsHook(fd_cfg)
    param = DiagnosticsHook(DiagnosticsConfig(every=1, fd=False, levels=("parameter",)))
    feat = DiagnosticsHook(DiagnosticsConfig(every=1, fd=False, levels=("feature",)))
    return [
        ("EW step (forward + backward)", timed(lambda: None, ew_step)),
        ("FD", timed(new_ctx, fd.on_gradients)),
        ("FD entropy only (dL/dZ reused)", timed(cached_ctx, fd.on_gradients)),
        ("GDS/GMS/CR parameter level", timed(new_ctx, param.on_gradients)),
        ("GDS/GMS/CR feature level", timed(new_ctx, feat.on_gradients)),
        ("Gram + GDS/GMS only (dL/dZ reused)",
         timed(cached_ctx, lambda c: GradientSimilarity.from_gradients(c.feature_grads()))),
    ]  # fmt: skip


def _print_ratios(rows: list[tuple[str, float]], unit: str, scale: float) -> None:
    ew_time = rows[0][1]
    print(f"\n{'measure':<38} {unit:>10} {'x EW step':>10}")
    for name, t in rows:
        print(f"{name:<38} {t * scale:>10.3f} {t / ew_time:>10.2f}")
    print()
    times = dict(rows)
    ratio = times["FD"] / times["GDS/GMS/CR parameter level"]
    verdict = "met" if ratio < 0.15 else "NOT met"
    print(f"FD / GDS-GMS parameter level = {100 * ratio:.1f}%  (goal < 15%: {verdict})")
    ratio = times["FD"] / times["GDS/GMS/CR feature level"]
    print(f"FD / GDS-GMS feature level = {100 * ratio:.1f}%  (both need the same T passes through the heads)")
    reused = times["Gram + GDS/GMS only (dL/dZ reused)"]
    if reused > 0:
        ratio = times["FD entropy only (dL/dZ reused)"] / reused
        print(f"with per-task gradients already computed: FD / GDS-GMS = {100 * ratio:.0f}%")


def run(args: argparse.Namespace) -> int:
    import torch

    from training.data.batch import RGBDBatch
    from training.engine.assembly import build_optimizer
    from training.engine.step import TrainStep
    from training.families.amodal import AmodalMTLModel
    from training.mtl import OptimizerSpec, build
    from training.tasks import TaskSpec

    require_positive(args, "channels", "size", "batch", "objects", "repeat")
    device = torch_device(args)
    model = AmodalMTLModel(bench_model(device, args.channels, fg_rois(args), image_size=args.size))
    spec = TaskSpec.one_per_loss()
    ew = build("ew", len(spec))
    step = TrainStep(model, spec, ew, build_optimizer(ew, model, OptimizerSpec(lr=1e-5)), device)
    batch = RGBDBatch(*random_scene(args.size, args.batch, args.objects, device))
    rows = _measures(step, batch, _Timer(args, device), args.fd_window)
    probe = step.forward(batch, 0, 0).ctx
    m = probe.feature_grads().shape[1]
    probe.release()
    P = sum(p.numel() for p in model.shared_parameters())
    H = sum(p.numel() for p in model.task_parameters())
    print(f"machine: {machine(device)}")
    print(f"input {args.batch} x {args.size}x{args.size}, {args.objects} objects/image, "
          f"T = {len(spec)} tasks, |Z| = {m:,} per task, shared parameters P = {P:,}, head parameters {H:,}, "
          f"FD window {args.fd_window}")  # fmt: skip
    unit = "GFLOP" if args.flops else "wall [s]" if device.type == "cuda" else "CPU [s]"
    _print_ratios(rows, unit, 1e-9 if args.flops else 1.0)
    if args.flops:
        _print_cost_model(torch, model.net, spec, batch, dict(rows))
    return 0


def _print_cost_model(torch: Any, net: Any, spec: Any, batch: Any, flops: dict[str, float]) -> None:
    """h (heads' share of the forward) and κ (head traversals of the T per-task passes), and what the
    cost model of docs/mtl.md predicts from them, next to the counts above."""
    from training.bench.flops import FlopCount

    T = len(spec)
    torch.manual_seed(0)
    with FlopCount() as backbone:
        Z = net.features(batch.rgb, batch.depth)
    leaves = [z.detach().requires_grad_() for z in Z]
    with FlopCount() as head_count:
        net.heads(leaves, batch.image_size, batch.targets)
    F_b, F_h = float(backbone.total), float(head_count.total)
    h, kappa = F_h / (F_b + F_h), flops["FD"] / F_h
    vjp = (flops["GDS/GMS/CR parameter level"] - flops["GDS/GMS/CR feature level"]) / T
    print(f"\ncost model (docs/mtl.md): forward = backbone {F_b / 1e9:.1f} + heads {F_h / 1e9:.1f} GFLOP, "
          f"h = {h:.3f}; G_Z = kappa * heads with kappa = {kappa:.2f}; one backbone VJP "
          f"{vjp / 1e9:.1f} GFLOP = {vjp / F_b:.2f} x its forward")
    print(f"  EW step       counted {flops['EW step (forward + backward)'] / 1e9:.1f} GFLOP, "
          f"model 3F = {3 * (F_b + F_h) / 1e9:.1f}")
    feature = 1 + kappa * h / 3
    print(f"  feature level 1 + kappa*h/3 = {feature:.2f}x EW (goal <= 1.15: needs kappa*h <= 0.45)")
    param = (1 + (kappa + 2) * h + 2 * T * (1 - h)) / 3
    print(f"  parameter level (1 + (kappa+2)h + 2T(1-h))/3 = {param:.2f}x EW (goal <= 2.5 with T = 7)")
    fd = kappa * h / (kappa * h + 2 * T * (1 - h))
    print(f"  FD / GDS-GMS parameter level kappa*h / (kappa*h + 2T(1-h)) = {100 * fd:.1f}%")
