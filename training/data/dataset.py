"""Torch dataset over MetaGraspNet-layout folders (real or synthetic), resized to a square training size.

Each item is ``(rgb, depth, target)``:

* ``rgb`` float32 ``[3, S, S]`` in ``[0, 1]`` (area-averaged when shrinking, bilinear when enlarging);
* ``depth`` float32 ``[1, S, S]`` in metres, ``0`` = invalid. Resized with *nearest* so holes stay
  holes and no depth is invented between an object and the floor. It is not normalised here: the
  model normalises with the constants of :mod:`mtl_grasp.contract` (one definition, shared with the
  ONNX runtime);
* ``target`` per docs/architecture.md: ``boxes`` ``[N, 4]`` float32 amodal ``x1, y1, x2, y2`` computed
  from the *resized* amodal masks (right/bottom edges exclusive: a box covers its pixels), ``labels``
  ``[N]`` int64 (1 when class-agnostic, else the MetaGraspNet category id), ``visible_masks`` and
  ``amodal_masks`` ``[N, S, S]`` uint8, ``occluded`` ``[N]`` int64 (``occluded_rate >= 0.05``),
  ``occluded_rate`` ``[N]`` float32 (from the full-resolution masks, as in the COCO ground truth),
  ``image_id`` (int, the id used in the COCO JSON of the same root) and ``orig_size`` ``(H, W)``.

Objects are kept when they have at least ``min_visible_area`` visible pixels at full resolution (as
the COCO conversion does) *and* at least one visible pixel after resizing: an object that vanishes
at the training size cannot be found in the image, and a visible-mask target of zeros would teach
the mask head nothing. A view with no remaining object yields empty targets (``N = 0``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from mtl_grasp.contract import OCCLUDED_RATE_THRESHOLD
from mtl_grasp.data.errors import DataError
from mtl_grasp.data.reader import ViewRef, discover_views, load_view, select_split
from training.data.augment import AugmentConfig, augment
from training.data.batch import RGBDBatch

__all__ = ["MetaGraspNetDataset", "collate_batch", "item_generator", "masks_to_boxes"]

_CV_MAX_CHANNELS = 512  # cv2.resize handles at most this many channels at once


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A generator seeded from (seed, epoch, index) only: reproducible with any worker layout."""
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def _resize_masks(masks: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of bool ``[N, H, W]`` masks to ``[N, size, size]`` uint8."""
    n = masks.shape[0]
    out = np.empty((n, size, size), np.uint8)
    hwc = np.ascontiguousarray(masks.transpose(1, 2, 0)).astype(np.uint8)
    for start in range(0, n, _CV_MAX_CHANNELS):
        chunk = cv2.resize(
            hwc[:, :, start : start + _CV_MAX_CHANNELS], (size, size), interpolation=cv2.INTER_NEAREST
        )
        out[start : start + _CV_MAX_CHANNELS] = chunk.reshape(size, size, -1).transpose(2, 0, 1)
    return out


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """``[N, H, W]`` masks -> ``[N, 4]`` float32 ``x1, y1, x2, y2`` with exclusive right/bottom edges."""
    n = masks.shape[0]
    if n == 0:
        return torch.zeros((0, 4), dtype=torch.float32)
    rows, cols = masks.any(dim=2), masks.any(dim=1)
    h, w = masks.shape[1:]
    ar_h = torch.arange(h).expand(n, h)
    ar_w = torch.arange(w).expand(n, w)
    y1 = torch.where(rows, ar_h, h).amin(dim=1)
    y2 = torch.where(rows, ar_h, -1).amax(dim=1) + 1
    x1 = torch.where(cols, ar_w, w).amin(dim=1)
    x2 = torch.where(cols, ar_w, -1).amax(dim=1) + 1
    return torch.stack([x1, y1, x2, y2], dim=1).to(torch.float32)


class MetaGraspNetDataset(Dataset):
    """MetaGraspNet views under ``root`` (optionally one split), as training tensors (module docstring).

    Args:
        root: dataset folder (``dataset_sim``, ``dataset_real`` or a generated one).
        split: split name, or None for every view; see :func:`mtl_grasp.data.reader.select_split` for
            where the split file comes from.
        splits_file: explicit split file.
        image_size: square training size S.
        augment: random flip + colour jitter (``augment_config``), seeded by ``seed``, ``set_epoch``
            and the index.
        class_agnostic: labels all 1 (one class "object"), else the MetaGraspNet category ids.
        min_visible_area: objects with fewer visible pixels at full resolution are dropped.
        require_amodal: skip views without amodal labels (real viewpoints other than 3).
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        splits_file: str | Path | None = None,
        image_size: int = 512,
        augment: bool = False,
        class_agnostic: bool = True,
        min_visible_area: int = 1,
        seed: int = 0,
        require_amodal: bool = False,
        augment_config: AugmentConfig | None = None,
    ) -> None:
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
            raise ValueError(f"image_size: expected an integer >= 8, found {image_size!r}")
        if (
            isinstance(min_visible_area, bool)
            or not isinstance(min_visible_area, int)
            or min_visible_area < 0
        ):
            raise ValueError(f"min_visible_area: expected an integer >= 0, found {min_visible_area!r}")
        self.root = Path(root)
        all_views = discover_views(self.root, require_amodal=require_amodal)
        if not all_views:
            raise DataError(
                f"{self.root}: no views found (expected scene folders with <v>.npz and <v>_rgb.png)"
            )
        self.views: list[ViewRef] = select_split(all_views, split, splits_file)
        self.split = split
        self.image_size = image_size
        self.augment = augment
        self.augment_config = augment_config or AugmentConfig()
        self.class_agnostic = class_agnostic
        self.min_visible_area = min_visible_area
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draws for a new epoch (call before iterating; workers see it)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
        ref = self.views[index]
        sample = load_view(ref)
        s = self.image_size
        h, w = sample.height, sample.width
        shrink = s < max(h, w)
        rgb = cv2.resize(sample.rgb, (s, s), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        depth = cv2.resize(sample.depth, (s, s), interpolation=cv2.INTER_NEAREST)

        keep = sample.visible_area >= max(self.min_visible_area, 1)
        visible = _resize_masks(sample.visible_masks[keep], s)
        amodal = _resize_masks(sample.amodal_masks[keep], s)
        n = visible.shape[0]
        still_visible = visible.reshape(n, s * s).any(axis=1)  # implies a non-empty amodal mask
        visible, amodal = visible[still_visible], amodal[still_visible]
        rate = sample.occluded_rate[keep][still_visible].astype(np.float32)
        if self.class_agnostic:
            labels = np.ones(len(rate), np.int64)
        else:
            labels = sample.category_ids[keep][still_visible].astype(np.int64)
            if (labels < 1).any():
                raise DataError(
                    f"{ref.npz_path}: objects without a category id (instances_semantic 0 or absent); "
                    f"use class_agnostic=True"
                )
        amodal_t = torch.from_numpy(amodal)
        target = {
            "boxes": masks_to_boxes(amodal_t.bool()),
            "labels": torch.from_numpy(labels),
            "visible_masks": torch.from_numpy(visible),
            "amodal_masks": amodal_t,
            "occluded": torch.from_numpy((rate >= OCCLUDED_RATE_THRESHOLD).astype(np.int64)),
            "occluded_rate": torch.from_numpy(rate),
            "image_id": ref.image_id,
            "orig_size": (h, w),
        }
        rgb_t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).to(torch.float32) / 255.0
        depth_t = torch.from_numpy(np.ascontiguousarray(depth)).unsqueeze(0)
        if self.augment:
            rgb_t, depth_t, target = augment(
                rgb_t, depth_t, target, self.augment_config, item_generator(self.seed, self.epoch, index)
            )
        return rgb_t, depth_t, target


def collate_batch(batch: Sequence[tuple[torch.Tensor, torch.Tensor, dict]]) -> RGBDBatch:
    """Stack images and depths (all items share the training size); targets stay a list."""
    if not batch:
        raise ValueError("batch: expected at least one (rgb, depth, target) item, found an empty batch")
    sizes = {tuple(item[0].shape) for item in batch}
    if len(sizes) != 1:
        raise ValueError(f"batch: all images must have the same shape, found {sorted(sizes)}")
    rgb = torch.stack([item[0] for item in batch])
    depth = torch.stack([item[1] for item in batch])
    return RGBDBatch(rgb, depth, [item[2] for item in batch])
