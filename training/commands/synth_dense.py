"""`python -m training synth-dense`: write a synthetic NYU-v2 / CityScapes stand-in in the real layouts."""

from __future__ import annotations

import argparse
import time

HELP = "generate a synthetic NYU-v2 or CityScapes stand-in in the layouts of the real datasets"
DESCRIPTION = (
    "Ray-casts rooms (nyuv2) or streets (cityscapes, cityscapes3) of primitive shapes and writes them as "
    "the dense readers expect: nyuv2 and cityscapes in the MTAN/LibMTL per-sample .npy layout "
    "(OUT/{train,val}/{image,label,depth[,normal]}/<i>.npy), cityscapes3 in the official CityScapes "
    "folders (leftImg8bit, gtFine labelIds/instanceIds, 16-bit disparity). Segmentation, depth, normals "
    "and instances come from the same exact ray/shape intersections, so they agree. Same arguments -> "
    "byte-identical files. See docs/dense.md."
)


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected HxW, e.g. 96x128, got {text!r}") from exc
    return height, width


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, choices=("nyuv2", "cityscapes", "cityscapes3"))
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--train", type=int, default=16, help="training samples (default 16)")
    parser.add_argument("--val", type=int, default=8, help="validation (= test) samples (default 8)")
    parser.add_argument(
        "--size", type=_size, default=None,
        help="HxW in pixels (default: the benchmark's, 288x384 / 128x256 / 256x512)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def run(args: argparse.Namespace) -> int:
    from mtl_grasp.data.dense.synth import generate

    start = time.perf_counter()
    counts = generate(
        args.dataset, args.out, args.train, args.val, seed=args.seed, size=args.size, progress=True
    )
    elapsed = time.perf_counter() - start
    total = counts["train"] + counts["val"]
    print(
        f"wrote {counts['train']} train + {counts['val']} val {args.dataset} samples to {args.out} "
        f"in {elapsed:.1f} s ({1000 * elapsed / total:.0f} ms/sample)"
    )
    return 0
