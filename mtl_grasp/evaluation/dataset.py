"""Evaluate any frame predictor on a MetaGraspNet-layout dataset split: THE dataset evaluation loop.

    from mtl_grasp.evaluation.dataset import evaluate_dataset
    metrics = evaluate_dataset(Detector("model.onnx", score_threshold=0.0), "data/synthetic", "val")

A predictor is anything called as `predictor(rgb uint8 HxWx3, depth float32 HxW metres)` that returns
`Detections` (the ONNX `Detector`, `training.export.TorchFramePredictor`) or the per-image prediction
dict of `mtl_grasp.evaluation`. The ONNX evaluation (`python -m training evaluate --onnx`,
`python -m mtl_grasp.runtime.evaluate`) and the corruption sweep (`mtl_grasp.evaluation.robustness`)
all run through here. Image ids are those of `mtl_grasp.data.coco.build_coco` on the same views.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mtl_grasp.evaluation.coco_metrics import evaluate

Prediction = dict[str, np.ndarray]
Predictor = Callable[[np.ndarray, np.ndarray], Any]
#: (rgb, depth, image_id) -> (rgb, depth): a corruption applied to one frame before prediction
FrameTransform = Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def as_prediction(result: Any) -> Prediction:
    """A predictor's result as the evaluation dict (`Detections.to_prediction()` or a mapping)."""
    to_prediction = getattr(result, "to_prediction", None)
    if callable(to_prediction):
        return to_prediction()
    if isinstance(result, Mapping):
        return dict(result)
    raise TypeError(f"predictor: expected Detections or a prediction dict, got {type(result).__name__}")


def dataset_views(
    root: str | Path,
    split: str | None = None,
    splits_file: str | Path | None = None,
    max_images: int = 0,
) -> list:
    """The views (`ViewRef`) of `split` under `root`, only the first `max_images` (0 = all)."""
    from mtl_grasp.data.reader import discover_views, select_split

    if max_images < 0:
        raise ValueError(f"max_images: expected >= 0 (0 = all), got {max_images}")
    views = select_split(discover_views(root), split, splits_file)
    return views[:max_images] if max_images > 0 else views


def iter_frames(views: Iterable) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(image id, rgb, depth) of each view, read one at a time (a single pass holds one frame)."""
    from mtl_grasp.data.reader import load_view

    for ref in views:
        sample = load_view(ref)
        yield ref.image_id, sample.rgb, sample.depth


def load_frames(views: Sequence) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(image id, rgb, depth) of every view, kept in memory (sweeps evaluate the same frames many times)."""
    return list(iter_frames(views))


def predict_frames(
    predictor: Predictor,
    frames: Iterable[tuple[int, np.ndarray, np.ndarray]],
    transform: FrameTransform | None = None,
) -> dict[int, Prediction]:
    """Predictions keyed by image id; `transform` (e.g. a corruption) is applied to each frame first."""
    predictions: dict[int, Prediction] = {}
    for image_id, rgb, depth in frames:
        if transform is not None:
            rgb, depth = transform(rgb, depth, image_id)
        predictions[image_id] = as_prediction(predictor(rgb, depth))
    return predictions


def dataset_gt(root: str | Path, views: Sequence, split: str | None = None) -> dict[str, Any]:
    """The class-agnostic COCO ground truth of exactly `views` (as `python -m training coco` builds it)."""
    from mtl_grasp.data.coco import build_coco

    return build_coco(root, split, views=views)


def evaluate_dataset(
    predictor: Predictor,
    root: str | Path,
    split: str | None = None,
    splits_file: str | Path | None = None,
    max_images: int = 0,
    gt: Mapping[str, Any] | str | Path | None = None,
) -> dict[str, float]:
    """COCO BBox / VMask / AMask metrics and occlusion accuracy/F1 of `predictor` on a dataset split.

    `gt` is the COCO JSON (path or dict) of the same views; by default it is built from `root`.
    """
    views = dataset_views(root, split, splits_file, max_images)
    if not views:
        raise ValueError(f"root: no views in split {split!r} of {str(root)!r}")
    predictions = predict_frames(predictor, iter_frames(views))
    return evaluate(dataset_gt(root, views, split) if gt is None else gt, predictions)
