"""`export_model`: an in-memory AmodalRCNN -> a contract-conforming, self-verified ONNX file.

Exporter choice: the TorchScript-based exporter (`torch.onnx.export(..., dynamo=False)`). The whole
inference path (RPN proposal selection, NMS, ROI Align, mask/occlusion heads) is torchvision code
that is written to be traced: under tracing torchvision computes sizes as tensors, so dynamic
height/width survive, and it ships ONNX symbolics for `torchvision::nms` and `roi_align`. The
torch.export-based (dynamo) exporter instead has to prove shape guards over data-dependent sizes:
with torch 2.14 it stops at torchvision's `boxes.numel() == 0` check in batched NMS
(GuardOnDataDependentSymNode), while the TorchScript exporter works and exists in torch 2.6..2.14.
The self-check (`parity.check_parity`) runs at a size different from the export size, so a size that
got baked into the graph as a constant is caught at export time, not on the robot.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import torch
import torchvision.ops.poolers as tv_poolers
from torch import Tensor, nn

from mtl_grasp.contract import (
    INPUT_DEPTH,
    INPUT_NAMES,
    INPUT_RGB,
    META_TEST_BUDGET,
    OUTPUT_NAMES,
    ModelMetadata,
)
from training.export.graph_rewrites import conv_transpose_2x2_to_conv
from training.export.parity import SizeReport, Tolerances, check_parity, frame_tensors, synthetic_frame

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17  # supported by onnxruntime >= 1.14 and TensorRT 8.6+; has everything the model uses
MIN_OPSET = 11  # torchvision's roi_align / nms symbolics need >= 11


class _ExportWrapper(nn.Module):
    """Exposes `forward_export` as `forward`, which is what the tracer calls."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, rgb: torch.Tensor, depth: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model.forward_export(rgb, depth))


@dataclass
class ExportResult:
    """Where the model went and how well it reproduces PyTorch."""

    path: Path
    metadata: ModelMetadata
    opset: int
    parity: list[SizeReport] = field(default_factory=list)


