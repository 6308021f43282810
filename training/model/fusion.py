"""Per-stage RGB-depth fusion modules (UOAIS late fusion), selected by name from `FUSIONS`."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


class ConcatConvFusion(nn.Module):
    """concat([rgb, depth]) -> 1x1 conv (2C -> C), the UOAIS ``FUSE_TYPE: conv``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(2 * channels, channels, kernel_size=1)

    def forward(self, rgb: Tensor, depth: Tensor) -> Tensor:
        return self.proj(torch.cat([rgb, depth], dim=1))


class AddFusion(nn.Module):
    """rgb + depth (UOAIS ``FUSE_TYPE: add``); parameter-free."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, rgb: Tensor, depth: Tensor) -> Tensor:
        return rgb + depth


FUSIONS: dict[str, Callable[[int], nn.Module]] = {"conv": ConcatConvFusion, "add": AddFusion}


def build_fusion(name: str, channels: int) -> nn.Module:
    """Instantiate the fusion registered as ``name`` for feature maps of ``channels`` channels."""
    if name not in FUSIONS:
        raise ValueError(f"fusion: expected one of {sorted(FUSIONS)}, got {name!r}")
    return FUSIONS[name](channels)
