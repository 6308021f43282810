"""Dense-task metrics accumulated over a whole evaluation set (numpy; no torch).

    ev = DenseEvaluator(("segmentation", "depth", "normal"), num_classes=13)
    for batch: ev.update(predictions, targets)        # numpy arrays in the batch layout below
    metrics = ev.compute()                             # {"segmentation/miou": ..., "normal/median": ...}

Batch layout (the torch batch moved to numpy): ``segmentation`` int ``[B, H, W]`` (predicted class;
target -1 = ignore), ``depth`` ``[B, 1, H, W]`` (target 0 = invalid), ``normal`` ``[B, 3, H, W]``
(target zero vector = invalid), ``instance`` ``[B, 2, H, W]`` with the target's ``instance_mask``
``[B, 1, H, W]``.

Definitions (docs/dense.md has the sources):

* mIoU from one confusion matrix over all pixels of the set: ``IoU_c = TP_c / (TP_c + FP_c + FN_c)``,
  averaged over the classes that occur in the ground truth or the predictions (a class with an empty
  union has no IoU and is left out, as ``np.nanmean`` in SamsungLabs/MTL does); pixel accuracy =
  trace / valid pixels. Rows of the matrix are ground truth, columns predictions (scikit-learn's
  ``confusion_matrix`` convention).
* depth absolute / relative error: ``sum |p - t|`` and ``sum |p - t| / t`` over every valid pixel of the
  set, divided by the number of valid pixels (a global pixel mean, what LibMTL's pixel-weighted batch
  average amounts to).
* normal angle: ``arccos`` of the cosine between the unit prediction and the unit target, in degrees,
  over valid pixels; mean, **true median** and the fractions below 11.25, 22.5 and 30 degrees. All
  angles are kept (float32, 4 bytes per valid pixel: about 290 MB for NYU-v2's 654 test images at
  288x384), so the median is the exact median of the set, as LibMTL's ``np.median`` over all
  concatenated angles, not an average of per-batch medians.
* instance L1: ``sum |p - t|`` over both offset components of every instance pixel, divided by
  twice the number of instance pixels (SamsungLabs/MTL's per-component mean).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from mtl_grasp.data.dense.layout import IGNORE_LABEL

NORMAL_THRESHOLDS = (11.25, 22.5, 30.0)
# +1: higher is better, -1: lower is better
METRIC_DIRECTIONS: dict[str, int] = {
    "segmentation/miou": 1,
    "segmentation/pixel_acc": 1,
    "depth/abs_err": -1,
    "depth/rel_err": -1,
    "normal/mean": -1,
    "normal/median": -1,
    **{f"normal/within_{t:g}": 1 for t in NORMAL_THRESHOLDS},
    "instance/l1": -1,
}


def metric_keys(tasks: Sequence[str]) -> tuple[str, ...]:
    """The ``"<task>/<metric>"`` keys `DenseEvaluator(tasks).compute()` returns, task by task."""
    unknown = [t for t in tasks if not any(k.split("/", 1)[0] == t for k in METRIC_DIRECTIONS)]
    if unknown:
        known = sorted({k.split("/", 1)[0] for k in METRIC_DIRECTIONS})
        raise ValueError(f"tasks: no metrics for {unknown}; known: {known}")
    return tuple(k for t in tasks for k in METRIC_DIRECTIONS if k.split("/", 1)[0] == t)


def _same_shape(pred: np.ndarray, target: np.ndarray, what: str) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"{what}: prediction shape {pred.shape} differs from target shape {target.shape}")


class SegmentationMeter:
    """Confusion matrix ``[K, K]`` (rows ground truth, columns prediction) over every scored pixel."""

    def __init__(self, num_classes: int) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes: expected >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.confusion = np.zeros((num_classes, num_classes), np.int64)

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        """``pred``: predicted class per pixel; ``target``: class or -1 (ignored)."""
        _same_shape(pred, target, "segmentation")
        k = self.num_classes
        valid = target != IGNORE_LABEL
        t, p = target[valid].astype(np.int64), pred[valid].astype(np.int64)
        for name, values in (("target", t), ("prediction", p)):
            if values.size and (values.min() < 0 or values.max() >= k):
                raise ValueError(
                    f"segmentation: {name} classes must lie in 0..{k - 1}, "
                    f"found {values.min()}..{values.max()}"
                )
        self.confusion += np.bincount(k * t + p, minlength=k * k).reshape(k, k)

    def iou(self) -> np.ndarray:
        """``[K]`` IoU per class; NaN for a class absent from both ground truth and predictions."""
        tp = np.diag(self.confusion).astype(np.float64)
        union = self.confusion.sum(0) + self.confusion.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    def compute(self) -> dict[str, float]:
        total = self.confusion.sum()
        iou = self.iou()
        return {
            "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
            "pixel_acc": float(np.trace(self.confusion) / total) if total else float("nan"),
        }


class DepthMeter:
    """Absolute and relative error over every valid (target > 0) pixel of the set."""

    def __init__(self) -> None:
        self.abs_sum, self.rel_sum, self.count = 0.0, 0.0, 0

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        _same_shape(pred, target, "depth")
        valid = target > 0
        t, p = target[valid].astype(np.float64), pred[valid].astype(np.float64)
        err = np.abs(p - t)
        self.abs_sum += float(err.sum())
        self.rel_sum += float((err / t).sum())
        self.count += int(valid.sum())

    def compute(self) -> dict[str, float]:
        n = self.count
        return {
            "abs_err": self.abs_sum / n if n else float("nan"),
            "rel_err": self.rel_sum / n if n else float("nan"),
        }


def angle_errors(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Angles in degrees between ``pred`` and ``target`` ``[B, 3, H, W]`` normals at the valid pixels
    (target not the zero vector), both normalised; a zero prediction counts as 90 degrees."""
    valid = np.any(target != 0, axis=1)  # [B, H, W]
    p = np.moveaxis(pred, 1, -1)[valid].astype(np.float64)  # [N, 3]
    t = np.moveaxis(target, 1, -1)[valid].astype(np.float64)
    p_norm = np.linalg.norm(p, axis=1)
    cos = (p * t).sum(1) / (np.maximum(p_norm, 1e-12) * np.linalg.norm(t, axis=1))
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


