"""The shared part of the network: RGB and depth ResNet18s, per-stage fusion and the FPN -> Z."""

from __future__ import annotations

from collections import OrderedDict

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from .backbone import STAGE_CHANNELS, ResNet18Branch, read_resnet18_state_dict
from .config import ModelConfig
from .fusion import build_fusion
from .normalization import InputNormalizer

LEVEL_NAMES = ("p2", "p3", "p4", "p5", "p6")
SIZE_DIVISOR = 32  # C5 stride: inputs are padded to a multiple so every level has an exact stride


class RGBDEncoder(nn.Module):
    """(rgb [B,3,H,W] in [0,1], depth [B,1,H,W] metres) -> Z = [P2, P3, P4, P5, P6]."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.normalize = InputNormalizer()
        self.rgb = ResNet18Branch(3, config.backbone_norm)
        self.depth = ResNet18Branch(1, config.backbone_norm)
        self.fusion = nn.ModuleList(build_fusion(config.fusion, c) for c in STAGE_CHANNELS)
        self.fpn = FeaturePyramidNetwork(
            list(STAGE_CHANNELS), config.fpn_channels, extra_blocks=LastLevelMaxPool()
        )

    def forward(self, rgb: Tensor, depth: Tensor) -> list[Tensor]:
        # Zero padding at the bottom/right (as torchvision's GeneralizedRCNNTransform) keeps anchor
        # strides exact for any H, W; boxes stay in unpadded pixel coordinates.
        height, width = rgb.shape[-2], rgb.shape[-1]
        pad_h = (SIZE_DIVISOR - height % SIZE_DIVISOR) % SIZE_DIVISOR
        pad_w = (SIZE_DIVISOR - width % SIZE_DIVISOR) % SIZE_DIVISOR
        x_rgb, x_depth = self.normalize(rgb, depth)
        x_rgb = F.pad(x_rgb, (0, pad_w, 0, pad_h))
        x_depth = F.pad(x_depth, (0, pad_w, 0, pad_h))
        stages = [fuse(a, b) for fuse, a, b in zip(self.fusion, self.rgb(x_rgb), self.depth(x_depth))]
        pyramid = self.fpn(OrderedDict((f"c{i + 2}", c) for i, c in enumerate(stages)))
        return list(pyramid.values())

    def load_pretrained(self, path: str) -> None:
        """Load ImageNet ResNet18 weights from ``path`` into both branches (depth conv1 adapted)."""
        state = read_resnet18_state_dict(path)
        self.rgb.load_imagenet_state_dict(state, source=f"ModelConfig.pretrained_path={path!r}")
        self.depth.load_imagenet_state_dict(state, source=f"ModelConfig.pretrained_path={path!r}")
