"""Validation and COCO encoding of per-image prediction dicts and of ground-truth segmentations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

#: fields of a per-image prediction; masks are full resolution, boxes x1, y1, x2, y2 pixels
PREDICTION_FIELDS = ("boxes", "scores", "labels", "visible_masks", "amodal_masks", "occlusion")


def check_prediction(
    pred: Mapping[str, Any], image_id: int, height: int, width: int
) -> dict[str, np.ndarray]:
    """Return the prediction as numpy arrays; raise ValueError naming the image and the bad field."""
    where = f"predictions[{image_id}]"
    missing = [k for k in PREDICTION_FIELDS if k not in pred]
    if missing:
        raise ValueError(f"{where}: missing fields {missing}; expected {list(PREDICTION_FIELDS)}")
    out = {k: np.asarray(pred[k]) for k in PREDICTION_FIELDS}
    n = out["scores"].shape[0] if out["scores"].ndim == 1 else -1
    if n < 0:
        raise ValueError(f"{where}.scores: expected shape [N], got {out['scores'].shape}")
    expected = {
        "boxes": (n, 4),
        "labels": (n,),
        "occlusion": (n,),
        "visible_masks": (n, height, width),
        "amodal_masks": (n, height, width),
    }
    for key, shape in expected.items():
        if out[key].shape != shape:
            raise ValueError(
                f"{where}.{key}: expected shape {list(shape)} (N = {n} scores, image {height}x{width}), "
                f"got {list(out[key].shape)}"
            )
    return out


def encode_masks(masks: np.ndarray) -> list[dict[str, Any]]:
    """bool [N, H, W] -> COCO RLEs with `counts` as str (JSON-serialisable)."""
    if masks.shape[0] == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.astype(np.uint8).transpose(1, 2, 0)))
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def segmentation_to_rle(segm: Any, height: int, width: int) -> dict[str, Any]:
    """Any COCO segmentation (compressed RLE, uncompressed RLE, polygons) -> compressed RLE."""
    if isinstance(segm, list):
        return mask_utils.merge(mask_utils.frPyObjects(segm, height, width))
    if isinstance(segm.get("counts"), list):
        return mask_utils.frPyObjects(segm, height, width)
    return segm
