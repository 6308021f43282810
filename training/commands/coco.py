"""`python -m training coco`: convert a MetaGraspNet-layout folder to UOAIS-style COCO JSON."""

from __future__ import annotations

import argparse

HELP = "convert MetaGraspNet scenes to COCO JSON (UOAIS field names), optionally one split"
DESCRIPTION = (
    "Reads every view under --root (simulated, real or synthetic layout) and writes a COCO JSON with "
    "amodal bbox/segmentation, visible_mask, visible_bbox, occluded_mask, occluded_rate. --split picks "
    "the scenes of one split from --splits (default ROOT/splits.json, else deterministic splits made "
    "from the scene names). --make-splits FILE writes such a split file for the scenes under --root "
    "(keep it with the data or in the repository). See docs/data.md."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, help="dataset folder (e.g. dataset_sim)")
    parser.add_argument("--out", help="output JSON file")
    parser.add_argument("--split", help="split name (train, val, test, ...); default: all views")
    parser.add_argument("--splits", help="split file (default ROOT/splits.json if present)")
    parser.add_argument(
        "--make-splits", metavar="FILE", help="write a split file for the scenes under --root"
    )
    parser.add_argument(
        "--fractions",
        default="train=0.8,val=0.1,test=0.1",
        help="with --make-splits: name=fraction,... (default train=0.8,val=0.1,test=0.1)",
    )
    parser.add_argument(
        "--class-aware",
        action="store_true",
        help="use MetaGraspNet category ids instead of the single class 'object'",
    )
    parser.add_argument(
        "--min-visible-area",
        type=int,
        default=1,
        help="drop objects with fewer visible pixels (default 1: drop only fully hidden objects)",
    )
    parser.add_argument("--require-amodal", action="store_true", help="skip views without amodal labels")


def _fractions(text: str) -> dict[str, float]:
    out = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--fractions: expected name=fraction,..., found {text!r}") from None
    return out


def run(args: argparse.Namespace) -> int:
    from mtl_grasp.data.coco import build_coco, write_coco
    from mtl_grasp.data.reader import discover_views, scene_names
    from mtl_grasp.data.splits import make_splits, save_splits

    if not args.out and not args.make_splits:
        raise ValueError("coco: give --out FILE (the COCO JSON) and/or --make-splits FILE")
    if args.make_splits:
        views = discover_views(args.root, require_amodal=args.require_amodal)
        splits = make_splits(scene_names(views), _fractions(args.fractions))
        save_splits(args.make_splits, splits)
        sizes = ", ".join(f"{k} {len(v)}" for k, v in splits.splits.items())
        print(f"wrote {args.make_splits}: {sizes} scenes")
    if args.out:
        coco = build_coco(
            args.root,
            split=args.split,
            splits_file=args.splits or args.make_splits,
            class_agnostic=not args.class_aware,
            min_visible_area=args.min_visible_area,
            require_amodal=args.require_amodal,
        )
        write_coco(coco, args.out)
        print(f"wrote {args.out}: {len(coco['images'])} images, {len(coco['annotations'])} annotations")
    return 0
