"""BBox / VMask / AMask COCO metrics with stock pycocotools.

Protocols (the UOAIS amodal-visible evaluation, with stock pycocotools):
- ``bbox``: predicted amodal boxes vs the GT amodal ``bbox``;
- ``amask``: predicted amodal masks vs the GT amodal ``segmentation``;
- ``vmask``: predicted visible masks vs the GT ``visible_mask`` (the GT's ``segmentation`` and ``area``
  are replaced by the visible mask and its area). GT objects with an empty visible mask are left out:
  no prediction can ever match them, so they would only measure the GT, not the model.
Every kind reports mAP (IoU .50:.95), AP50, AP75, size splits APs/APm/APl, AR1, AR10, mAR (AR@100) and
ARs/ARm/ARl, as pycocotools' ``COCOeval.stats``; -1 means the split has no GT (pycocotools convention).
Predictions carry 1-based labels indexing the GT categories sorted by id.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mtl_grasp.evaluation.occlusion import occlusion_metrics
from mtl_grasp.evaluation.predictions import check_prediction, encode_masks, segmentation_to_rle

IOU_TYPES = ("bbox", "vmask", "amask")
#: names of COCOeval.stats in order
METRIC_NAMES = ("mAP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "mAR", "ARs", "ARm", "ARl")


def metric_keys(kinds: Sequence[str] = IOU_TYPES) -> list[str]:
    """['bbox/mAP', 'bbox/AP50', ...] for `kinds`."""
    return [f"{kind}/{name}" for kind in kinds for name in METRIC_NAMES]


def load_gt(gt: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """A COCO JSON dict (from a path or as given); raise ValueError when it lacks COCO sections."""
    if isinstance(gt, (str, Path)):
        path = Path(gt)
        if not path.is_file():
            raise FileNotFoundError(f"gt: no such COCO JSON file {str(path)!r}")
        data = json.loads(path.read_text())
    else:
        data = dict(gt)
    for section in ("images", "annotations", "categories"):
        if section not in data:
            raise ValueError(
                f"gt: COCO JSON lacks the {section!r} section; expected images, annotations, categories"
            )
    return data


def gt_for(gt: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """The GT dataset pycocotools should see for `kind` (see the module docstring)."""
    if kind not in IOU_TYPES:
        raise ValueError(f"kind: expected one of {IOU_TYPES}, got {kind!r}")
    data = copy.deepcopy(dict(gt))
    if kind != "vmask":
        return data
    sizes = {img["id"]: (img["height"], img["width"]) for img in data["images"]}
    kept = []
    for ann in data["annotations"]:
        if "visible_mask" not in ann:
            raise ValueError(
                f"gt: annotation {ann.get('id')} has no 'visible_mask'; VMask needs UOAIS fields"
            )
        h, w = sizes[ann["image_id"]]
        rle = segmentation_to_rle(ann["visible_mask"], h, w)
        area = float(mask_utils.area(rle))
        if area <= 0:
            continue
        ann["segmentation"] = rle
        ann["area"] = area
        ann["bbox"] = [float(v) for v in mask_utils.toBbox(rle)]
        kept.append(ann)
    data["annotations"] = kept
    return data


def _coco(dataset: dict[str, Any]) -> COCO:
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def coco_results(
    predictions: Mapping[int, Mapping[str, Any]], gt: Mapping[str, Any], kind: str
) -> list[dict[str, Any]]:
    """COCO result entries (as in a results JSON file) of `predictions` for `kind`."""
    if kind not in IOU_TYPES:
        raise ValueError(f"kind: expected one of {IOU_TYPES}, got {kind!r}")
    images = {img["id"]: img for img in gt["images"]}
    cat_ids = sorted(c["id"] for c in gt["categories"])
    out: list[dict[str, Any]] = []
    for image_id, raw in predictions.items():
        if image_id not in images:
            raise ValueError(f"predictions: image id {image_id!r} is not in the GT images")
        img = images[image_id]
        pred = check_prediction(raw, image_id, img["height"], img["width"])
        labels = pred["labels"].astype(np.int64)
        if labels.size and (labels.min() < 1 or labels.max() > len(cat_ids)):
            raise ValueError(
                f"predictions[{image_id}].labels: expected 1-based labels in [1, {len(cat_ids)}], "
                f"got range [{labels.min()}, {labels.max()}]"
            )
        scores = pred["scores"].astype(float)
        if kind == "bbox":
            b = pred["boxes"].astype(float)
            for i in range(len(scores)):
                out.append({
                    "image_id": image_id,
                    "category_id": cat_ids[labels[i] - 1],
                    "bbox": [b[i, 0], b[i, 1], b[i, 2] - b[i, 0], b[i, 3] - b[i, 1]],
                    "score": scores[i],
                })
        else:
            masks = pred["visible_masks" if kind == "vmask" else "amodal_masks"].astype(bool)
            for i, rle in enumerate(encode_masks(masks)):
                out.append({
                    "image_id": image_id,
                    "category_id": cat_ids[labels[i] - 1],
                    "segmentation": rle,
                    "score": scores[i],
                })
    return out


def _evaluate_kind(gt_data: dict[str, Any], results: list[dict[str, Any]], kind: str) -> list[float]:
    coco_gt = _coco(gt_data)
    with contextlib.redirect_stdout(io.StringIO()):
        if results:
            coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        else:
            # loadRes cannot take an empty list; an empty result set is a valid (all-zero) answer.
            empty = {"images": gt_data["images"], "annotations": [], "categories": gt_data["categories"]}
            coco_dt = _coco(empty)
        ev = COCOeval(coco_gt, coco_dt, "bbox" if kind == "bbox" else "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats]


def evaluate(
    gt: Mapping[str, Any] | str | Path,
    predictions: Mapping[int, Mapping[str, Any]],
    kinds: Sequence[str] = IOU_TYPES,
    occlusion: bool = True,
) -> dict[str, float]:
    """COCO metrics for `kinds` (+ occlusion accuracy/F1) of `predictions` keyed by COCO image id.

    Images of the GT without an entry in `predictions` count as images with no detections.
    """
    data = load_gt(gt)
    metrics: dict[str, float] = {}
    for kind in kinds:
        gt_data = gt_for(data, kind)
        stats = _evaluate_kind(gt_data, coco_results(predictions, data, kind), kind)
        metrics.update({f"{kind}/{name}": value for name, value in zip(METRIC_NAMES, stats)})
    if occlusion:
        metrics.update(occlusion_metrics(data, predictions))
    return metrics
