"""`python -m training synth`: write synthetic bin-picking scenes in MetaGraspNet's simulated layout."""

from __future__ import annotations

import argparse
import time

HELP = "generate synthetic bin-picking scenes in the MetaGraspNet layout"
DESCRIPTION = (
    "Writes OUT/scene<N>/<v>_rgb.png, <v>.npz (depth in cm with NaN holes, instances_objects, "
    "instances_semantic, seg_masks_single), <v>_order.json and <v>_camera_params.json, plus "
    "OUT/splits.json (train/val/test by scene). Same arguments -> byte-identical files. "
    "See docs/data.md."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--scenes", type=int, required=True, help="number of scenes")
    parser.add_argument(
        "--image-size", type=int, default=256, help="square image size in pixels (default 256)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--views", type=int, default=1, help="viewpoints per scene (default 1)")
    parser.add_argument("--first-scene", type=int, default=0, help="index of the first scene (default 0)")


def run(args: argparse.Namespace) -> int:
    from mtl_grasp.data.synth import generate_dataset

    start = time.perf_counter()
    scenes = generate_dataset(
        args.out,
        scenes=args.scenes,
        image_size=args.image_size,
        seed=args.seed,
        views=args.views,
        first_scene=args.first_scene,
    )
    elapsed = time.perf_counter() - start
    print(
        f"wrote {len(scenes)} scenes x {args.views} views at {args.image_size}x{args.image_size} "
        f"to {args.out} in {elapsed:.2f} s ({1000 * elapsed / len(scenes):.1f} ms/scene)"
    )
    return 0
