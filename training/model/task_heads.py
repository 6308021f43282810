"""ROI task heads after the box head, in the UOAIS hierarchy visible mask -> amodal mask -> occlusion.

Each head is one entry of `TASK_HEADS` (name = its loss name). A head receives the concatenation of
the 14x14 ROI features, the box head's code and the features of every earlier head ("dense concat
guidance"), and returns ``(logits, features)``; its ``features`` (14x14) are appended to the guidance
of the later heads. Adding a head is adding an entry here; the ROI stage has no per-head branches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import maskrcnn_loss
from torchvision.ops.misc import Conv2dNormActivation


@dataclass
class RoiSamples:
    """The foreground ROIs of a training batch and what they were matched to (per image lists)."""

    proposals: list[Tensor]  # [R_i, 4] xyxy
    matched_idxs: list[Tensor]  # [R_i] index into the image's ground-truth objects
    targets: list[dict[str, Tensor]]  # validated targets incl. "occluded" derived from occluded_rate


class MaskHead(nn.Module):
    """Class-agnostic 28x28 mask head (torchvision MaskRCNNHeads + MaskRCNNPredictor).

    Its first conv takes the whole guidance concat; UOAIS spends 3 extra "guidance" convs on that
    fusion, we fold it into the head's first conv to save compute at 14x14 x 512 ROIs.
    """

    def __init__(self, in_channels: int, channels: int, num_convs: int, target_key: str) -> None:
        super().__init__()
        self.target_key = target_key
        self.convs = MaskRCNNHeads(in_channels, [channels] * num_convs, dilation=1)
        self.predictor = MaskRCNNPredictor(channels, channels, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.convs(x)  # [R, C, 14, 14]
        return self.predictor(features), features  # logits [R, 1, 28, 28]

    def loss(self, logits: Tensor, samples: RoiSamples) -> Tensor:
        # one mask channel for every class: label index 0 for all ROIs
        zeros = [torch.zeros_like(t["labels"]) for t in samples.targets]
        gt_masks = [t[self.target_key] for t in samples.targets]
        return maskrcnn_loss(logits, samples.proposals, gt_masks, zeros, samples.matched_idxs)

    def predict(self, logits: Tensor) -> Tensor:
        return logits[:, 0].sigmoid()  # [N, 28, 28] probabilities in box coordinates


class OcclusionHead(nn.Module):
    """2-way occlusion classifier: guidance conv, stride-2 conv (14 -> 7), convs, linear (UOAIS).

    Its guidance features are the output of its first conv (14x14), so a later head could follow it.
    """

    def __init__(self, in_channels: int, channels: int, num_convs: int, roi_size: int = 14) -> None:
        super().__init__()
        self.first = Conv2dNormActivation(in_channels, channels, kernel_size=3, norm_layer=None)
        rest = [Conv2dNormActivation(channels, channels, kernel_size=3, stride=2, norm_layer=None)]
        rest += [
            Conv2dNormActivation(channels, channels, kernel_size=3, norm_layer=None)
            for _ in range(num_convs - 2)
        ]
        self.rest = nn.Sequential(*rest)
        reduced = (roi_size + 1) // 2
        self.classifier = nn.Linear(channels * reduced * reduced, 2)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.first(x)
        return self.classifier(self.rest(features).flatten(1)), features  # logits [R, 2]

    def loss(self, logits: Tensor, samples: RoiSamples) -> Tensor:
        target = torch.cat([t["occluded"][i] for t, i in zip(samples.targets, samples.matched_idxs)])
        if target.numel() == 0:
            return logits.sum() * 0.0  # keeps the graph connected for per-task gradients
        return occlusion_loss(logits, target)

    def predict(self, logits: Tensor) -> Tensor:
        return logits.softmax(dim=1)[:, 1]  # [N] probability of "occluded"


def occlusion_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy with UOAIS class weights [1, n_not_occluded / n_occluded].

    When the batch lacks either class the ratio is undefined (x/0) or zero (making the weighted mean
    0/0), so the weights fall back to [1, 1]. Computed with tensor ops: no host sync.
    """
    n_occluded = (target == 1).sum().to(logits.dtype)
    n_visible = (target == 0).sum().to(logits.dtype)
    both = (n_occluded > 0) & (n_visible > 0)
    ratio = torch.where(both, n_visible / n_occluded.clamp(min=1), torch.ones_like(n_occluded))
    weight = torch.stack([torch.ones_like(ratio), ratio]).float()
    return F.cross_entropy(logits.float(), target, weight=weight)


@dataclass(frozen=True)
class HeadSpec:
    """How to build a task head: ``factory(in_channels, channels, num_convs) -> head``, and its output key."""

    factory: Callable[[int, int, int], nn.Module]
    output_key: str


# Order = prediction order (UOAIS "V", "A", "O"); the name is the head's loss name.
TASK_HEADS: dict[str, HeadSpec] = {
    "visible_mask": HeadSpec(lambda i, c, n: MaskHead(i, c, n, "visible_masks"), "visible_masks"),
    "amodal_mask": HeadSpec(lambda i, c, n: MaskHead(i, c, n, "amodal_masks"), "amodal_masks"),
    "occlusion": HeadSpec(lambda i, c, n: OcclusionHead(i, c, n), "occlusion"),
}
