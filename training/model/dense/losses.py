"""The dense task losses, each a float32 scalar averaged over the valid pixels of the whole batch.

Every loss divides a masked sum by ``max(count, 1)`` instead of testing the mask on the host: no
device sync, the exact mean whenever a valid pixel exists, and exactly 0 (still connected to the
graph, so ``autograd.grad(loss, Z)`` works) when the batch has none. Averaging over the pixels of the
batch, not per image, is what MTAN, LibMTL and SamsungLabs/MTL do.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from mtl_grasp.data.dense.layout import IGNORE_LABEL


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def segmentation_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy of ``logits [B, K, H, W]`` against ``target [B, H, W]`` (int64, -1 = ignore)."""
    summed = F.cross_entropy(logits.float(), target, ignore_index=IGNORE_LABEL, reduction="sum")
    return summed / (target != IGNORE_LABEL).sum().clamp_min(1).to(summed.dtype)


def depth_loss(pred: Tensor, target: Tensor) -> Tensor:
    """L1 of ``pred [B, 1, H, W]`` over pixels with ``target > 0`` (0 = invalid)."""
    return _masked_mean((pred.float() - target).abs(), target > 0)


def normal_loss(pred: Tensor, target: Tensor) -> Tensor:
    """``1 - cos`` between the unit-normalised ``pred [B, 3, H, W]`` and ``target`` over pixels whose
    target is not the zero vector."""
    unit = F.normalize(pred.float(), dim=1, eps=1e-12)
    valid = target.abs().sum(dim=1) > 0  # [B, H, W]
    return _masked_mean(1.0 - (unit * target).sum(dim=1), valid)  # = 1 - mean cos; 0 with no valid pixel


def instance_loss(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """L1 of the offsets ``pred [B, 2, H, W]`` over instance pixels (``mask [B, 1, H, W]``), averaged
    over both components (as ``F.l1_loss(pred[mask], target[mask])`` in SamsungLabs/MTL)."""
    return _masked_mean((pred.float() - target).abs(), mask.expand_as(target))


def unit_normals(pred: Tensor) -> Tensor:
    """The normal head's output as unit vectors (what the loss and the metrics compare)."""
    return F.normalize(pred, dim=1, eps=1e-12)
