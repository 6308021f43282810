"""The bin-picking family's training batch: what `collate_batch` returns and the model reads."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor


class RGBDBatch(NamedTuple):
    """`rgb [B,3,H,W]` in [0, 1], `depth [B,1,H,W]` in metres (0 = invalid), one target dict per image
    (docs/architecture.md). A tuple, so `rgb, depth, targets = batch` keeps working."""

    rgb: Tensor
    depth: Tensor
    targets: list[dict[str, Any]]

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the network input."""
        return int(self.rgb.shape[-2]), int(self.rgb.shape[-1])

    def to(self, device: torch.device) -> RGBDBatch:
        """Every tensor on `device` (non-blocking on CUDA, where the loader pins memory)."""
        nb = device.type == "cuda"
        targets = [
            {k: (v.to(device, non_blocking=nb) if isinstance(v, Tensor) else v) for k, v in t.items()}
            for t in self.targets
        ]
        rgb, depth = self.rgb.to(device, non_blocking=nb), self.depth.to(device, non_blocking=nb)
        return RGBDBatch(rgb, depth, targets)