def default_parity_sizes(image_size: tuple[int, int]) -> list[tuple[int, int]]:
    """The export size and a different, non-square one (3/4 height, 5/4 width, multiples of 8)."""
    h, w = image_size
    other = (max(32, (h * 3 // 4) // 8 * 8), max(32, (w * 5 // 4) // 8 * 8))
    return [(h, w), other]


def _as_hw(image_size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    if len(image_size) != 2 or any(not isinstance(s, int) or s < 32 for s in image_size):
        raise ValueError(f"image_size: expected an int or (height, width) of ints >= 32, got {image_size!r}")
    return int(image_size[0]), int(image_size[1])


def export_model(
    model: nn.Module,
    out_path: str | os.PathLike,
    image_size: int | tuple[int, int],
    metadata: ModelMetadata,
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
    parity_sizes: list[tuple[int, int]] | None = None,
    tolerances: Tolerances | None = None,
    budget: dict[str, float | int] | None = None,
) -> ExportResult:
    """Export `model` (an AmodalRCNN with `forward_export`) to `out_path` and verify it.

    Args:
        model: the network; put in eval mode (the caller's mode is restored afterwards).
        out_path: the .onnx file to write (written atomically: a failed export leaves no file).
        image_size: size of the example frame traced (int = square); the graph has dynamic H/W.
        metadata: embedded as ONNX metadata_props (contract version, class names, ...).
        opset: ONNX opset, >= 11.
        verify: run the ONNX Runtime vs PyTorch parity check (raises ParityError on mismatch).
        parity_sizes: (height, width) frames for the check; default: the export size and another.
        budget: the test-time budget the model was set to (`training.export.budget`), recorded in the
            metadata (`mtl_grasp.test_budget`) for the record; the graph already has it baked in.
    """
    if not hasattr(model, "forward_export"):
        raise ValueError(f"model: expected an AmodalRCNN with forward_export(), got {type(model).__name__}")
    if not isinstance(opset, int) or opset < MIN_OPSET:
        raise ValueError(f"opset: expected an int >= {MIN_OPSET}, got {opset!r}")
    metadata.check_compatible(source="metadata")
    hw = _as_hw(image_size)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)

    was_training = model.training
    model.eval()
    try:
        rgb, depth = frame_tensors(*synthetic_frame(*hw, seed=1234))
        fd, tmp_name = tempfile.mkstemp(suffix=".onnx", dir=out_path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            _write_onnx(model, rgb, depth, tmp, opset, metadata, budget)
            result = ExportResult(path=out_path, metadata=metadata, opset=opset)
            if verify:
                result.parity = check_parity(model, tmp, parity_sizes or default_parity_sizes(hw), tolerances)
                for report in result.parity:
                    log.info("parity %s", report.summary())
            os.replace(tmp, out_path)
        finally:
            tmp.unlink(missing_ok=True)
    finally:
        model.train(was_training)
    return result


def _write_onnx(
    model: nn.Module,
    rgb: torch.Tensor,
    depth: torch.Tensor,
    path: Path,
    opset: int,
    metadata: ModelMetadata,
    budget: dict[str, float | int] | None,
) -> None:
    """Trace to `path`, apply the graph rewrites, embed the metadata and run the full ONNX checker."""
    _trace_to_onnx(model, rgb, depth, path, opset)
    proto = onnx.load(str(path))
    rewritten = conv_transpose_2x2_to_conv(proto)
    log.info("rewrote %d 2x2 ConvTranspose nodes as Conv + DepthToSpace", rewritten)
    del proto.metadata_props[:]
    for key, value in metadata.to_dict().items():
        proto.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    if budget:
        proto.metadata_props.append(
            onnx.StringStringEntryProto(key=META_TEST_BUDGET, value=json.dumps(budget, sort_keys=True))
        )
    proto.doc_string = "mtl_grasp RGB-D amodal instance segmentation (see mtl_grasp/contract.py)"
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))


def _merge_levels_by_gather(levels: Tensor, unmerged_results: list[Tensor]) -> Tensor:
    """Traced replacement of torchvision's `_onnx_merge_levels` (same result, cheaper graph).

    torchvision puts each FPN level's ROI features back in ROI order with one full-size
    ScatterElements per level plus an index expanded to [R, C, 7, 7] int64; on CPU that costs more
    than ROI Align itself. Here the levels are concatenated and one Gather with a 1-D inverse
    permutation restores the order.
    """
    order = torch.cat([torch.where(levels == level)[0] for level in range(len(unmerged_results))])
    positions = torch.arange(order.size(0), dtype=order.dtype, device=order.device)
    inverse = torch.zeros_like(order).scatter(0, order, positions)
    return torch.cat(unmerged_results, dim=0).index_select(0, inverse)


@contextlib.contextmanager
def _export_friendly_roi_merge() -> Iterator[None]:
    """Swap in `_merge_levels_by_gather` while tracing (torchvision only calls it when tracing)."""
    original = getattr(tv_poolers, "_onnx_merge_levels", None)
    if original is None:  # another torchvision layout: keep its own implementation
        yield
        return
    tv_poolers._onnx_merge_levels = _merge_levels_by_gather
    try:
        yield
    finally:
        tv_poolers._onnx_merge_levels = original


def _trace_to_onnx(model: nn.Module, rgb: torch.Tensor, depth: torch.Tensor, path: Path, opset: int) -> None:
    dynamic_axes: dict[str, dict[int, str]] = {
        INPUT_RGB: {2: "height", 3: "width"},
        INPUT_DEPTH: {2: "height", 3: "width"},
    }
    for name in OUTPUT_NAMES:
        dynamic_axes[name] = {0: "detections"}
    with warnings.catch_warnings(), _export_friendly_roi_merge():
        # The TorchScript exporter is deprecated (we choose it deliberately, see module docstring) and
        # torchvision's traced code emits TracerWarnings for Python ints it knows to be constant.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script deprecation inside torchvision
        torch.onnx.export(
            _ExportWrapper(model),
            (rgb, depth),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )


def onnx_input_shape_is_dynamic(path: str | os.PathLike) -> bool:
    """True when the model's rgb input has symbolic (not fixed) height and width."""
    graph = onnx.load(str(path), load_external_data=False).graph
    rgb = next(i for i in graph.input if i.name == INPUT_RGB)
    dims = rgb.type.tensor_type.shape.dim
    return all(d.dim_param and not d.HasField("dim_value") for d in dims[2:])


__all__ = ["ExportResult", "export_model", "default_parity_sizes", "onnx_input_shape_is_dynamic"]
