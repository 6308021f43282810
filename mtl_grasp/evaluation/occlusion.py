"""Occlusion classification: accuracy / precision / recall / F1 over predictions matched to GT.

Each GT object is matched to at most one prediction, greedily by descending score, when the amodal
mask IoU is >= `iou_threshold` (0.5). On matched pairs the predicted class is `occlusion >= 0.5` and the
GT class is `occluded_rate >= OCCLUDED_RATE_THRESHOLD` (UOAIS); "occluded" is the positive class.
Unmatched objects are not counted (detection quality is what the COCO metrics measure); `occ/matched`
tells how many pairs the numbers rest on. With no matched pair every rate is 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from mtl_grasp.contract import OCCLUDED_RATE_THRESHOLD
from mtl_grasp.evaluation.predictions import check_prediction, encode_masks, segmentation_to_rle

OCCLUSION_KEYS = ("occ/accuracy", "occ/precision", "occ/recall", "occ/f1", "occ/matched", "occ/gt")


def _gt_occluded(ann: Mapping[str, Any], height: int, width: int) -> bool:
    if "occluded_rate" in ann:
        return float(ann["occluded_rate"]) >= OCCLUDED_RATE_THRESHOLD
    amodal = float(mask_utils.area(segmentation_to_rle(ann["segmentation"], height, width)))
    visible = float(mask_utils.area(segmentation_to_rle(ann["visible_mask"], height, width)))
    return amodal > 0 and 1.0 - visible / amodal >= OCCLUDED_RATE_THRESHOLD


def occlusion_metrics(
    gt: Mapping[str, Any],
    predictions: Mapping[int, Mapping[str, Any]],
    iou_threshold: float = 0.5,
    decision_threshold: float = 0.5,
) -> dict[str, float]:
    """Occlusion metrics (keys `OCCLUSION_KEYS`) of `predictions` keyed by image id against COCO `gt`."""
    images = {img["id"]: img for img in gt["images"]}
    by_image: dict[int, list[Mapping[str, Any]]] = {}
    for ann in gt["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    tp = fp = tn = fn = 0
    total_gt = len(gt["annotations"])
    for image_id, raw in predictions.items():
        if image_id not in images:
            raise ValueError(f"predictions: image id {image_id!r} is not in the GT images")
        anns = by_image.get(image_id, [])
        h, w = images[image_id]["height"], images[image_id]["width"]
        pred = check_prediction(raw, image_id, h, w)
        if not anns or pred["scores"].shape[0] == 0:
            continue
        order = np.argsort(-pred["scores"], kind="stable")
        dt_rles = encode_masks(pred["amodal_masks"][order].astype(bool))
        gt_rles = [segmentation_to_rle(a["segmentation"], h, w) for a in anns]
        iou = np.asarray(mask_utils.iou(dt_rles, gt_rles, [0] * len(gt_rles)))
        iou = iou.reshape(len(dt_rles), len(gt_rles))  # [D, G]
        taken = np.zeros(len(anns), dtype=bool)
        for row, di in enumerate(order):
            cand = np.where(taken, -1.0, iou[row])
            g = int(np.argmax(cand))
            if cand[g] < iou_threshold:
                continue
            taken[g] = True
            p = bool(pred["occlusion"][di] >= decision_threshold)
            t = _gt_occluded(anns[g], h, w)
            tp += p and t
            fp += p and not t
            fn += (not p) and t
            tn += (not p) and (not t)
    matched = tp + fp + tn + fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "occ/accuracy": (tp + tn) / matched if matched else 0.0,
        "occ/precision": precision,
        "occ/recall": recall,
        "occ/f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "occ/matched": float(matched),
        "occ/gt": float(total_gt),
    }