class NormalMeter:
    """Angular error statistics over every valid pixel; keeps all angles for the exact median."""

    def __init__(self, thresholds: Sequence[float] = NORMAL_THRESHOLDS) -> None:
        self.thresholds = tuple(thresholds)
        self.angles: list[np.ndarray] = []

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        _same_shape(pred, target, "normal")
        if pred.ndim != 4 or pred.shape[1] != 3:
            raise ValueError(f"normal: expected [B, 3, H, W], found {pred.shape}")
        self.angles.append(angle_errors(pred, target).astype(np.float32))

    def compute(self) -> dict[str, float]:
        angles = np.concatenate(self.angles) if self.angles else np.zeros(0, np.float32)
        if angles.size == 0:
            return {
                "mean": float("nan"),
                "median": float("nan"),
                **{f"within_{t:g}": float("nan") for t in self.thresholds},
            }
        out = {"mean": float(angles.astype(np.float64).mean()), "median": float(np.median(angles))}
        out.update({f"within_{t:g}": float((angles < t).mean()) for t in self.thresholds})
        return out


class InstanceMeter:
    """Mean absolute offset error per component over every instance pixel of the set."""

    def __init__(self) -> None:
        self.abs_sum, self.count = 0.0, 0

    def update(self, pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> None:
        _same_shape(pred, target, "instance")
        full = np.broadcast_to(mask.astype(bool), target.shape)
        self.abs_sum += float(np.abs(pred[full].astype(np.float64) - target[full]).sum())
        self.count += int(full.sum())

    def compute(self) -> dict[str, float]:
        return {"l1": self.abs_sum / self.count if self.count else float("nan")}


_Batch = Mapping[str, np.ndarray]
METERS: dict[str, Callable[[int], object]] = {
    "segmentation": SegmentationMeter,
    "depth": lambda k: DepthMeter(),
    "normal": lambda k: NormalMeter(),
    "instance": lambda k: InstanceMeter(),
}
# what each task's meter reads from (predictions, targets)
_FEED: dict[str, Callable[[object, _Batch, _Batch], None]] = {
    "segmentation": lambda m, p, t: m.update(p["segmentation"], t["segmentation"]),  # type: ignore[attr-defined]
    "depth": lambda m, p, t: m.update(p["depth"], t["depth"]),  # type: ignore[attr-defined]
    "normal": lambda m, p, t: m.update(p["normal"], t["normal"]),  # type: ignore[attr-defined]
    "instance": lambda m, p, t: m.update(p["instance"], t["instance"], t["instance_mask"]),  # type: ignore[attr-defined]
}


class DenseEvaluator:
    """One meter per task; ``update`` per batch, ``compute`` once for the whole set (module docstring)."""

    def __init__(self, tasks: Sequence[str], num_classes: int = 0) -> None:
        unknown = [t for t in tasks if t not in METERS]
        if unknown:
            raise ValueError(f"tasks: no metrics for {unknown}; known: {sorted(METERS)}")
        if "segmentation" in tasks and num_classes < 1:
            raise ValueError("num_classes: required (>= 1) when segmentation is scored")
        self.tasks = tuple(tasks)
        self.meters = {t: METERS[t](num_classes) for t in self.tasks}

    def update(self, predictions: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray]) -> None:
        for task, meter in self.meters.items():
            _FEED[task](meter, predictions, targets)

    def compute(self) -> dict[str, float]:
        """``{"<task>/<metric>": value}`` over everything seen (keys of `METRIC_DIRECTIONS`)."""
        out: dict[str, float] = {}
        for task, meter in self.meters.items():
            out.update({f"{task}/{k}": v for k, v in meter.compute().items()})  # type: ignore[attr-defined]
        return out
