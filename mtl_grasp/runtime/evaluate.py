"""Offline evaluation of an exported ONNX model on a MetaGraspNet-layout dataset, without torch.

    python -m mtl_grasp.runtime.evaluate --model model.onnx --data DATA_ROOT --split test

Runs the `Detector` on every view and scores the predictions with `mtl_grasp.evaluation` against the
COCO ground truth of `mtl_grasp.data.coco` - the same evaluator and mask pasting as the training-side
evaluation, so the numbers of a checkpoint and of its ONNX export are directly comparable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mtl_grasp.evaluation.dataset import dataset_views, evaluate_dataset, iter_frames, predict_frames
from mtl_grasp.runtime.detector import Detector

# mAP integrates over the whole precision/recall curve, so evaluation keeps every detection the
# model emits (it already drops scores below its own score_thresh and keeps its top-k).
EVAL_SCORE_THRESHOLD = 0.0


def predict_dataset(
    detector: Detector,
    root: str | Path,
    split: str | None = None,
    splits_file: str | Path | None = None,
) -> dict[int, dict[str, np.ndarray]]:
    """Predictions of `detector` for every view of `root` (or of `split`), keyed by COCO image id.

    Image ids are those of `mtl_grasp.data.coco.build_coco` on the same root, so the result can be
    scored against that ground truth directly (see `mtl_grasp.evaluation.dataset`).
    """
    return predict_frames(detector, iter_frames(dataset_views(root, split, splits_file)))


def evaluate_model(
    model_path: str | os.PathLike,
    root: str | Path,
    split: str | None = None,
    splits_file: str | Path | None = None,
    gt: Mapping[str, Any] | str | Path | None = None,
    providers: str | Sequence | None = None,
    inference_size: int | str | None = None,
    keep_aspect: bool = True,
    max_images: int = 0,
) -> dict[str, float]:
    """COCO BBox / VMask / AMask metrics and occlusion accuracy/F1 of an ONNX model on a dataset.

    `gt` is the COCO JSON (path or dict) of the same views; by default it is built from `root`
    (class-agnostic, as `python -m training coco` does). The loop is
    `mtl_grasp.evaluation.dataset.evaluate_dataset`, shared with `python -m training evaluate --onnx`.
    """
    detector = Detector(
        model_path,
        providers=providers,
        score_threshold=EVAL_SCORE_THRESHOLD,
        inference_size=inference_size,
        keep_aspect=keep_aspect,
    )
    return evaluate_dataset(detector, root, split, splits_file, max_images=max_images, gt=gt)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mtl_grasp.runtime.evaluate",
        description="COCO metrics of an exported ONNX model on a MetaGraspNet-layout dataset (no torch).",
    )
    parser.add_argument("--model", required=True, help="ONNX file from `python -m training export`")
    parser.add_argument("--data", required=True, help="dataset root (MetaGraspNet layout)")
    parser.add_argument("--split", default=None, help="train/val/test (default: all views)")
    parser.add_argument("--splits-file", default=None, help="splits JSON (default: <data>/splits.json)")
    parser.add_argument("--gt", default=None, help="COCO JSON of the same views (default: built from --data)")
    parser.add_argument("--providers", default="auto", help="auto, cpu, cuda or tensorrt")
    parser.add_argument(
        "--inference-size",
        default=None,
        help="resize the longer side to this many pixels, or 'train' for the training size "
        "(default: camera resolution)",
    )
    parser.add_argument(
        "--squash",
        action="store_true",
        help="with --inference-size: resize to size x size like the training loader (aspect not kept)",
    )
    parser.add_argument("--out", default=None, help="also write the metrics as JSON here")
    args = parser.parse_args(argv)
    size = args.inference_size
    if size is not None and size != "train":
        if not size.isdigit():
            print(f"error: --inference-size: expected an int or 'train', got {size!r}", file=sys.stderr)
            return 2
        size = int(size)
    try:
        metrics = evaluate_model(
            args.model,
            args.data,
            args.split,
            args.splits_file,
            args.gt,
            args.providers,
            size,
            not args.squash,
        )
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for key, value in metrics.items():
        print(f"{key:20s} {value:.4f}")
    if args.out:
        Path(args.out).write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
