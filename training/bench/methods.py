"""`python -m training bench methods`: each MTL method's training-step time relative to EW.

On the real network (`training.model.AmodalRCNN`, random weights, T = 7 tasks, one per loss) and a
simulated bin scene (`mtl_grasp.data.physics`, loaded through `training.data`). A timed
step is one call of the trainer's step object (`training.engine.step.TrainStep`, built with
`training.engine.assembly.build_optimizer`): forward, the method's backward, optimiser step and
`after_step` when the method needs it, so the ratio is what training pays.
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
from dataclasses import dataclass
from typing import Any

from training.bench.common import add_device_arguments, bench_model, machine, require_positive, torch_device
from training.bench.scenes import add_fg_rois_argument, fg_rois

HELP = "step time of every MTL method (each supported level) relative to EW on the real network"
DESCRIPTION = (
    "Times one full training step (forward, the method's backward, optimiser step, post-step update) "
    "of every registered MTL method at each level it supports on AmodalRCNN (random weights) with a "
    "simulated bin scene, and prints it relative to EW's step measured in the same run. Issue 4's GPU goals: "
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


def _batch(device: Any, size: int, batch: int) -> Any:
    """`batch` simulated bin scenes (pybullet, 5-40 articles) written to a temporary folder and read back
    by the training dataset."""
    from mtl_grasp.data.physics import generate_physics_dataset
    from training.data.dataset import MetaGraspNetDataset, collate_batch

    with tempfile.TemporaryDirectory(prefix="bench_methods_") as root:
        generate_physics_dataset(root, batch, image_size=size, seed=0, workers=1, split_fractions=None)
        dataset = MetaGraspNetDataset(root, image_size=size)
        return collate_batch([dataset[i] for i in range(batch)]).to(device)


@dataclass
class _Row:
    name: str
    level: str
    value: float  # seconds (FLOPs with --flops) of the method's step
    ew: float  # of the paired EW step
    ratio: float  # median of the per-pair ratios
    note: str = ""


class _Bench:
    """The fixed parts of the benchmark: model (reset to the same weights per method), batch, spec."""

    def __init__(self, args: argparse.Namespace) -> None:
        import torch

        from training.families.amodal import AmodalMTLModel
        from training.mtl import OptimizerSpec
        from training.tasks import TaskSpec

        self.args, self.torch = args, torch
        self.device = torch_device(args)
        net = bench_model(self.device, args.channels, fg_rois(args), image_size=args.size)
        self.model = AmodalMTLModel(net)
        self.initial = {k: v.detach().clone() for k, v in net.state_dict().items()}
        self.spec = TaskSpec.one_per_loss()
        self.batch = _batch(self.device, args.size, args.batch)
        self.opt_spec = OptimizerSpec(name="sgd", lr=1e-5, momentum=0.9)

    def step(self, name: str, level: str) -> Any:
        """The trainer's step object for method `name` at `level` (fresh method and optimiser)."""
        from training.engine.assembly import build_optimizer
        from training.engine.step import TrainStep
        from training.mtl import build

        method = build(name, len(self.spec), level=level).to(self.device)
        optimizer = build_optimizer(method, self.model, self.opt_spec)
        return TrainStep(
            self.model, self.spec, method, optimizer, self.device, batched_vjp=self.args.batched_vjp
        )

    def measure(self, step: Any, k: int, seed: int) -> tuple[float, str]:
        """Seconds (FLOPs with --flops) of one call of `step` and a note if the step was skipped."""
        if self.args.flops:
            from training.bench.flops import FlopCount

            with FlopCount() as counter:
                result = self._call(step, k, seed)
            return float(counter.total), self._note(result)
        self._sync()
        start = time.perf_counter()
        result = self._call(step, k, seed)
        self._sync()
        return time.perf_counter() - start, self._note(result)

    def _call(self, step: Any, k: int, seed: int) -> Any:
        self.torch.manual_seed(seed)  # same ROI samples for both steps of a pair
        return step(self.batch, k, k)

    @staticmethod
    def _note(result: Any) -> str:
        return f"skipped steps ({result.reason})" if result.skipped else ""

    def _sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def time_method(self, ew: Any, name: str, level: str) -> _Row:
        """Each timed method step is paired with an EW step right before it on the same batch and seed,
        so a load change on a shared machine affects both sides of a ratio alike."""
        args = self.args
        self.model.net.load_state_dict(self.initial)
        note, times, ew_times = "", [], []
        try:
            step = self.step(name, level)
            for k in range(args.warmup):
                self.measure(step, k, seed=k)
            for k in range(1 if args.flops else args.steps):
                ew_times.append(self.measure(ew, args.warmup + k, 1000 + k)[0])
                seconds, n = self.measure(step, args.warmup + k, 1000 + k)
                times.append(seconds)
                note = note or n
        except RuntimeError as exc:  # a method that cannot run on this network (CosReg)
            nan = float("nan")
            return _Row(name, level, nan, nan, nan, f"cannot run: {str(exc).split('(')[0].strip()}")
        ratios = [t / e for t, e in zip(times, ew_times)]
        return _Row(name, level, statistics.median(times), statistics.median(ew_times),
                    statistics.median(ratios), note)  # fmt: skip


