"""`python -m training synth`: write bin-picking scenes in MetaGraspNet's simulated layout."""

from __future__ import annotations

import argparse

HELP = "generate bin-picking scenes (pybullet physics by default) in the MetaGraspNet layout"
DESCRIPTION = (
    "Writes OUT/scene<N>/<v>_rgb.png, <v>.npz (depth in cm with NaN holes, instances_objects, "
    "instances_semantic, seg_masks_single), <v>_order.json, <v>_camera_params.json and (physics) "
    "<v>_scene.json with the camera and object poses, plus OUT/splits.json and OUT/categories.json. "
    "The physics engine drops 5-40 articles into a bin with pybullet, lets them settle and renders them "
    "from --views viewpoints on a hemisphere (view 0 top-down); the analytic engine is a fast 2.5-D "
    "fixture. Same arguments -> byte-identical files, for any --workers. See docs/data.md."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--scenes", type=int, required=True, help="number of scenes")
    parser.add_argument(
        "--engine",
        choices=("physics", "analytic"),
        default="physics",
        help="physics (pybullet, default) or analytic (fast 2.5-D fixture)",
    )
    parser.add_argument(
        "--image-size", type=int, default=256, help="square image size in pixels (default 256)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--views", type=int, default=1, help="viewpoints per scene, view 0 top-down (default 1)"
    )
    parser.add_argument("--first-scene", type=int, default=0, help="index of the first scene (default 0)")
    parser.add_argument(
        "--objects",
        type=int,
        nargs=2,
        metavar=("MIN", "MAX"),
        default=None,
        help="articles dropped per scene, inclusive range (physics; default 5 40)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="parallel worker processes (physics; default: the CPU cores)",
    )
    parser.add_argument(
        "--preview",
        default=None,
        metavar="FILE.png",
        help="also write a contact sheet (RGB | depth | visible | amodal) of a few views",
    )
    parser.add_argument("--preview-views", type=int, default=4, help="views on the contact sheet (default 4)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _print_report(report, args: argparse.Namespace) -> None:
    n = len(report.scene_dirs)
    t = report.timings
    busy = sum(t.values())
    print(
        f"wrote {n} scenes x {args.views} views at {args.image_size}x{args.image_size} to {args.out} in "
        f"{report.elapsed_s:.1f} s with {report.workers} worker(s): {n / report.elapsed_s:.2f} scenes/s, "
        f"{n / max(busy, 1e-9):.2f} scenes/s per core"
    )
    print("  time per stage: " + ", ".join(f"{k} {100 * v / max(busy, 1e-9):.0f}%" for k, v in t.items()))
    print(
        f"  {report.objects} objects in bins ({report.objects / n:.1f} per scene), {report.removed} removed "
        f"outside the bin, {report.amodal_renders} amodal renders, {len(report.reasons)} piles drawn again"
    )


def run(args: argparse.Namespace) -> int:
    import time

    from mtl_grasp.data.generate import generate

    start = time.perf_counter()
    result = generate(
        args.out,
        args.scenes,
        engine=args.engine,
        image_size=args.image_size,
        seed=args.seed,
        views=args.views,
        first_scene=args.first_scene,
        objects=tuple(args.objects) if args.objects else None,
        workers=args.workers,
        progress=not args.no_progress,
    )
    if args.engine == "physics":
        _print_report(result, args)
    else:
        elapsed = time.perf_counter() - start
        print(
            f"wrote {len(result)} scenes x {args.views} views at {args.image_size}x{args.image_size} to "
            f"{args.out} in {elapsed:.2f} s ({1000 * elapsed / len(result):.1f} ms/scene)"
        )
    if args.preview:
        from mtl_grasp.data.preview import write_preview

        print(f"preview: {write_preview(args.out, args.preview, views=args.preview_views)}")
    return 0
