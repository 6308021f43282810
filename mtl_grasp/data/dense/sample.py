"""`DenseSample`: one image with its dense targets, in the units of :mod:`mtl_grasp.data.dense.layout`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class DenseSample:
    """One image and its per-pixel targets (numpy, no torch).

    Attributes:
        image: ``[H, W, 3]`` float32 RGB in ``[0, 1]``.
        label: ``[H, W]`` int64 class index ``0..K-1``; ``-1`` = ignore.
        depth: ``[H, W]`` float32; ``0`` = invalid. Metres for NYU-v2; for CityScapes the reader's
            encoding (disparity in pixels, or the value stored in the MTAN download).
        normal: ``[H, W, 3]`` float32 unit normals (x right, y, z in the camera frame); the zero vector
            marks an invalid pixel. ``None`` for datasets without the normal task.
        instance: ``[H, W, 2]`` float32 ``(dy, dx)``: offset of the pixel from the centroid of its
            instance, as fractions of ``(H - 1, W - 1)``; 0 where ``instance_mask`` is False.
        instance_mask: ``[H, W]`` bool, True on pixels that belong to an instance.
        source: the file (or sample name) the sample was read from, for messages.
    """

    image: np.ndarray
    label: np.ndarray
    depth: np.ndarray
    normal: np.ndarray | None = None
    instance: np.ndarray | None = None
    instance_mask: np.ndarray | None = None
    source: str = ""

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return int(self.image.shape[0]), int(self.image.shape[1])

    def targets(self, tasks: tuple[str, ...]) -> dict[str, np.ndarray]:
        """The arrays the given tasks train on: ``segmentation``, ``depth``, ``normal``, and for
        ``instance`` both ``instance`` and ``instance_mask``. A task whose target is absent raises
        ValueError naming the sample."""
        fields = {
            "segmentation": ("segmentation", self.label),
            "depth": ("depth", self.depth),
            "normal": ("normal", self.normal),
            "instance": ("instance", self.instance),
        }
        out: dict[str, np.ndarray] = {}
        for task in tasks:
            if task not in fields:
                raise ValueError(f"tasks: unknown task {task!r}; known: {sorted(fields)}")
            key, value = fields[task]
            if value is None:
                raise ValueError(f"{self.source}: has no {task!r} target")
            out[key] = value
            if task == "instance":
                if self.instance_mask is None:
                    raise ValueError(f"{self.source}: has instance offsets but no instance_mask")
                out["instance_mask"] = self.instance_mask
        return out


class DenseReader(Protocol):
    """What `NpyDenseReader` and `CityscapesReader` offer (and the torch dataset relies on)."""

    tasks: tuple[str, ...]
    num_classes: int
    depth_kind: str  # "depth" (metres) or "disparity" (inverse depth): augmentation scales them oppositely

    def __len__(self) -> int: ...

    def read(self, index: int, allow_empty: bool = False) -> DenseSample: ...
