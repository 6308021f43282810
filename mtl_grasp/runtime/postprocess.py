"""Network outputs -> full-resolution detections (numpy/opencv only).

`decode` is THE detection decoding of the project (score filter, top-k, boxes back to camera pixels,
mask pasting with `paste_masks`): the ONNX `Detector`, the torch evaluation and the runtime benchmark
all call it, so a model decodes and evaluates identically on every path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from mtl_grasp.contract import (
    OUTPUT_AMODAL_MASKS,
    OUTPUT_BOXES,
    OUTPUT_LABELS,
    OUTPUT_NAMES,
    OUTPUT_OCCLUSION,
    OUTPUT_SCORES,
    OUTPUT_VISIBLE_MASKS,
)
from mtl_grasp.runtime.detections import Detections, Timings


def paste_masks(
    boxes: np.ndarray,
    roi_masks: np.ndarray,
    height: int,
    width: int,
    threshold: float = 0.5,
) -> np.ndarray:
    """Paste per-box mask probabilities into full images and threshold them.

    Args:
        boxes: [N, 4] x1, y1, x2, y2 in pixels of the target image.
        roi_masks: [N, M, M] probabilities; cell (i, j) covers the i-th row / j-th column of an
            M x M grid laid over the box.
        height, width: size of the target image.
        threshold: a pixel is in the mask when its bilinearly interpolated probability is >= this.

    Returns:
        bool [N, height, width].

    The M x M grid is mapped onto the box with cell centres at box-relative positions (j + 0.5) / M and
    sampled bilinearly at pixel centres, with zero outside the grid (so masks fade out at the box
    border instead of being cut). Only the box's neighbourhood is resampled (cv2.warpAffine on a
    crop), so the cost grows with box area, not with N x image area. Degenerate boxes (width or height
    <= 0) give empty masks.
    """
    boxes, roi_masks = _check_paste_args(boxes, roi_masks, height, width)
    out = np.zeros((boxes.shape[0], height, width), dtype=bool)
    masks = roi_masks.astype(np.float32, copy=False)
    for i in range(boxes.shape[0]):
        _paste_one(masks[i], boxes[i], out[i], threshold)
    return out


def _check_paste_args(
    boxes: object, roi_masks: object, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    boxes = np.asarray(boxes, dtype=np.float64)
    roi_masks = np.asarray(roi_masks)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes: expected shape [N, 4], got {boxes.shape}")
    if (
        roi_masks.ndim != 3
        or roi_masks.shape[0] != boxes.shape[0]
        or roi_masks.shape[1] != roi_masks.shape[2]
    ):
        raise ValueError(
            f"roi_masks: expected shape [N, M, M] with N = {boxes.shape[0]} (boxes), got {roi_masks.shape}"
        )
    if height <= 0 or width <= 0:
        raise ValueError(f"height, width: expected positive image size, got {height}x{width}")
    return boxes, roi_masks


def _paste_one(mask: np.ndarray, box: np.ndarray, out: np.ndarray, threshold: float) -> None:
    """Paste one M x M probability grid into `out` (bool H x W) over its box's neighbourhood."""
    height, width = out.shape
    m = mask.shape[0]
    bx1, by1, bx2, by2 = box
    bw, bh = bx2 - bx1, by2 - by1
    if not (bw > 0 and bh > 0 and math.isfinite(bw) and math.isfinite(bh)):
        return
    # Crop = pixels whose centres can receive a non-zero sample (one pixel of margin).
    x0, y0 = max(0, math.floor(bx1) - 1), max(0, math.floor(by1) - 1)
    x1, y1 = min(width, math.ceil(bx2) + 1), min(height, math.ceil(by2) + 1)
    if x1 <= x0 or y1 <= y0:
        return
    sx, sy = bw / m, bh / m
    # Mask cell j has its centre at image x = bx1 + (j + 0.5) * sx; cv2 puts pixel x's centre at
    # integer x - 0.5 in continuous coordinates, hence the -0.5, and the crop origin shifts by x0.
    affine = np.array(
        [[sx, 0.0, bx1 + 0.5 * sx - 0.5 - x0], [0.0, sy, by1 + 0.5 * sy - 0.5 - y0]], dtype=np.float64
    )
    crop = cv2.warpAffine(
        mask,
        affine,
        (x1 - x0, y1 - y0),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )
    np.greater_equal(crop, threshold, out=out[y0:y1, x0:x1])


