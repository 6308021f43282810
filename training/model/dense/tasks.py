"""The dense tasks as a registry: output channels, loss and prediction of each (no if-chain elsewhere).

A task's name is also its loss name and its key in the batch targets. Adding a task is one entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from torch import Tensor

from training.model.dense.losses import (
    depth_loss,
    instance_loss,
    normal_loss,
    segmentation_loss,
    unit_normals,
)


def _identity(x: Tensor) -> Tensor:
    return x


@dataclass(frozen=True)
class DenseTask:
    """One per-pixel task.

    ``channels(num_classes)`` is the head's output width; ``loss(pred, targets)`` reads the batch
    targets it needs (``target_keys``); ``predict(pred)`` turns the head output (at the input size)
    into the prediction the metrics score.
    """

    name: str
    channels: Callable[[int], int]
    loss: Callable[[Tensor, Mapping[str, Tensor]], Tensor]
    predict: Callable[[Tensor], Tensor]
    target_keys: tuple[str, ...]


DENSE_TASKS: dict[str, DenseTask] = {
    task.name: task
    for task in (
        DenseTask(
            "segmentation", lambda k: k, lambda p, t: segmentation_loss(p, t["segmentation"]), _identity,
            ("segmentation",),
        ),
        DenseTask("depth", lambda k: 1, lambda p, t: depth_loss(p, t["depth"]), _identity, ("depth",)),
        DenseTask("normal", lambda k: 3, lambda p, t: normal_loss(p, t["normal"]), unit_normals, ("normal",)),
        DenseTask(
            "instance", lambda k: 2, lambda p, t: instance_loss(p, t["instance"], t["instance_mask"]),
            _identity, ("instance", "instance_mask"),
        ),
    )
}  # fmt: skip


def dense_task(name: str) -> DenseTask:
    """The registered task ``name``; an unknown name raises ValueError with the known ones."""
    if name not in DENSE_TASKS:
        raise ValueError(f"tasks: unknown dense task {name!r}; known: {sorted(DENSE_TASKS)}")
    return DENSE_TASKS[name]


# The batch targets: key -> (channels of [B, C, H, W], or None for [B, H, W]; dtype kind)
TARGET_LAYOUT: dict[str, tuple[int | None, str]] = {
    "segmentation": (None, "int64"),  # class index, -1 = ignore
    "depth": (1, "float"),  # 0 = invalid
    "normal": (3, "float"),  # unit vectors, zero vector = invalid
    "instance": (2, "float"),  # (dy, dx) offsets to the instance centroid, fractions of (H - 1, W - 1)
    "instance_mask": (1, "bool"),  # True on instance pixels
}
