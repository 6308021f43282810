"""One ResNet18 branch (stem + 4 stages) returning C2..C5, and ImageNet weight loading from a local file.

The classifier (avgpool + fc) of torchvision's ResNet18 is dropped: it is unused by a detector and its
parameters would never receive a gradient.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models import resnet18
from torchvision.ops import FrozenBatchNorm2d

STAGE_CHANNELS = (64, 128, 256, 512)  # C2..C5 of ResNet18
_NORM_LAYERS = {"frozen_bn": FrozenBatchNorm2d, "batch_norm": nn.BatchNorm2d}


class ResNet18Branch(nn.Module):
    """ResNet18 trunk with ``in_channels`` input channels; forward returns [C2, C3, C4, C5]."""

    def __init__(self, in_channels: int, norm: str = "frozen_bn") -> None:
        super().__init__()
        net = resnet18(weights=None, norm_layer=_NORM_LAYERS[norm])
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.in_channels = in_channels
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c2, c3, c4, c5]

    def load_imagenet_state_dict(self, state: Mapping[str, Tensor], source: str) -> None:
        """Load a torchvision ResNet18 state dict (fc.* ignored).

        For a branch with another number of input channels (the 1-channel depth branch), conv1 gets the
        RGB kernel summed over its input channels, shared evenly by the new channels: convolving depth
        with the summed kernel equals convolving depth replicated to 3 channels with the RGB kernel,
        which is how UOAIS feeds depth to an ImageNet backbone.
        """
        own = self.state_dict()
        adapted: dict[str, Tensor] = {}
        for key, value in state.items():
            # the classifier is dropped; FrozenBatchNorm2d has no num_batches_tracked buffer
            if key.startswith("fc.") or (key.endswith("num_batches_tracked") and key not in own):
                continue
            if key == "conv1.weight" and value.ndim == 4 and value.shape[1] != self.in_channels:
                summed = value.sum(dim=1, keepdim=True)
                value = summed.repeat(1, self.in_channels, 1, 1) / self.in_channels
            adapted[key] = value
        missing = sorted(set(own) - set(adapted) - {k for k in own if k.endswith("num_batches_tracked")})
        unexpected = sorted(set(adapted) - set(own))
        wrong_shape = [
            f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
            for k, v in adapted.items()
            if k in own and tuple(v.shape) != tuple(own[k].shape)
        ]
        if missing or unexpected or wrong_shape:
            raise ValueError(
                f"{source}: not a torchvision ResNet18 state dict: missing keys {missing[:5]}"
                f"{'...' if len(missing) > 5 else ''}, unexpected keys {unexpected[:5]}"
                f"{'...' if len(unexpected) > 5 else ''}, shape mismatches {wrong_shape[:5]}"
            )
        self.load_state_dict(adapted, strict=False)


def read_resnet18_state_dict(
    path: str | Path, argument: str = "ModelConfig.pretrained_path"
) -> dict[str, Tensor]:
    """Read a torchvision-format ResNet18 state dict from a local file; never downloads.

    Raises FileNotFoundError when the file is absent and ValueError when it is not a tensor dict; the
    messages name ``argument`` (the config field the path came from).
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(
            f"{argument}: no file at {str(file)!r}; expected a local torchvision "
            "ResNet18 state dict, e.g. written by "
            "torch.save(torchvision.models.resnet18(weights=...).state_dict(), path); "
            "set pretrained_path to null for random initialisation"
        )
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign files raise many different types
        raise ValueError(f"{argument}: cannot read {str(file)!r} as a torch state dict: {exc}") from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(
            f"{argument}: {str(file)!r} holds a {type(state).__name__}, expected a "
            "state dict mapping parameter names to tensors"
        )
    return dict(state)
