"""`python -m training bench train`: end-to-end training throughput (images/s) and step time vs EW.

Unlike `bench methods` (one step in isolation), this times the real `Trainer` loop: DataLoader with
workers and the training dataset over simulated bin scenes (pybullet, generated into a temporary
folder), the step, the LR schedule and the logging hooks (metrics.csv + TensorBoard) — what a user's run
pays per step. Every method starts from the same weights and sees the same batches. Medians over the
timed steps.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

HELP = "training-loop throughput (images/s) and step-time ratios vs EW for a few methods"
DESCRIPTION = (
    "Times the full Trainer loop (data loading, step, schedule, CSV/TensorBoard logging) for EW and a "
    "few MTL methods on simulated bin scenes and prints images/s and each method's median step time "
    "relative to EW's, measured in the same run. Defaults: CPU-sized; on a GPU use e.g. "
    "--device cuda --size 512 --batch 4."
)
DEFAULT_METHODS = ("ew", "uw", "famo", "pcgrad", "mgda", "cagrad")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--size", type=int, default=128, help="square input size (default 128)")
    parser.add_argument("--batch", type=int, default=2, help="global batch size (default 2)")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per method (default 4)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed first steps (default 1)")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), metavar="NAME",
                        help=f"methods (default: {' '.join(DEFAULT_METHODS)}); EW always runs")  # fmt: skip
    parser.add_argument("--level", choices=("parameter", "feature"), default="feature",
                        help="level of gradient-combination methods (default: feature)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers (default 1)")
    parser.add_argument("--amp", choices=("bf16", "none"), default="bf16", help="CUDA autocast")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--model", nargs="*", default=[], metavar="key=value",
                        help="ModelConfig overrides, e.g. fpn_channels=64")  # fmt: skip


def _time_method(args: argparse.Namespace, name: str, root: str, out: Path) -> list[float]:
    import torch

    from training import families
    from training.config import config_from_dict
    from training.engine.assembly import build_run, build_trainer, seed_everything, select_device
    from training.engine.hooks import Hook, MetricsCSV, TensorBoard

    overrides = [f"model.{kv}" for kv in args.model]
    cfg = config_from_dict({
        "seed": 0, "run_dir": str(out / name),
        "data": {"root": root, "num_workers": args.workers, "augment": True},
        "model": {"image_size": args.size},
        "mtl": {"name": name, "level": args.level},
        "train": {"steps": args.warmup + args.steps, "batch_size": args.batch, "device": args.device,
                  "amp": args.amp, "progress": False, "checkpoint_every": 0},
        "schedule": {"warmup_steps": 0, "warmup_factor": 1.0},
    }, overrides)  # fmt: skip
    device = select_device(cfg.train.device)
    seed_everything(0)
    times: list[float] = []

    class Clock(Hook):
        def on_start(self, loop: Any) -> None:
            self.t = time.perf_counter()

        def after_step(self, loop: Any, result: Any) -> None:
            if device.type == "cuda":
                torch.cuda.synchronize()
            now = time.perf_counter()
            times.append(now - self.t)  # includes waiting for the next batch
            self.t = now

    family = families.get()
    names = list(family.loss_names)
    hooks = [Clock(), MetricsCSV(names, names, []), TensorBoard(names)]
    Path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
    build_trainer(build_run(cfg, device, family, hooks=hooks, evaluate=False)).fit()
    return times[args.warmup :]


def run(args: argparse.Namespace) -> int:
    import torch

    from mtl_grasp.data.physics import generate_physics_dataset

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    methods = ["ew"] + [m for m in args.methods if m != "ew"]
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        root = str(Path(tmp) / "data")
        scenes = max(4, args.batch * (args.warmup + args.steps))  # one epoch covers the run
        generate_physics_dataset(root, scenes, image_size=args.size, seed=0, split_fractions={"train": 1.0})
        rows = []
        for name in methods:
            t = statistics.median(_time_method(args, name, root, Path(tmp) / "runs"))
            rows.append((name, t))
            print(f"  {name}: {t * 1e3:.1f} ms/step", flush=True)  # partial results survive a timeout
    if args.device != "cpu" and torch.cuda.is_available():
        device = "cuda: " + torch.cuda.get_device_name()
    else:
        device = f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    print(f"bench train: {device}, torch {torch.__version__}, size {args.size}, batch {args.batch}, "
          f"level {args.level}, workers {args.workers}, median of {args.steps} steps")  # fmt: skip
    ew = rows[0][1]
    print(f"{'method':<10} {'step ms':>10} {'images/s':>10} {'x EW':>7}")
    for name, t in rows:
        print(f"{name:<10} {t * 1e3:>10.1f} {args.batch / t:>10.2f} {t / ew:>7.2f}")
    return 0
