"""`python -m training evaluate`: the metrics of a checkpoint (or an exported ONNX model) on a split,
clean or under image / depth-sensor corruptions (`--corruptions`).

The checkpoint's config names its model family: the bin-picking detector is scored with COCO metrics,
the dense family (NYU-v2 / CityScapes) with the dense metrics (docs/dense.md); the ONNX and corruption
paths are the detector's."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "metrics of a checkpoint or ONNX model: COCO mAP/mAR + occlusion (+ corruptions), or the dense metrics"
DESCRIPTION = """\
Evaluate on a MetaGraspNet-layout dataset split against its COCO ground truth (mtl_grasp.data.coco):

  python -m training evaluate --checkpoint runs/x/checkpoints/last.pt --data data/synth --split val \\
      --out metrics.json
  python -m training evaluate --checkpoint runs/nyu-ew --out metrics.json      # a dense run (NYU-v2)
  python -m training evaluate --onnx model.onnx --data data/synth --split val --out metrics.json

The checkpoint's config names its family, and its data.root is the default --data. A dense-family run
(docs/dense.md) is scored with mIoU, pixel accuracy and the depth/normal/instance errors over the whole
split. For the bin-picking detector both paths paste masks with mtl_grasp.runtime.postprocess, so a
checkpoint and its export give the same numbers up to numerical noise. The ONNX path feeds
camera-resolution frames to the Detector, which resizes them to the model's training size like the node
does; float32 and INT8 models alike.

Robustness (docs/robustness.md): --corruptions evaluates clean and under every corruption x severity:
the 15 common image corruptions of `imagecorruptions` on RGB and 5 depth-sensor corruptions.

  python -m training evaluate --checkpoint runs/x --data data/synth --corruptions            # all, 1..5
  python -m training evaluate --onnx model.onnx --data data/synth --corruptions rgb --severities 1,3,5
  python -m training evaluate --onnx model.onnx --data data/synth --corruptions fog,depth_noise

It writes robustness.json / .csv / .md and robustness.png (heat maps) into --robustness-dir (default:
RUN_DIR/robustness for a checkpoint, <model>_robustness/ next to an ONNX file); the sweep report
(`python -m training report`) reads RUN_DIR/robustness/robustness.json into its robustness table."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="training checkpoint (.pt) or run directory")
    src.add_argument("--onnx", help="exported model (python -m training export), float32 or INT8")
    parser.add_argument(
        "--data", default=None,
        help="dataset root (default with --checkpoint: its config's data.root; required for --onnx and "
        "--corruptions)",
    )  # fmt: skip
    parser.add_argument("--split", default="val", help="split name (default: val)")
    parser.add_argument("--splits-file", default=None, help="split file (default: <data>/splits.json)")
    parser.add_argument("--out", default=None, help="write the (clean) metrics as JSON here")
    parser.add_argument("--max-images", type=int, default=0, help="only the first N images (0 = all)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument(
        "--score-threshold", type=float, default=0.05, help="ONNX path: Detector score threshold"
    )
    parser.add_argument(
        "--corruptions", nargs="?", const="all", default=None, metavar="SPEC",
        help="evaluate under corruptions: all (default when given), rgb, depth, or comma-separated names",
    )  # fmt: skip
    parser.add_argument("--severities", default="1,2,3,4,5", help="--corruptions: severities in 1..5")
    parser.add_argument("--seed", type=int, default=0, help="--corruptions: seed of the corruptions")
    parser.add_argument("--robustness-dir", default=None, help="--corruptions: output folder")


def _evaluate_checkpoint(args: argparse.Namespace) -> tuple[str, dict[str, float]]:
    """(family name, metrics) of the checkpoint on `args.split`; the family comes from its config."""
    from training import families
    from training.checkpoint import MODEL_KEYS, read_checkpoint
    from training.config import config_from_dict
    from training.engine.assembly import select_device

    ckpt = read_checkpoint(args.checkpoint, required=MODEL_KEYS)
    overrides = [f"train.eval_max_images={args.max_images}"]
    if args.data is not None:
        overrides.append(f"data.root={args.data}")
    cfg = config_from_dict(ckpt["config"], overrides)
    if not Path(cfg.data.root).is_dir():
        raise FileNotFoundError(f"--data: no such directory {cfg.data.root!r} (the checkpoint's data.root)")
    cfg.data.splits_file = args.splits_file  # as before: <data>/splits.json unless given
    device = select_device(args.device)
    family = families.for_config(cfg)
    model = family.build_model(cfg, device).module
    model.load_state_dict(ckpt["model"])
    return cfg.family, family.build_evaluator(cfg, device, args.split)(model)


