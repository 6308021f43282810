"""`python -m training bench methods`: each MTL method's training-step time relative to EW.

On the real network (`training.model.AmodalRCNN`, random weights, T = 7 tasks, one per loss) and a
scene of the synthetic generator (`mtl_grasp.data.synth`, loaded through `training.data`), with the
trainer's split: Z = model.features(rgb, depth); leaves = detached Z; losses = TaskSpec.stack(
model.heads(leaves, ...)); `StepContext`; `method.backward(ctx)`; optimiser step; `after_step` when the
method needs it. A timed step is all of that (forward included), so the ratio is what training pays.
Every method starts from the same weights and the ROI samplers are seeded per step, so every method
sees the same batches and proposals. Every timed method step is paired with an EW step just before it
(same batch, same seed); the ratio is the median of the per-pair ratios over --steps pairs, after
--warmup untimed steps, so that a changing load on a shared machine cancels out of the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from training.bench.common import add_device_arguments, bench_model, machine, require_positive, torch_device
from training.bench.scenes import add_fg_rois_argument, fg_rois

HELP = "step time of every MTL method (each supported level) relative to EW on the real network"
DESCRIPTION = (
    "Times one full training step (forward, the method's backward, optimiser step, post-step update) "
    "of every registered MTL method at each level it supports on AmodalRCNN (random weights) with a "
    "synthetic scene, and prints it relative to EW's step measured in the same run. Issue 4's GPU goals: "
    "parameter level <= 2.5x EW and feature level <= 1.15x EW with 7 tasks (512x512, batch 4)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_device_arguments(parser)
    parser.add_argument("--size", type=int, default=256, help="square input size (default 256)")
    parser.add_argument("--batch", type=int, default=2, help="batch size (default 2)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per method (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    parser.add_argument("--methods", nargs="+", default=None, metavar="NAME",
                        help="methods to time (default: every registered method); EW is always timed")
    parser.add_argument("--levels", nargs="+", choices=("parameter", "feature"),
                        default=("parameter", "feature"),
                        help="levels to time for methods that have levels (default: both)")
    parser.add_argument("--channels", type=int, default=None,
                        help="fpn_channels = head_channels of the model (default: ModelConfig's, 256)")
    parser.add_argument("--batched-vjp", action="store_true",
                        help="per-task parameter gradients with one batched VJP (StepContext.batched_vjp)")
    add_fg_rois_argument(parser)
    parser.add_argument("--flops", action="store_true",
                        help="count the FLOPs of one step per method (training.bench.flops) instead of "
                             "timing: a device-independent ratio to EW (matmul/conv work only; "
                             "element-wise and memory-bound work is not counted)")


def _batch(torch, device, size: int, batch: int):
    """`batch` synthetic scenes written to a temporary folder and read back by the training dataset."""
    from mtl_grasp.data.synth import generate_dataset
    from training.data.dataset import MetaGraspNetDataset, collate_batch

    with tempfile.TemporaryDirectory(prefix="bench_methods_") as root:
        generate_dataset(root, batch, image_size=size, seed=0, split_fractions=None)
        dataset = MetaGraspNetDataset(root, image_size=size)
        rgb, depth, targets = collate_batch([dataset[i] for i in range(batch)])
    moved = [{k: (v.to(device) if hasattr(v, "to") else v) for k, v in t.items()} for t in targets]
    return rgb.to(device), depth.to(device), moved


def run(args: argparse.Namespace) -> int:
    import torch

    from training.mtl import NonFiniteError, OptimizerSpec, StepContext, build, get, names
    from training.mtl.optimizers import build_optimizer
    from training.tasks import TaskSpec

    require_positive(args, "size", "batch", "steps", "channels")
    planted = fg_rois(args)
    if args.warmup < 0:
        raise ValueError(f"--warmup: expected an integer >= 0, got {args.warmup}")
    device = torch_device(args)
    selected = args.methods or names()
    for n in selected:
        get(n)  # unknown names fail here, with a suggestion, before any timing
    model = bench_model(device, args.channels, planted, image_size=args.size)
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    spec = TaskSpec.one_per_loss()
    T = len(spec)
    rgb, depth, targets = _batch(torch, device, args.size, args.batch)
    shared, heads = model.shared_parameters(), model.task_parameters()
    opt_spec = OptimizerSpec(name="sgd", lr=1e-5, momentum=0.9)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def losses_of(Z):
        return spec.task_losses(model.heads(Z, (args.size, args.size), targets))  # list: cheaper task grads

    def make(name: str, level: str):
        method = build(name, T, level=level).to(device)
        opt = method.configure_optimizer(shared, heads, opt_spec)
        if opt is None:
            opt = build_optimizer(opt_spec, shared + heads + list(method.method_parameters()))
        return method, opt

    def one_step(method, opt, step: int, seed: int) -> tuple[float, str]:
        """Seconds (FLOPs with --flops) of one full training step (forward included) and a note if it
        was skipped."""
        if args.flops:
            from training.bench.flops import FlopCount

            with FlopCount() as counter:
                _, note = timed_step(method, opt, step, seed)
            return float(counter.total), note
        return timed_step(method, opt, step, seed)

    def timed_step(method, opt, step: int, seed: int) -> tuple[float, str]:
        opt.zero_grad(set_to_none=True)
        for p in method.method_parameters():
            p.grad = None
        note = ""
        sync()
        start = time.perf_counter()
        torch.manual_seed(seed)  # same ROI samples (and method draws) for both steps of a pair
        Z = model.features(rgb, depth)
        leaves = [z.detach().requires_grad_() for z in Z]
        losses = losses_of(leaves)

        def reevaluate() -> torch.Tensor:
            devices = [device] if device.type == "cuda" else []
            with torch.no_grad(), torch.random.fork_rng(devices=devices):
                return torch.stack(losses_of(model.features(rgb, depth)))

        ctx = StepContext(losses=losses, features=Z, feature_leaves=leaves, shared_params=shared,
                          task_params=heads, step=step, epoch=step, reevaluate=reevaluate,
                          batched_vjp=args.batched_vjp, task_names=spec.names)  # fmt: skip
        try:
            method.backward(ctx)
            opt.step()
            if method.needs_post_step:
                method.after_step(ctx)
        except NonFiniteError as exc:
            note = f"skipped steps ({exc})"
            ctx.release()
        sync()
        return time.perf_counter() - start, note

    ew, ew_opt = make("ew", "parameter")
    for step in range(args.warmup):
        one_step(ew, ew_opt, step, seed=step)

    def time_method(name: str, level: str) -> tuple[float, float, float, str]:
        """(method seconds, adjacent EW seconds, median ratio, note): each timed method step is paired
        with an EW step right before it on the same batch and seed, so a load change on a shared
        machine affects both sides of a ratio alike."""
        model.load_state_dict(initial)
        method, opt = make(name, level)
        note = ""
        try:
            for step in range(args.warmup):
                one_step(method, opt, step, seed=step)
            times, ew_times = [], []
            for k in range(1 if args.flops else args.steps):
                seed = 1000 + k
                ew_times.append(one_step(ew, ew_opt, args.warmup + k, seed)[0])
                seconds, n = one_step(method, opt, args.warmup + k, seed)
                times.append(seconds)
                note = note or n
        except RuntimeError as exc:  # a method that cannot run on this network (CosReg)
            return float("nan"), float("nan"), float("nan"), f"cannot run: {str(exc).split('(')[0].strip()}"
        ratios = [t / e for t, e in zip(times, ew_times)]
        return statistics.median(times), statistics.median(ew_times), statistics.median(ratios), note

    unit, scale = ("GFLOP", 1e-9) if args.flops else ("s", 1.0)
    rows = []
    for name in selected:
        cls = get(name)
        levels = [lv.value for lv in cls.levels if lv.value in args.levels] if cls.levels else ["n/a"]
        for level in levels:
            seconds, ew_s, ratio, note = time_method(name, "parameter" if level == "n/a" else level)
            rows.append((name, level, seconds * scale, ew_s * scale, ratio, note))
            print(f"  {name:<13} {level:<9} {seconds * scale:8.3f} {unit} (EW {ew_s * scale:6.3f} {unit})  "
                  f"{ratio:5.2f}x EW {note}", flush=True)

    P = sum(p.numel() for p in shared)
    print(f"\nmachine: {machine(device)}")
    what = ("FLOPs of one step (training.bench.flops: matmul/conv only)" if args.flops
            else f"median of {args.steps} step(s)")
    print(f"input {args.batch} x {args.size}x{args.size}, T = {T} tasks, shared parameters P = {P:,}, "
          f"{what} after {args.warmup} warm-up, batched_vjp={args.batched_vjp}")
    ew_all = [r[3] for r in rows if r[3] == r[3]]
    if ew_all:
        print(f"EW step: median {statistics.median(ew_all):.3f} {unit} over the paired EW steps\n")
    has_note = any(r[5] for r in rows)
    note_col = " note |" if has_note else ""
    print(f"| method | level | step ({unit}) | paired EW step ({unit}) | x EW |{note_col}")
    print(f"|---|---|---|---|---|{'---|' if has_note else ''}")
    for name, level, seconds, ew_s, ratio, note in rows:
        tail = f" {note} |" if has_note else ""
        print(f"| {name} | {level} | {seconds:.3f} | {ew_s:.3f} | {ratio:.2f} |{tail}")
    return 0
