"""`python -m training bench quantization`: the accuracy side of INT8 and of the test-time budgets.

Exports a trained checkpoint once per budget, quantises each export to INT8 (calibrated on frames of
the training data), and evaluates every model on the same validation split with the same command path
(`mtl_grasp.evaluation.dataset.evaluate_dataset` through the `Detector`, score threshold 0.05, frames
squashed to the training size as in `python -m training evaluate --onnx`). Prints a markdown table
(docs/benchmarks.md, "Runtime: accuracy") with each model's BBox / VMask / AMask mAP and mAR, the
occlusion accuracy, the largest |difference| to the float32 model of the same budget, and the goal
check of issue 16 (INT8 within 0.01 mAP and 0.01 occlusion accuracy).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

HELP = "validation mAP/mAR + occlusion accuracy of float32 vs INT8 exports (and test-time budgets)"
DESCRIPTION = __doc__ or HELP
KEYS = (
    "bbox/mAP",
    "bbox/mAR",
    "vmask/mAP",
    "vmask/mAR",
    "amask/mAP",
    "amask/mAR",
    "occ/accuracy",
    "occ/matched",
)
GOAL_KEYS = ("bbox/mAP", "vmask/mAP", "amask/mAP", "occ/accuracy")
TOLERANCE = 0.01


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="trained checkpoint (or run directory)")
    parser.add_argument("--data", required=True, help="dataset root (MetaGraspNet layout)")
    parser.add_argument("--split", default="val", help="evaluation split (default val)")
    parser.add_argument(
        "--calibration", default=None, help="calibration folder (default: --data, train split)"
    )
    parser.add_argument("--calibration-frames", type=int, default=16, help="calibration frames (default 16)")
    parser.add_argument(
        "--budgets", default="model",
        help="comma list: 'model' (the checkpoint's own) and/or config/runtime.yaml names or "
        "proposals=N;detections=N entries",
    )  # fmt: skip
    parser.add_argument(
        "--also-float", action="append", default=[], metavar="REGEX",
        help="keep these nodes float32 too (regex on ONNX node names, e.g. /roi_heads/occlusion/)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument(
        "--quantize-all", action="store_true",
        help="also quantise the output layers and first convolutions (training.export.quantize.FLOAT_LAYERS)",
    )  # fmt: skip
    parser.add_argument("--score-threshold", type=float, default=0.05, help="Detector score threshold")


def _budget(text: str):
    from training.export.budget import parse_budget

    return None if text == "model" else parse_budget(text.replace(";", ","))


def _export_pair(ckpt: str, budget, tmp: Path, args: argparse.Namespace) -> dict[str, Path]:
    """{"fp32": path, "int8": path} of the checkpoint at `budget`."""
    from training.export import export_model, metadata_from_config, model_from_checkpoint
    from training.export.budget import apply_budget
    from training.export.quantize import FLOAT_LAYERS, calibration_frames, quantize_int8

    model, config = model_from_checkpoint(ckpt)
    if budget is not None:
        apply_budget(model, budget)
    meta = metadata_from_config(config)
    fp32 = export_model(model, tmp / "fp32.onnx", meta.train_image_size, meta, verify=False).path
    frames = calibration_frames(
        args.calibration or args.data, args.calibration_frames, inference_size=meta.train_image_size
    )
    int8 = quantize_int8(
        fp32, tmp / "int8.onnx", frames,
        float_layers=(() if args.quantize_all else FLOAT_LAYERS) + tuple(args.also_float),
    )  # fmt: skip
    return {"fp32": fp32, "int8": int8}


def _evaluate(path: Path, args: argparse.Namespace) -> tuple[dict[str, float], float]:
    """(metrics, p50 ms per frame of the Detector calls) on the evaluation split."""
    from mtl_grasp.evaluation.dataset import evaluate_dataset
    from mtl_grasp.runtime import Detector

    detector = Detector(
        path, providers="cpu", score_threshold=args.score_threshold, inference_size="train",
        keep_aspect=False, num_threads=args.threads,
    )  # fmt: skip
    times: list[float] = []

    def timed(rgb: np.ndarray, depth: np.ndarray):
        t0 = time.perf_counter()
        out = detector(rgb, depth)
        times.append((time.perf_counter() - t0) * 1e3)
        return out

    metrics = evaluate_dataset(timed, args.data, args.split)
    return metrics, float(np.median(times))


def _row(label: str, metrics: dict[str, float], ms: float, ref: dict[str, float] | None) -> str:
    cells = [f"{metrics[k]:.0f}" if k == "occ/matched" else f"{metrics[k]:.4f}" for k in KEYS]
    if ref is None:
        return f"| {label} | " + " | ".join(cells) + f" | {ms:.1f} | - | - |"
    diff = max(abs(metrics[k] - ref[k]) for k in GOAL_KEYS)
    ok = "yes" if diff <= TOLERANCE + 1e-12 else "**no**"
    return f"| {label} | " + " | ".join(cells) + f" | {ms:.1f} | {diff:.4f} | {ok} |"


def run(args: argparse.Namespace) -> int:
    if args.calibration_frames < 1 or args.threads < 1:
        raise ValueError("--calibration-frames and --threads: expected positive ints")
    if not Path(args.data).is_dir():
        raise ValueError(f"--data: no such directory {args.data!r}")
    budgets = [b.strip() for b in args.budgets.split(",") if b.strip()]
    parsed = {b: _budget(b) for b in budgets}  # errors before any export
    print(f"checkpoint {args.checkpoint}; data {args.data} split {args.split}; score threshold "
          f"{args.score_threshold}; {args.threads} onnxruntime thread(s)")  # fmt: skip
    print(
        "| model | "
        + " | ".join(KEYS)
        + " | ms/frame p50 | max abs diff to float32 (mAPs, occ acc) | within 0.01 |"
    )
    print("|" + "---|" * (len(KEYS) + 4))
    for name, budget in parsed.items():
        with tempfile.TemporaryDirectory() as tmp:
            paths = _export_pair(args.checkpoint, budget, Path(tmp), args)
            ref, ref_ms = _evaluate(paths["fp32"], args)
            got, got_ms = _evaluate(paths["int8"], args)
        label = "checkpoint's budget" if budget is None else f"budget {name} {budget.to_dict()}"
        print(_row(f"float32, {label}", ref, ref_ms, None), flush=True)
        print(_row(f"INT8, {label}", got, got_ms, ref), flush=True)
    return 0