def select(scores: np.ndarray, score_threshold: float, max_instances: int) -> np.ndarray:
    """Indices of the detections to keep: score >= threshold, best `max_instances`, best first."""
    keep = np.flatnonzero(scores >= score_threshold)
    # Stable sort keeps the network's order among equal scores.
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    return keep[:max_instances]


def boxes_to_image(boxes: np.ndarray, scale_x: float, scale_y: float) -> np.ndarray:
    """Map network-input boxes back to camera pixels (float32 [N, 4]).

    No clipping here: the model decides whether boxes are clipped to the image (amodal boxes may
    legitimately extend past it), and the torch evaluation sees the same boxes.
    """
    out = boxes.astype(np.float32, copy=True)
    if scale_x != 1.0 or scale_y != 1.0:
        out /= np.array([scale_x, scale_y, scale_x, scale_y], dtype=np.float32)
    return out


def decode(
    outputs: Mapping[str, np.ndarray],
    height: int,
    width: int,
    class_names: Sequence[str] | None,
    scale_x: float = 1.0,
    scale_y: float = 1.0,
    score_threshold: float = 0.0,
    max_instances: int | None = None,
    mask_threshold: float = 0.5,
    source: str = "model",
) -> Detections:
    """The network's raw contract outputs -> `Detections` in camera pixels.

    Args:
        outputs: the six tensors of `mtl_grasp.contract.OUTPUT_NAMES` as numpy arrays (N detections;
            boxes in network-input pixels, masks [N, 28, 28] probabilities in box coordinates).
        height, width: camera image size the masks are pasted into.
        class_names: the model's class names (labels are 1-based into them); None skips the label
            check (callers that know only the number of classes, e.g. the torch evaluation).
        scale_x, scale_y: network-input pixels per camera pixel (`NetworkInput.scale_x/_y`).
        score_threshold: keep detections with score >= this; max_instances: then the best this many
            (None: all). Only kept detections are pasted.
        mask_threshold: pasted probability at which a pixel belongs to a mask.
        source: names the model in errors.

    Raises RuntimeError when the outputs disagree on N or labels fall outside `class_names` (a broken
    export, not bad input).
    """
    missing = [k for k in OUTPUT_NAMES if k not in outputs]
    if missing:
        raise RuntimeError(f"{source}: outputs lack {missing}")
    out = {k: np.asarray(outputs[k]) for k in OUTPUT_NAMES}
    n = out[OUTPUT_SCORES].shape[0]
    if any(v.shape[0] != n for v in out.values()):
        shapes = {k: v.shape for k, v in out.items()}
        raise RuntimeError(f"{source}: outputs disagree on the number of detections: {shapes}")
    keep = select(out[OUTPUT_SCORES], score_threshold, n if max_instances is None else max_instances)
    labels = out[OUTPUT_LABELS][keep].astype(np.int64, copy=False)
    if class_names is not None and labels.size and (labels.min() < 1 or labels.max() > len(class_names)):
        raise RuntimeError(
            f"{source}: labels {labels.min()}..{labels.max()} outside 1..{len(class_names)} "
            f"(class_names {list(class_names)})"
        )
    boxes = boxes_to_image(out[OUTPUT_BOXES][keep], scale_x, scale_y)
    return Detections(
        boxes=boxes,
        scores=out[OUTPUT_SCORES][keep].astype(np.float32, copy=False),
        labels=labels,
        class_names=list(class_names or ()),
        visible_masks=paste_masks(boxes, out[OUTPUT_VISIBLE_MASKS][keep], height, width, mask_threshold),
        amodal_masks=paste_masks(boxes, out[OUTPUT_AMODAL_MASKS][keep], height, width, mask_threshold),
        occlusion=out[OUTPUT_OCCLUSION][keep].astype(np.float32, copy=False),
        timings=Timings(),
    )
