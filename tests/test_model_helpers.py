"""Helpers (no tests): tiny model configuration, inputs and targets shared by the model tests (64x64)."""

from __future__ import annotations

import warnings

import torch

from training.model import AmodalRCNN, ModelConfig

SIZE = 64


def tiny_config(**overrides) -> ModelConfig:
    values = dict(
        image_size=SIZE,
        fpn_channels=32,
        head_channels=16,
        box_fc_dim=64,
        box_head_convs=2,
        mask_head_convs=2,
        rpn_batch_size_per_image=64,
        roi_batch_size_per_image=32,
        rpn_pre_nms_top_n_train=200,
        rpn_post_nms_top_n_train=100,
        rpn_pre_nms_top_n_test=100,
        rpn_post_nms_top_n_test=50,
        detections_per_image=20,
    )
    values.update(overrides)
    return ModelConfig(**values)


def tiny_model(seed: int = 0, **overrides) -> AmodalRCNN:
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # RandomInitWarning is expected here
        return AmodalRCNN(tiny_config(**overrides))


def images(batch: int = 2, seed: int = 0, height: int = SIZE, width: int = SIZE):
    g = torch.Generator().manual_seed(seed)
    rgb = torch.rand(batch, 3, height, width, generator=g)
    depth = 0.4 + 0.5 * torch.rand(batch, 1, height, width, generator=g)
    depth[:, :, :4, :4] = 0.0  # an invalid patch, as real sensors have
    return rgb, depth


def target(boxes: list[list[float]], rates: list[float], height: int = SIZE, width: int = SIZE) -> dict:
    """Objects with amodal box masks and visible masks = the left half of each box."""
    n = len(boxes)
    amodal = torch.zeros(n, height, width, dtype=torch.uint8)
    visible = torch.zeros_like(amodal)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        x1, y1, x2, y2 = (int(v) for v in (x1, y1, x2, y2))
        amodal[i, y1:y2, x1:x2] = 1
        visible[i, y1:y2, x1 : (x1 + x2) // 2] = 1
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(n, 4),
        "labels": torch.ones(n, dtype=torch.int64),
        "visible_masks": visible,
        "amodal_masks": amodal,
        "occluded_rate": torch.tensor(rates, dtype=torch.float32),
    }


def scene_targets() -> list[dict]:
    """Image 0: three objects (one occluded); image 1: one non-occluded object."""
    return [
        target([[4, 6, 30, 34], [20, 10, 60, 50], [36, 40, 62, 63]], [0.0, 0.5, 0.02]),
        target([[10, 10, 40, 30]], [0.0]),
    ]


def empty_target() -> dict:
    return target([], [])
