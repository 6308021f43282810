"""Per-task decoders on the stride-8 features: pyramid pooling (PSPNet) or DeepLab ASPP.

* ``ppm`` (default): PSPNet's pyramid pooling module as SamsungLabs/MTL's ``SegmentationDecoder`` and
  the feature-disentanglement study's ``PyramidPoolingModule`` use it: average-pool the features to
  1x1, 2x2, 3x3 and 6x6, a 1x1 conv + BN + ReLU per scale, upsample, concatenate with the features, a
  3x3 conv + BN + ReLU, a 1x1 conv to the task's channels. Torchvision has no PSP head, hence this
  module; the branch width is ``in_channels / 4`` as in PSPNet (512 for ResNet50's 2048 channels in
  the references, 128 for ResNet18's 512).
* ``aspp``: torchvision's ``DeepLabHead`` (ASPP with rates 12/24/36, 256 channels, dropout 0.5, a 3x3
  conv, a 1x1 classifier), the head MTAN's ResNet design and LibMTL's NYU-v2/CityScapes examples use.

Both contain BatchNorm after a global (1x1) pooling branch, so a training batch needs >= 2 images.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.segmentation.deeplabv3 import DeepLabHead

HEADS = ("ppm", "aspp")
ASPP_RATES = (12, 24, 36)  # torchvision's / MTAN's / LibMTL's DeepLabHead rates
PPM_SCALES = (1, 2, 3, 6)


def _conv_bn_relu(cin: int, cout: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class PyramidPoolingHead(nn.Module):
    """``[B, C, h, w]`` -> ``[B, out_channels, h, w]`` through PSPNet's pyramid pooling."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        head_channels: int = 256,
        branch_channels: int | None = None,
        scales: Sequence[int] = PPM_SCALES,
    ) -> None:
        super().__init__()
        branch = branch_channels if branch_channels is not None else in_channels // len(scales)
        self.scales = tuple(scales)
        self.branches = nn.ModuleList(_conv_bn_relu(in_channels, branch, 1) for _ in self.scales)
        self.fuse = _conv_bn_relu(in_channels + len(self.scales) * branch, head_channels, 3)
        self.classifier = nn.Conv2d(head_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        pooled = [
            F.interpolate(
                branch(F.adaptive_avg_pool2d(x, s)), size=size, mode="bilinear", align_corners=False
            )
            for s, branch in zip(self.scales, self.branches)
        ]
        return self.classifier(self.fuse(torch.cat([x, *pooled], dim=1)))


def build_head(kind: str, in_channels: int, out_channels: int, head_channels: int) -> nn.Module:
    """A decoder of ``kind`` (``ppm`` or ``aspp``) from ``in_channels`` to ``out_channels``."""
    if kind == "ppm":
        return PyramidPoolingHead(in_channels, out_channels, head_channels)
    if kind == "aspp":
        return DeepLabHead(in_channels, out_channels, atrous_rates=ASPP_RATES)
    raise ValueError(f"head: expected one of {HEADS}, got {kind!r}")
