"""Torch side of the data: :class:`MetaGraspNetDataset`, :func:`collate_batch` and augmentation.

See :mod:`training.data.dataset` for the item format and docs/data.md for every data decision.
"""

from training.data.augment import AugmentConfig
from training.data.batch import RGBDBatch
from training.data.dataset import MetaGraspNetDataset, collate_batch, item_generator, masks_to_boxes

__all__ = [
    "AugmentConfig",
    "MetaGraspNetDataset",
    "RGBDBatch",
    "collate_batch",
    "item_generator",
    "masks_to_boxes",
]
