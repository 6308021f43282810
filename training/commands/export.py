"""`python -m training export`: checkpoint -> verified ONNX model for the runtime (float32 or INT8)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HELP = (
    "export a checkpoint to ONNX (dynamic H/W, metadata, parity-checked; optional INT8 and test-time budget)"
)
DESCRIPTION = (
    "Export the whole inference path of a checkpoint (backbones, fusion, FPN, RPN, ROI heads, NMS, mask "
    "and occlusion heads) to ONNX with dynamic input height/width, embed the mtl_grasp metadata (contract "
    "version, class names, training image size, normalisation, config hash), run onnx.checker and verify "
    "the file with ONNX Runtime against PyTorch at the export size and at another size. Exits non-zero "
    "and writes nothing if the parity check fails.\n\n"
    "--budget bakes a test-time budget (proposals, detections, min_score; named budgets in "
    "config/runtime.yaml) into the graph. --quantize int8 --calibration DIR writes an INT8 (QDQ, "
    "per-channel weights) model calibrated on frames of DIR (a MetaGraspNet-layout folder, its train "
    "split when it has one) and checks it against the float32 export on those frames "
    "(training/export/quantized_parity.py; thresholds in docs/runtime.md).\n\n"
    "Examples:\n  python -m training export --checkpoint runs/ew/checkpoints/last.pt --out model.onnx\n"
    "  python -m training export --checkpoint runs/ew --out model_int8.onnx --budget fast \\\n"
    "      --quantize int8 --calibration data/synthetic"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="checkpoint written by `python -m training train` (or its run dir)",
    )
    parser.add_argument("--out", required=True, help="ONNX file to write")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    parser.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="size of the square frame traced at export (default: the training image size); the "
        "exported model accepts any size",
    )
    parser.add_argument("--no-verify", action="store_true", help="skip the parity checks")
    parser.add_argument(
        "--budget",
        default=None,
        help="test-time budget: a name of config/runtime.yaml or proposals=N,detections=N",
    )
    parser.add_argument(
        "--quantize", choices=("none", "int8"), default="none", help="INT8 static quantisation"
    )
    parser.add_argument("--calibration", default=None, help="--quantize int8: folder of calibration frames")
    parser.add_argument(
        "--calibration-frames", type=int, default=16, help="frames used for calibration (default 16)"
    )
    parser.add_argument(
        "--keep-float", default=None, help="--quantize int8: also write the float32 export to this path"
    )


def _check_args(args: argparse.Namespace) -> None:
    if args.quantize == "int8" and not args.calibration:
        raise ValueError("--calibration: required with --quantize int8 (a folder of training frames)")
    if args.calibration and args.quantize != "int8":
        raise ValueError("--calibration: only used with --quantize int8")
    if args.calibration and not Path(args.calibration).is_dir():
        raise ValueError(f"--calibration: no such directory {args.calibration!r}")
    if args.calibration_frames < 1:
        raise ValueError(f"--calibration-frames: expected >= 1, got {args.calibration_frames}")


def run(args: argparse.Namespace) -> int:
    from training.export import ParityError, metadata_from_config, model_from_checkpoint
    from training.export.budget import apply_budget, parse_budget

    _check_args(args)
    budget = parse_budget(args.budget) if args.budget else None
    model, config = model_from_checkpoint(args.checkpoint)
    if budget is not None:
        apply_budget(model, budget)
    metadata = metadata_from_config(config)
    try:
        if args.quantize != "int8":
            _export_float(model, metadata, args, budget, Path(args.out))
        elif args.keep_float:
            _quantize(
                _export_float(model, metadata, args, budget, Path(args.keep_float)).path, metadata, args
            )
        else:
            with tempfile.TemporaryDirectory(prefix="mtl-export-") as tmp:  # the float model is removed
                _quantize(
                    _export_float(model, metadata, args, budget, Path(tmp) / "float.onnx").path,
                    metadata,
                    args,
                )
    except ParityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _export_float(model, metadata, args: argparse.Namespace, budget, out: Path):
    from training.export import DEFAULT_OPSET, export_model

    size = args.image_size if args.image_size is not None else metadata.train_image_size
    result = export_model(
        model,
        out,
        image_size=size,
        metadata=metadata,
        opset=args.opset if args.opset is not None else DEFAULT_OPSET,
        verify=not args.no_verify,
        budget=budget.to_dict() if budget is not None else None,
    )
    print(
        f"wrote {result.path} (float32, opset {result.opset}, classes {list(metadata.class_names)}, "
        f"config {metadata.config_hash[:12]}{', budget ' + str(budget.to_dict()) if budget else ''})"
    )
    for report in result.parity:
        print(f"parity {report.summary()}")
    return result


def _quantize(float_path: Path, metadata, args: argparse.Namespace) -> None:
    from training.export.quantize import calibration_frames, camera_frames, quantize_int8
    from training.export.quantized_parity import check_quantized_parity

    size = metadata.train_image_size
    frames = calibration_frames(
        args.calibration, args.calibration_frames, inference_size=size, keep_aspect=True
    )
    out = quantize_int8(float_path, args.out, frames)
    print(f"wrote {out} (INT8 QDQ, per-channel weights; {len(frames)} frames of {args.calibration})")
    if not args.no_verify:
        try:
            report = check_quantized_parity(
                float_path, out, camera_frames(args.calibration), inference_size=size
            )
        except Exception:
            Path(out).unlink(missing_ok=True)  # a model that failed its check is not left behind
            raise
        print(f"int8 parity {report.summary()}")
