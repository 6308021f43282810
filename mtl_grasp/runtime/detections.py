"""The result of running the detector on one camera frame."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Timings:
    """Wall-clock milliseconds of the three stages of one call."""

    pre_ms: float = 0.0
    infer_ms: float = 0.0
    post_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return self.pre_ms + self.infer_ms + self.post_ms


@dataclass
class Detections:
    """Instances found in one frame, best score first, all in camera-image pixels.

    Fields (N = number of instances, H x W = camera image size):
        boxes: float32 [N, 4] amodal boxes x1, y1, x2, y2.
        scores: float32 [N] in [0, 1].
        labels: int64 [N], 1-based index into `class_names` (0 = background never appears).
        class_names: the model's class names (not per instance; see `label_names`).
        visible_masks: bool [N, H, W].
        amodal_masks: bool [N, H, W] (the whole object, including occluded parts).
        occlusion: float32 [N] probability that the instance is occluded.
        timings: pre/infer/post milliseconds of the call that produced this.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    visible_masks: np.ndarray
    amodal_masks: np.ndarray
    occlusion: np.ndarray
    timings: Timings = field(default_factory=Timings)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def label_names(self) -> list[str]:
        """The class name of each instance."""
        return [self.class_names[int(label) - 1] for label in self.labels]

    def occluded(self, threshold: float = 0.5) -> np.ndarray:
        """bool [N]: the occlusion decision at `threshold`."""
        return self.occlusion >= threshold

    def to_prediction(self) -> dict[str, np.ndarray]:
        """The per-image prediction dict of mtl_grasp.evaluation (full-resolution bool masks)."""
        return {
            "boxes": self.boxes,
            "scores": self.scores,
            "labels": self.labels,
            "visible_masks": self.visible_masks,
            "amodal_masks": self.amodal_masks,
            "occlusion": self.occlusion,
        }

    @classmethod
    def empty(cls, height: int, width: int, class_names: list[str]) -> Detections:
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            labels=np.zeros((0,), np.int64),
            class_names=list(class_names),
            visible_masks=np.zeros((0, height, width), bool),
            amodal_masks=np.zeros((0, height, width), bool),
            occlusion=np.zeros((0,), np.float32),
        )
