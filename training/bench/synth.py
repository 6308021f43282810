"""`python -m training bench synth`: physics scene generation speed (scenes/s per core) and where the
time goes (settling, rendering, amodal renders, labels + sensor model, writing).

Generates the same scenes three times in one run: as shipped, without skipping the amodal render of
objects nothing can cover, and with whole-image amodal renders instead of windows around each object,
so the two speed-ups are measured as ratios on one machine state (the labels are identical, tested).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from dataclasses import replace

HELP = "scene generation speed: scenes/s per core and the time per stage"
DESCRIPTION = __doc__ or HELP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, default=256, help="square image size (default 256)")
    parser.add_argument("--objects", type=int, default=20, help="articles dropped per scene (default 20)")
    parser.add_argument("--views", type=int, default=1, help="viewpoints per scene (default 1)")
    parser.add_argument("--scenes", type=int, default=8, help="scenes per variant (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes (default 1: a per-core number)")  # fmt: skip
    parser.add_argument("--no-ablations", action="store_true", help="time the shipped settings only")


def _variants(args: argparse.Namespace):
    from mtl_grasp.data.physics import SceneSettings

    base = SceneSettings(image_size=args.size, views=args.views, objects=(args.objects, args.objects))
    yield "as shipped", base
    if not args.no_ablations:
        yield "amodal render for every object", replace(base, amodal_skip_unoccluded=False)
        yield "whole-image amodal renders", replace(base, amodal_windows=False)


def run(args: argparse.Namespace) -> int:
    from training.bench.common import require_positive

    require_positive(args, "size", "objects", "views", "scenes", "workers")
    from mtl_grasp.data.physics import generate_physics_dataset

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {load:.2f}; "
          f"{args.scenes} scenes x {args.views} view(s) at {args.size}x{args.size}, {args.objects} objects, "
          f"{args.workers} worker(s)")  # fmt: skip
    base_amodal = None
    for name, settings in _variants(args):
        with tempfile.TemporaryDirectory(prefix="bench_synth_") as out:
            r = generate_physics_dataset(out, args.scenes, seed=args.seed, workers=args.workers,
                                         settings=settings, split_fractions=None)  # fmt: skip
        busy = sum(r.timings.values())
        per = {k: 1000 * v / args.scenes for k, v in r.timings.items()}
        base_amodal = base_amodal or r.timings["amodal"]
        n = args.scenes
        print(f"\n{name}: {n / busy:.2f} scenes/s per core ({n / r.elapsed_s:.2f} scenes/s wall), "
              f"{r.objects / n:.1f} objects/scene, {r.amodal_renders / n:.1f} amodal renders/scene, "
              f"amodal time x{r.timings['amodal'] / base_amodal:.2f} of as shipped")  # fmt: skip
        print(
            "  ms/scene: "
            + ", ".join(f"{k} {v:.0f} ({100 * v / sum(per.values()):.0f}%)" for k, v in per.items())
        )
    return 0
