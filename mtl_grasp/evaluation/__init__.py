"""COCO-style evaluation of amodal instance predictions (numpy + stock pycocotools; no torch).

    metrics = evaluate(gt_json_or_dict, predictions)   # {"bbox/mAP": ..., "vmask/AP50": ..., "occ/f1": ...}

`predictions` maps a COCO image id to a per-image dict with full-resolution masks
(`Detections.to_prediction()` gives one). See `coco_metrics` for the three mask/box protocols and
`occlusion` for the occlusion classification metrics.
"""

from mtl_grasp.evaluation.coco_metrics import (
    IOU_TYPES,
    METRIC_NAMES,
    coco_results,
    evaluate,
    gt_for,
    load_gt,
    metric_keys,
)
from mtl_grasp.evaluation.occlusion import OCCLUSION_KEYS, occlusion_metrics

__all__ = [
    "IOU_TYPES",
    "METRIC_NAMES",
    "OCCLUSION_KEYS",
    "coco_results",
    "evaluate",
    "gt_for",
    "load_gt",
    "metric_keys",
    "occlusion_metrics",
]