def _print_table(args: argparse.Namespace, bench: _Bench, rows: list[_Row]) -> None:
    unit, scale = ("GFLOP", 1e-9) if args.flops else ("s", 1.0)
    P = sum(p.numel() for p in bench.model.shared_parameters())
    print(f"\nmachine: {machine(bench.device)}")
    what = ("FLOPs of one step (training.bench.flops: matmul/conv only)" if args.flops
            else f"median of {args.steps} step(s)")  # fmt: skip
    print(f"input {args.batch} x {args.size}x{args.size}, T = {len(bench.spec)} tasks, shared parameters "
          f"P = {P:,}, {what} after {args.warmup} warm-up, batched_vjp={args.batched_vjp}")
    ew_all = [r.ew for r in rows if r.ew == r.ew]
    if ew_all:
        print(f"EW step: median {statistics.median(ew_all) * scale:.3f} {unit} over the paired EW steps\n")
    has_note = any(r.note for r in rows)
    note_col = " note |" if has_note else ""
    print(f"| method | level | step ({unit}) | paired EW step ({unit}) | x EW |{note_col}")
    print(f"|---|---|---|---|---|{'---|' if has_note else ''}")
    for r in rows:
        tail = f" {r.note} |" if has_note else ""
        print(f"| {r.name} | {r.level} | {r.value * scale:.3f} | {r.ew * scale:.3f} | {r.ratio:.2f} |{tail}")


def run(args: argparse.Namespace) -> int:
    from training.mtl import registry

    require_positive(args, "size", "batch", "steps", "channels")
    fg_rois(args)
    if args.warmup < 0:
        raise ValueError(f"--warmup: expected an integer >= 0, got {args.warmup}")
    selected = args.methods or registry.names()
    for n in selected:
        registry.get(n)  # unknown names fail here, with a suggestion, before any timing
    bench = _Bench(args)
    ew = bench.step("ew", "parameter")
    for k in range(args.warmup):
        bench.measure(ew, k, seed=k)
    unit, scale = ("GFLOP", 1e-9) if args.flops else ("s", 1.0)
    rows = []
    for name in selected:
        levels = [lv.value for lv in registry.levels(name) if lv.value in args.levels]
        for level in levels if registry.levels(name) else ["n/a"]:
            row = bench.time_method(ew, name, "parameter" if level == "n/a" else level)
            row.level = level
            rows.append(row)
            print(f"  {name:<13} {level:<9} {row.value * scale:8.3f} {unit} "
                  f"(EW {row.ew * scale:6.3f} {unit})  {row.ratio:5.2f}x EW {row.note}", flush=True)
    _print_table(args, bench, rows)
    return 0
