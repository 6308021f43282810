"""INT8 static quantisation of an exported model with onnxruntime's quantisation tools.

    python -m training export --checkpoint CKPT --out model_int8.onnx --quantize int8 --calibration DATA

What is done (onnxruntime.quantization.quantize_static):
- QDQ format: QuantizeLinear/DequantizeLinear pairs around the quantised ops, which onnxruntime's CPU
  provider fuses into int8 kernels at session start (graph optimisation "all") and TensorRT reads as
  explicit quantisation (its INT8 engines need no calibration table then).
- Weights int8, symmetric, per output channel; activations uint8, asymmetric, per tensor (U8S8: the
  combination onnxruntime's x86 kernels (AVX2 / AVX-512 VNNI) are fastest at).
- Only convolutions (Conv, ConvTranspose), matrix products (Gemm, MatMul) and the Concats that join
  feature maps (`feature_concats`) are quantised: the convolutions are ~88 % of the kernel time
  (docs/benchmarks.md, "Runtime"). Box decoding, NMS, ROI Align, top-k and the sigmoid/softmax
  outputs stay float32, so boxes and probabilities keep their float semantics.
- Calibration: MinMax activation ranges from running the float model on frames of the training data
  (`calibration_frames`: the views of a MetaGraspNet-layout folder, pre-processed exactly as the
  `Detector` does). Not percentile / entropy: onnxruntime's histogram calibrators fail on the empty
  head tensors of a frame without detections.
The result carries the float model's mtl_grasp metadata plus `mtl_grasp.quantization`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from mtl_grasp.contract import INPUT_DEPTH, INPUT_RGB, META_QUANTIZATION

log = logging.getLogger(__name__)

QUANTIZATION_TAG = "int8-qdq-per-channel"
# Kept float32 by default: the layers that produce the outputs (RPN objectness / deltas, box class
# scores / deltas, mask logits, occlusion classifier) and each backbone's first convolution, which
# sees the raw normalised RGB / depth. They are < 3 % of the FLOPs; quantising them cost accuracy
# on the trained demo model (docs/benchmarks.md, "Runtime: accuracy").
FLOAT_LAYERS = (
    r"/rpn/head/(cls_logits|bbox_pred)",
    r"/roi_heads/box_predictor/",
    r"mask_fcn_logits",
    r"/roi_heads/occlusion/classifier",
    r"^/encoder/(rgb|depth)/conv1/",
)
QUANTIZED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Concat")


@dataclass(frozen=True)
class CalibrationFrame:
    """One pre-processed network input (the contract's [1,3,H,W] rgb and [1,1,H,W] depth)."""

    rgb: np.ndarray
    depth: np.ndarray


def _pick_views(root: str | os.PathLike, split: str | None, max_frames: int) -> list:
    """Up to `max_frames` views of `split` under `root` (all views when it has no such split), spread
    evenly over the views."""
    from mtl_grasp.data.errors import DataError
    from mtl_grasp.data.reader import discover_views, select_split

    if max_frames < 1:
        raise ValueError(f"max_frames: expected >= 1, got {max_frames}")
    if not Path(root).is_dir():
        raise ValueError(f"calibration: no such directory {str(root)!r}")
    views = discover_views(root)
    if not views:
        raise ValueError(f"calibration: no views (MetaGraspNet layout) under {str(root)!r}")
    with contextlib.suppress(DataError):  # no such split in this folder: use every view
        views = select_split(views, split) or views
    picks = np.unique(np.linspace(0, len(views) - 1, min(max_frames, len(views))).round().astype(int))
    return [views[int(i)] for i in picks]


def camera_frames(
    root: str | os.PathLike, max_frames: int = 8, split: str | None = "val"
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rgb uint8, depth metres) camera frames of up to `max_frames` views (the parity check's frames)."""
    from mtl_grasp.data.reader import load_view

    samples = [load_view(ref) for ref in _pick_views(root, split, max_frames)]
    return [(s.rgb, s.depth) for s in samples]


def calibration_frames(
    root: str | os.PathLike,
    max_frames: int = 16,
    inference_size: int | None = None,
    keep_aspect: bool = False,
    split: str | None = "train",
) -> list[CalibrationFrame]:
    """Network inputs of up to `max_frames` views of `root` (training split when the folder has one).

    Frames are spread evenly over the views and pre-processed with `mtl_grasp.runtime.preprocess.prepare`
    at `inference_size` (None: camera resolution), as the Detector will see them.
    """
    from mtl_grasp.runtime.preprocess import prepare

    frames = []
    for rgb, depth in camera_frames(root, max_frames, split):
        x = prepare(rgb, depth, inference_size, True, keep_aspect)
        frames.append(CalibrationFrame(x.rgb, x.depth))
    return frames


class _Reader:
    """onnxruntime `CalibrationDataReader` over a list of frames, with the `__len__`/`set_range` that
    onnxruntime's strided calibration uses to calibrate one frame at a time (bounded memory: the
    augmented model outputs every quantised tensor, ~0.5-2 GB per 640x480 frame of the default model)."""

    def __init__(self, frames: Sequence[CalibrationFrame]) -> None:
        self._frames = list(frames)
        self._it: Iterator[CalibrationFrame] = iter(self._frames)

    def __len__(self) -> int:
        return len(self._frames)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._it = iter(self._frames[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        frame = next(self._it, None)
        return None if frame is None else {INPUT_RGB: frame.rgb, INPUT_DEPTH: frame.depth}

    def rewind(self) -> None:
        self._it = iter(self._frames)


def feature_concats(model: onnx.ModelProto) -> tuple[list[str], list[str]]:
    """(Concat nodes joining feature maps, other Concat nodes) of `model`.

    Feature concats (the fusion of the two backbones, the guidance of the task heads) join outputs of
    convolutions / ReLUs / ROI Align: quantising them lets onnxruntime run them on uint8 between two
    int8 convolutions instead of dequantising and requantising around a float Concat. Every other
    Concat (shapes, boxes, scores) must stay float.
    """
    producer = {o: n.op_type for n in model.graph.node for o in n.output}
    feature_ops = {"Conv", "Relu", "RoiAlign", "Concat", "Gather", "MaxPool", "Add", "DepthToSpace"}
    features, others = [], []
    for node in model.graph.node:
        if node.op_type != "Concat":
            continue
        inputs = [producer.get(i) for i in node.input]
        is_feature = all(op in feature_ops for op in inputs) and any(op in ("Conv", "Relu") for op in inputs)
        (features if is_feature else others).append(node.name)
    return features, others


def quantize_int8(
    float_path: str | os.PathLike,
    out_path: str | os.PathLike,
    frames: Sequence[CalibrationFrame],
    float_layers: Sequence[str] = FLOAT_LAYERS,
) -> Path:
    """Write the INT8 (QDQ) version of the float ONNX model `float_path` to `out_path` (atomically).

    `frames`: calibration inputs (`calibration_frames`). `float_layers`: regexes of node names kept
    float32 (default `FLOAT_LAYERS`; () quantises every convolution).
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not frames:
        raise ValueError("frames: expected at least one calibration frame")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        # onnxruntime's recommended pre-processing (basic graph optimisation + ONNX shape inference):
        # among others it folds the Identity nodes through which the exporter shares equal bias
        # tensors; a bias produced by a node instead of an initializer keeps onnxruntime from fusing
        # DQ -> Conv -> Q into an int8 convolution (measured: the heads then ran in float with the
        # Q/DQ cost on top). Symbolic shape inference is skipped: it cannot follow the data-dependent
        # sizes of NMS and ROI selection, and quantisation needs no shapes there.
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        tmp_out = Path(tmp) / "int8.onnx"
        _quantize_static(prepared, tmp_out, frames, float_layers)
        proto = onnx.load(str(tmp_out))
        _copy_metadata(onnx.load(str(float_path), load_external_data=False), proto)
        onnx.save(proto, str(tmp_out))
        os.replace(tmp_out, out_path)
    return out_path


def _quantize_static(
    prepared: Path,
    out: Path,
    frames: Sequence[CalibrationFrame],
    float_layers: Sequence[str],
) -> None:
    """onnxruntime's `quantize_static` with this project's settings (module docstring).

    Calibration is MinMax only: onnxruntime's histogram calibrators (percentile, entropy) fail with
    "zero-size array to reduction operation fmax" on the empty head tensors of a frame without
    detections. Weights are per output channel (the file's tag says so).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    prepared_model = onnx.load(str(prepared), load_external_data=False)
    _, other_concats = feature_concats(prepared_model)
    kept_float = [
        n.name for n in prepared_model.graph.node if any(re.search(p, n.name) for p in float_layers)
    ]
    quantize_static(
        str(prepared),
        str(out),
        _Reader(frames),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(QUANTIZED_OPS),
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=kept_float + other_concats,
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={
            "WeightSymmetric": True,
            "ActivationSymmetric": False,
            # One frame per calibration step, ranges merged in between (bounded memory). Not
            # CalibMaxIntermediateOutputs: onnxruntime 1.32's MinMax calibrator drops the
            # collected outputs there without merging them ("No data is collected").
            "CalibStridedMinMax": 1,
        },
    )


def _copy_metadata(source: onnx.ModelProto, target: onnx.ModelProto) -> None:
    """The float model's metadata_props (mtl_grasp contract) plus the quantisation tag."""
    del target.metadata_props[:]
    for prop in source.metadata_props:
        if prop.key != META_QUANTIZATION:
            target.metadata_props.append(onnx.StringStringEntryProto(key=prop.key, value=prop.value))
    target.metadata_props.append(onnx.StringStringEntryProto(key=META_QUANTIZATION, value=QUANTIZATION_TAG))
    target.doc_string = source.doc_string + f" ({QUANTIZATION_TAG})"
