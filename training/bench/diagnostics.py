"""`python -m training bench diagnostics`: the cost of FD and of GDS/GMS relative to one EW training step.

All on the real network (`training.model.AmodalRCNN`, random weights, T = 7 tasks) and a synthetic scene,
with the trainer's split (Z = features, heads on detached leaves, `StepContext` built from the list of
task losses `TaskSpec.task_losses(named)`). Each diagnostic is timed from a fresh context after the
forward pass (which the training step has already paid for):
- EW step: forward + the one weighted backward through heads and backbone (`EW.backward`);
- FD: `ctx.feature_grads()` (T backward passes through the heads' activations, each visiting only its
  own task's heads, no weight gradients) + the entropy;
- FD, stacked losses: the same from a context built from the stacked `[T]` tensor (for comparison:
  each ∂L_i/∂Z then goes through the stack's backward, which sends zeros through every head);
- FD entropy only: when a gradient method already computed ∂L_i/∂Z in this step (cached in the context);
- GDS/GMS parameter level: ∂L_i/∂Z, then T vector-Jacobian products through the backbone + the Gram matrix;
- GDS/GMS feature level: ∂L_i/∂Z + the Gram matrix.
"""

from __future__ import annotations

import argparse
import statistics
import time

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


def run(args: argparse.Namespace) -> int:
    import torch

    from training.diagnostics import DiagnosticsConfig, GradientSimilarity, compute_diagnostics
    from training.mtl import StepContext, build
    from training.tasks import TaskSpec

    require_positive(args, "channels", "size", "batch", "objects", "repeat")
    planted = fg_rois(args)
    device = torch_device(args)
    model = bench_model(device, args.channels, planted, image_size=args.size)
    spec = TaskSpec.one_per_loss()
    T = len(spec)
    rgb, depth, targets = random_scene(args.size, args.batch, args.objects, device)
    shared, heads = model.shared_parameters(), model.task_parameters()

    def new_ctx(stacked: bool = False) -> StepContext:
        model.zero_grad(set_to_none=True)
        torch.manual_seed(0)  # the ROI samplers draw from the global RNG: same ROIs every time
        Z = model.features(rgb, depth)
        leaves = [z.detach().requires_grad_() for z in Z]
        named = model.heads(leaves, (args.size, args.size), targets)
        losses = spec.stack(named) if stacked else spec.task_losses(named)  # the trainer: the list
        return StepContext(losses=losses, features=Z, feature_leaves=leaves, shared_params=shared,
                           task_params=heads, task_names=spec.names)  # fmt: skip

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    # CPU: process CPU time, robust to other jobs sharing the cores (the work runs in this process);
    # CUDA: wall time around synchronisations
    clock = time.perf_counter if device.type == "cuda" else time.process_time

    def timed(prepare, measure) -> float:
        """Median seconds of `measure(state)` where `state = prepare()` is built untimed each run
        (with --flops: the FLOPs of one run)."""
        if args.flops:
            from training.bench.flops import FlopCount

            state = prepare()
            with FlopCount() as counter:
                measure(state)
            if isinstance(state, StepContext):
                state.release()
            return float(counter.total)
        times = []
        for i in range(args.warmup + args.repeat):
            state = prepare()
            sync()
            start = clock()
            measure(state)
            sync()
            if i >= args.warmup:
                times.append(clock() - start)
            if isinstance(state, StepContext):
                state.release()
            del state
        return statistics.median(times)

    ew = build("ew", T)
    fd_cfg = DiagnosticsConfig(fd=True, gradient_similarity=False, fd_window=args.fd_window)
    param_cfg = DiagnosticsConfig(fd=False, levels=("parameter",))
    feat_cfg = DiagnosticsConfig(fd=False, levels=("feature",))

    def cached_ctx() -> StepContext:
        ctx = new_ctx()
        ctx.feature_grads()
        return ctx

    rows = [
        ("EW step (forward + backward)", timed(lambda: None, lambda _: ew.backward(new_ctx()))),
        ("FD", timed(new_ctx, lambda c: compute_diagnostics(c, fd_cfg))),
        ("FD, context from stacked losses",
         timed(lambda: new_ctx(stacked=True), lambda c: compute_diagnostics(c, fd_cfg))),
        ("FD entropy only (dL/dZ reused)", timed(cached_ctx, lambda c: compute_diagnostics(c, fd_cfg))),
        ("GDS/GMS/CR parameter level", timed(new_ctx, lambda c: compute_diagnostics(c, param_cfg))),
        ("GDS/GMS/CR feature level", timed(new_ctx, lambda c: compute_diagnostics(c, feat_cfg))),
        ("Gram + GDS/GMS only (dL/dZ reused)",
         timed(cached_ctx, lambda c: GradientSimilarity.from_gradients(c.feature_grads()))),
    ]  # fmt: skip
    probe = new_ctx()
    m = probe.feature_grads().shape[1]
    P = sum(p.numel() for p in shared)
    H = sum(p.numel() for p in heads if p.requires_grad)
    probe.release()
    del probe

    print(f"machine: {machine(device)}")
    print(f"input {args.batch} x {args.size}x{args.size}, {args.objects} objects/image, T = {T} tasks, "
          f"|Z| = {m:,} per task, shared parameters P = {P:,}, head parameters {H:,}, "
          f"FD window {args.fd_window}")  # fmt: skip
    ew_time = rows[0][1]
    unit = "GFLOP" if args.flops else "wall [s]" if device.type == "cuda" else "CPU [s]"
    scale = 1e-9 if args.flops else 1.0
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
    if args.flops:
        _print_cost_model(torch, model, spec, rgb, depth, targets, args.size, times)
    return 0


def _print_cost_model(torch, model, spec, rgb, depth, targets, size: int, flops: dict[str, float]) -> None:
    """h (heads' share of the forward) and κ (head traversals of the T per-task passes), and what the
    cost model of docs/mtl.md predicts from them, next to the counts above."""
    from training.bench.flops import FlopCount

    T = len(spec)
    torch.manual_seed(0)
    with FlopCount() as backbone:
        Z = model.features(rgb, depth)
    leaves = [z.detach().requires_grad_() for z in Z]
    with FlopCount() as head_count:
        model.heads(leaves, (size, size), targets)
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