def _onnx_detector(args: argparse.Namespace):
    from mtl_grasp.runtime.detector import Detector

    # Same geometry as the checkpoint path: the dataset squashes every frame to the training size.
    return Detector(
        args.onnx, score_threshold=args.score_threshold, inference_size="train", keep_aspect=False
    )


def _torch_predictor(args: argparse.Namespace):
    """The checkpoint behind the Detector's frame interface (same pre-processing and decoding)."""
    from training.engine.assembly import select_device
    from training.export import metadata_from_config, model_from_checkpoint
    from training.export.predictor import TorchFramePredictor

    model, config = model_from_checkpoint(args.checkpoint)
    meta = metadata_from_config(config)
    return TorchFramePredictor(
        model, meta.class_names, meta.train_image_size, keep_aspect=False, device=select_device(args.device)
    )


def _evaluate_onnx(args: argparse.Namespace) -> dict[str, float]:
    from mtl_grasp.evaluation.dataset import evaluate_dataset

    return evaluate_dataset(_onnx_detector(args), args.data, args.split, args.splits_file, args.max_images)


def _robustness_dir(args: argparse.Namespace) -> Path:
    if args.robustness_dir:
        return Path(args.robustness_dir)
    if args.onnx:
        return Path(args.onnx).with_name(Path(args.onnx).stem + "_robustness")
    from training.rundir import RunDir, run_dir_of_checkpoint

    path = Path(args.checkpoint)
    return RunDir(path if path.is_dir() else run_dir_of_checkpoint(path) or path.parent).robustness


def _evaluate_corruptions(args: argparse.Namespace) -> dict[str, float]:
    from mtl_grasp.evaluation.corruptions import parse_corruptions, parse_severities
    from mtl_grasp.evaluation.dataset import dataset_gt, dataset_views, load_frames
    from mtl_grasp.evaluation.robustness import corruption_sweep, markdown_tables, write_robustness
    from training.diagnostics.robustness import plot_heatmap

    try:
        corruptions = parse_corruptions(args.corruptions)
        severities = parse_severities(args.severities)
    except ValueError as exc:
        raise ValueError(f"--{str(exc)}") from exc  # "--corruptions: ..." / "--severities: ..."
    predictor = _onnx_detector(args) if args.onnx else _torch_predictor(args)
    views = dataset_views(args.data, args.split, args.splits_file, args.max_images)
    gt = dataset_gt(args.data, views, args.split)
    result = corruption_sweep(predictor, load_frames(views), gt, corruptions, severities, args.seed)
    out = _robustness_dir(args)
    paths = write_robustness(result, out)
    plot = plot_heatmap(result, out / "robustness.png")
    print("\n".join(markdown_tables(result)))
    print(f"wrote {paths['json']}, {paths['csv']}, {paths['md']}, {plot}")
    return result.clean


def _print_coco(metrics: dict[str, float]) -> None:
    for key in ("bbox", "vmask", "amask"):
        print(f"{key:6s} mAP {metrics[f'{key}/mAP']:.4f}  AP50 {metrics[f'{key}/AP50']:.4f}  "
              f"AP75 {metrics[f'{key}/AP75']:.4f}  mAR {metrics[f'{key}/mAR']:.4f}")
    print(f"occlusion accuracy {metrics['occ/accuracy']:.4f}  F1 {metrics['occ/f1']:.4f} "
          f"({int(metrics['occ/matched'])} matched of {int(metrics['occ/gt'])})")


def _print_dense(metrics: dict[str, float]) -> None:
    from mtl_grasp.evaluation.dense import METRIC_DIRECTIONS

    for key, value in metrics.items():
        better = {1: "higher is better", -1: "lower is better"}.get(METRIC_DIRECTIONS.get(key, 0), "")
        print(f"{key:24s} {value:.4f}  ({better})")


def run(args: argparse.Namespace) -> int:
    if args.data is not None and not Path(args.data).is_dir():
        raise FileNotFoundError(f"--data: no such directory {args.data!r}")
    if args.data is None and (args.onnx or args.corruptions is not None):
        raise ValueError("--data: required with --onnx and --corruptions (the MetaGraspNet-layout root)")
    family = "amodal"
    if args.corruptions is not None:
        metrics = _evaluate_corruptions(args)
    elif args.checkpoint:
        family, metrics = _evaluate_checkpoint(args)
    else:
        metrics = _evaluate_onnx(args)
    (_print_dense if family == "dense" else _print_coco)(metrics)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(metrics, indent=2))
    return 0
