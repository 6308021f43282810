"""Input normalisation inside the network, with the constants of `mtl_grasp.contract` (one definition)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtl_grasp.contract import DEPTH_MAX_M, DEPTH_MEAN_M, DEPTH_MIN_M, DEPTH_STD_M, RGB_MEAN, RGB_STD


def normalize_rgb(rgb: Tensor, mean: Tensor | None = None, std: Tensor | None = None) -> Tensor:
    """[B,3,H,W] RGB in [0, 1] -> ImageNet-standardised; mean/std [1,3,1,1] default to the contract."""
    if mean is None or std is None:
        mean = torch.tensor(RGB_MEAN, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
        std = torch.tensor(RGB_STD, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return (rgb - mean) / std


def normalize_depth(depth: Tensor) -> Tensor:
    """[B,1,H,W] metres, 0 = invalid -> clipped and standardised; invalid (0/NaN) pixels become 0.

    0 after standardisation means "at the mean bin depth", so holes add no spurious edges for the
    first conv (UOAIS inpaints holes instead, which is neither cheap on GPU nor exportable).
    """
    valid = depth > 0  # False for 0 and NaN
    standardised = (depth.clamp(DEPTH_MIN_M, DEPTH_MAX_M) - DEPTH_MEAN_M) / DEPTH_STD_M
    return torch.where(valid, standardised, torch.zeros_like(standardised))


class InputNormalizer(nn.Module):
    """Module form: the RGB statistics are non-persistent buffers, so they follow ``.to(device)``
    without a host-to-device copy per call and become constants of an exported graph."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("rgb_mean", torch.tensor(RGB_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("rgb_std", torch.tensor(RGB_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, rgb: Tensor, depth: Tensor) -> tuple[Tensor, Tensor]:
        return normalize_rgb(rgb, self.rgb_mean, self.rgb_std), normalize_depth(depth)
