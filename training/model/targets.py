"""Validation of the network's inputs and training targets (clear errors at the model boundary)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

REQUIRED_TARGET_KEYS = ("boxes", "labels", "visible_masks", "amodal_masks")
OCCLUSION_KEYS = ("occluded_rate", "occluded")  # one is needed; occluded_rate wins (thresholded)
BOX_TOLERANCE_PX = 1.0  # resizing round-off may put an edge a fraction of a pixel past the border


def check_images(rgb: Tensor, depth: Tensor) -> None:
    """Raise ValueError unless rgb is [B,3,H,W] and depth [B,1,H,W] floats of one size."""
    if torch.jit.is_tracing():
        return  # sizes are traced values during ONNX export: a check would only be baked in as a constant
    for name, tensor, channels in (("rgb", rgb, 3), ("depth", depth, 1)):
        if not isinstance(tensor, Tensor):
            raise ValueError(f"{name}: expected a torch.Tensor, got {type(tensor).__name__}")
        if tensor.ndim != 4 or tensor.shape[1] != channels:
            raise ValueError(f"{name}: expected shape [B, {channels}, H, W], got {list(tensor.shape)}")
        if not tensor.is_floating_point():
            raise ValueError(f"{name}: expected a floating-point tensor, got {tensor.dtype}")
    if rgb.shape[0] != depth.shape[0] or rgb.shape[-2:] != depth.shape[-2:]:
        raise ValueError(
            f"rgb/depth: batch and size must match, got rgb {list(rgb.shape)} and depth {list(depth.shape)}"
        )


def prepare_targets(
    targets: Sequence[dict[str, Tensor]],
    image_size: tuple[int, int],
    batch_size: int,
    num_classes: int,
    occlusion_threshold: float,
) -> list[dict[str, Tensor]]:
    """Validate per-image targets and return copies with ``occluded`` (int64 0/1) derived.

    ``occluded = occluded_rate >= occlusion_threshold`` when ``occluded_rate`` is given (UOAIS), else
    the given ``occluded``. Extra keys (e.g. ``image_id``) are passed through untouched.
    """
    if not isinstance(targets, Sequence) or len(targets) != batch_size:
        found = len(targets) if isinstance(targets, Sequence) else type(targets).__name__
        raise ValueError(f"targets: expected a list of {batch_size} dicts (one per image), got {found}")
    height, width = image_size
    prepared = []
    for index, target in enumerate(targets):
        where = f"targets[{index}]"
        if not isinstance(target, dict):
            raise ValueError(f"{where}: expected a dict, got {type(target).__name__}")
        missing = [k for k in REQUIRED_TARGET_KEYS if k not in target]
        if not any(k in target for k in OCCLUSION_KEYS):
            missing.append(" or ".join(OCCLUSION_KEYS))
        if missing:
            raise ValueError(
                f"{where}: missing keys {missing}; expected {list(REQUIRED_TARGET_KEYS)} + one of "
                f"{list(OCCLUSION_KEYS)}, got {sorted(target)}"
            )
        boxes = target["boxes"]
        if boxes.ndim != 2 or boxes.shape[1] != 4 or not boxes.is_floating_point():
            raise ValueError(
                f"{where}['boxes']: expected float [N, 4] xyxy, got {boxes.dtype} {list(boxes.shape)}"
            )
        n = boxes.shape[0]
        _check_boxes(boxes, height, width, where)
        labels = target["labels"]
        if labels.shape != (n,) or labels.dtype != torch.int64:
            raise ValueError(
                f"{where}['labels']: expected int64 [{n}], got {labels.dtype} {list(labels.shape)}"
            )
        if n and (int(labels.min()) < 1 or int(labels.max()) > num_classes):
            raise ValueError(
                f"{where}['labels']: expected values in 1..{num_classes} (0 is background), "
                f"got {labels.min().item()}..{labels.max().item()}"
            )
        for key in ("visible_masks", "amodal_masks"):
            masks = target[key]
            if tuple(masks.shape) != (n, height, width):
                raise ValueError(
                    f"{where}['{key}']: expected [N, H, W] = [{n}, {height}, {width}] (one mask per box, "
                    f"image size), got {list(masks.shape)}"
                )
        out = dict(target)
        out["occluded"] = _occluded(target, n, occlusion_threshold, where)
        prepared.append(out)
    return prepared


def _check_boxes(boxes: Tensor, height: int, width: int, where: str) -> None:
    if boxes.numel() == 0:
        return
    if not torch.isfinite(boxes).all():
        raise ValueError(f"{where}['boxes']: contains NaN or inf")
    limit = torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device)
    outside = (boxes < -BOX_TOLERANCE_PX) | (boxes > limit + BOX_TOLERANCE_PX)
    if outside.any():
        row = int(outside.any(dim=1).nonzero()[0])
        raise ValueError(
            f"{where}['boxes'][{row}] = {boxes[row].tolist()} lies outside the {width}x{height} image "
            f"(x in [0, {width}], y in [0, {height}])"
        )
    degenerate = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if degenerate.any():
        row = int(degenerate.nonzero()[0])
        raise ValueError(f"{where}['boxes'][{row}] = {boxes[row].tolist()}: expected x2 > x1 and y2 > y1")


def _occluded(target: dict[str, Tensor], n: int, threshold: float, where: str) -> Tensor:
    device = target["boxes"].device
    if "occluded_rate" in target:
        rate = target["occluded_rate"]
        if rate.shape != (n,):
            raise ValueError(f"{where}['occluded_rate']: expected [{n}], got {list(rate.shape)}")
        return (rate >= threshold).to(device=device, dtype=torch.int64)
    occluded = target["occluded"]
    if occluded.shape != (n,):
        raise ValueError(f"{where}['occluded']: expected [{n}], got {list(occluded.shape)}")
    return (occluded > 0).to(device=device, dtype=torch.int64)
