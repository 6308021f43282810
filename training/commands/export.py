"""`python -m training export`: checkpoint -> verified ONNX model for the runtime."""

from __future__ import annotations

import argparse

HELP = "export a checkpoint to ONNX (dynamic H/W, metadata, parity-checked against PyTorch)"
DESCRIPTION = (
    "Export the whole inference path of a checkpoint (backbones, fusion, FPN, RPN, ROI heads, NMS, mask "
    "and occlusion heads) to ONNX with dynamic input height/width, embed the mtl_grasp metadata (contract "
    "version, class names, training image size, normalisation, config hash), run onnx.checker and verify "
    "the file with ONNX Runtime against PyTorch at the export size and at another size. Exits non-zero "
    "and writes nothing if the parity check fails.\n\n"
    "Example:\n  python -m training export --checkpoint runs/ew/checkpoints/last.pt --out model.onnx"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", required=True, help="checkpoint written by `python -m training train`"
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
    parser.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime vs PyTorch check")


def run(args: argparse.Namespace) -> int:
    import sys

    from training.export import (
        DEFAULT_OPSET,
        ParityError,
        export_model,
        metadata_from_config,
        model_from_checkpoint,
    )

    model, config = model_from_checkpoint(args.checkpoint)
    metadata = metadata_from_config(config)
    size = args.image_size if args.image_size is not None else metadata.train_image_size
    try:
        result = export_model(
            model,
            args.out,
            image_size=size,
            metadata=metadata,
            opset=args.opset if args.opset is not None else DEFAULT_OPSET,
            verify=not args.no_verify,
        )
    except ParityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"wrote {result.path} (opset {result.opset}, classes {list(metadata.class_names)}, "
        f"config {metadata.config_hash[:12]})"
    )
    for report in result.parity:
        print(f"parity {report.summary()}")
    return 0
