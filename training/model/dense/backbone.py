"""ResNet18 at output stride 8 by the dilation trick (torchvision's BasicBlock refuses dilation, so the
conversion is done here), with ImageNet weights from a local file.

Conversion (as MTAN, LibMTL, SamsungLabs/MTL and the study's code do for their ResNets, and as
torchvision's ``replace_stride_with_dilation`` does for Bottleneck ResNets): in ``layer3`` and
``layer4`` every stride-2 convolution gets stride 1; the strided 3x3 convolution of a stage's first
block gets dilation ``d / 2`` and every other 3x3 convolution of the stage dilation ``d``, with
``d = 2`` for layer3 and ``d = 4`` for layer4 (padding = dilation keeps the size). The 1x1
downsample convolution only loses its stride (a dilated 1x1 kernel is the same kernel). Parameter
shapes do not change, so a torchvision ResNet18 state dict loads unchanged.
"""

from __future__ import annotations

from torch import Tensor, nn

from training.model.backbone import ResNet18Branch, read_resnet18_state_dict

OUTPUT_STRIDE = 8
OUT_CHANNELS = 512  # ResNet18 C5 width
_STAGE_DILATION = {"layer3": 2, "layer4": 4}


def dilate_stage(stage: nn.Sequential, dilation: int) -> None:
    """Turn a stride-2 ResNet stage into a stride-1 stage with dilated 3x3 convolutions (in place)."""
    for module in stage.modules():
        if not isinstance(module, nn.Conv2d):
            continue
        strided = module.stride == (2, 2)
        if strided:
            module.stride = (1, 1)
        if module.kernel_size == (3, 3):
            d = dilation // 2 if strided else dilation
            module.dilation, module.padding = (d, d), (d, d)


class DilatedResNet18(nn.Module):
    """ImageNet-normalised RGB ``[B, 3, H, W]`` -> ``[B, 512, ceil(H/8), ceil(W/8)]``."""

    def __init__(self, norm: str = "batch_norm") -> None:
        super().__init__()
        self.trunk = ResNet18Branch(3, norm)
        for name, dilation in _STAGE_DILATION.items():
            dilate_stage(getattr(self.trunk, name), dilation)

    def forward(self, x: Tensor) -> Tensor:
        return self.trunk(x)[-1]

    def load_pretrained(self, path: str) -> None:
        """Load a local torchvision ResNet18 state dict (``fc.*`` ignored); never downloads."""
        state = read_resnet18_state_dict(path, argument="DenseModelConfig.pretrained_path")
        self.trunk.load_imagenet_state_dict(state, source=f"DenseModelConfig.pretrained_path={path!r}")
