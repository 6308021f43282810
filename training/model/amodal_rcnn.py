"""`AmodalRCNN`: the RGB-D amodal multi-task network (shared encoder -> Z -> RPN + ROI task heads)."""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead

from mtl_grasp.contract import OUTPUT_NAMES

from .config import ModelConfig
from .encoder import LEVEL_NAMES, SIZE_DIVISOR, RGBDEncoder
from .names import LOSS_NAMES
from .roi_heads import AmodalRoIHeads
from .targets import check_images, prepare_targets

P2_STRIDE = 4


class RandomInitWarning(UserWarning):
    """The backbones start from random weights because no pretrained_path was configured."""


def build_rpn(config: ModelConfig) -> RegionProposalNetwork:
    """torchvision RPN with one anchor size per level P2..P6."""
    anchors = AnchorGenerator(
        sizes=tuple((s,) for s in config.anchor_sizes),
        aspect_ratios=(config.anchor_aspect_ratios,) * len(config.anchor_sizes),
    )
    return RegionProposalNetwork(
        anchors,
        RPNHead(config.fpn_channels, anchors.num_anchors_per_location()[0]),
        fg_iou_thresh=config.rpn_fg_iou_thresh,
        bg_iou_thresh=config.rpn_bg_iou_thresh,
        batch_size_per_image=config.rpn_batch_size_per_image,
        positive_fraction=config.rpn_positive_fraction,
        pre_nms_top_n={"training": config.rpn_pre_nms_top_n_train, "testing": config.rpn_pre_nms_top_n_test},
        post_nms_top_n={
            "training": config.rpn_post_nms_top_n_train,
            "testing": config.rpn_post_nms_top_n_test,
        },
        nms_thresh=config.rpn_nms_thresh,
    )


def _check_image_size(image_size: tuple[int, int], padded: tuple[int, ...]) -> None:
    """The (H, W) given to `heads` must be the input size that produced Z (padded up to 32)."""
    expected = tuple(-(-int(s) // SIZE_DIVISOR) * SIZE_DIVISOR for s in image_size)
    if expected != tuple(padded):
        raise ValueError(
            f"image_size: {tuple(int(s) for s in image_size)} does not match Z, which was computed from an "
            f"input padded to {tuple(padded)} (H, W); pass the (H, W) of the rgb given to features()"
        )


class AmodalRCNN(nn.Module):
    """Dual ResNet18 + per-stage fusion + FPN (shared) -> RPN + box -> visible -> amodal -> occlusion.

    Inputs: ``rgb [B,3,H,W]`` in [0, 1] and ``depth [B,1,H,W]`` in metres (0 = invalid); the model
    normalises them itself with the constants of `mtl_grasp.contract`. Training mode returns the 7
    losses of `LOSS_NAMES`; eval mode returns one detection dict per image.
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else ModelConfig()
        self.encoder = RGBDEncoder(self.config)
        self.rpn = build_rpn(self.config)
        self.roi_heads = AmodalRoIHeads(self.config)
        if self.config.pretrained_path:
            self.encoder.load_pretrained(self.config.pretrained_path)
        else:
            warnings.warn(
                "ModelConfig.pretrained_path is not set: both ResNet18 branches start from random weights",
                RandomInitWarning,
                stacklevel=2,
            )

    # ---- the MTL split: Z = features(...), losses = heads(Z, ...) -------------------------------------
    def features(self, rgb: Tensor, depth: Tensor) -> list[Tensor]:
        """Shared representation Z: FPN levels [P2, P3, P4, P5, P6] (strides 4..64)."""
        check_images(rgb, depth)
        return self.encoder(rgb, depth)

    def heads(
        self,
        Z: Sequence[Tensor],
        image_size: tuple[int, int],
        targets: Sequence[dict[str, Tensor]] | None = None,
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """RPN + ROI heads on Z. Training: dict of the 7 losses (LOSS_NAMES order). Eval: detections.

        ``image_size`` is the (H, W) of the unpadded input; boxes and masks refer to it.
        """
        if len(Z) != len(LEVEL_NAMES):
            raise ValueError(f"Z: expected {len(LEVEL_NAMES)} FPN levels (P2..P6), got {len(Z)}")
        batch = Z[0].shape[0]
        # no int(): under torch.jit tracing (ONNX export) sizes are traced values, keeping H/W dynamic
        height, width = image_size[0], image_size[1]
        features = OrderedDict(zip(LEVEL_NAMES, Z))
        # The anchor generator reads the padded size from the tensor shape; an empty tensor carries it.
        padded = Z[0].new_empty((batch, 0, Z[0].shape[-2] * P2_STRIDE, Z[0].shape[-1] * P2_STRIDE))
        if not torch.jit.is_tracing():
            _check_image_size((height, width), tuple(padded.shape[-2:]))
        images = ImageList(padded, [(height, width)] * batch)
        if self.training:
            if targets is None:
                raise ValueError("targets: required in training mode (call model.eval() for detections)")
            prepared = prepare_targets(
                targets, (height, width), batch, self.config.num_classes, self.config.occlusion_threshold
            )
            proposals, rpn_losses = self.rpn(images, features, prepared)
            roi_losses = self.roi_heads(features, proposals, images.image_sizes, prepared)
            losses = {
                "rpn_objectness": rpn_losses["loss_objectness"],
                "rpn_box": rpn_losses["loss_rpn_box_reg"],
                **roi_losses,
            }
            # float32 everywhere: under autocast some losses would otherwise come out in half precision
            return {name: losses[name].float() for name in LOSS_NAMES}
        proposals, _ = self.rpn(images, features)
        return self.roi_heads(features, proposals, images.image_sizes)

    def forward(
        self, rgb: Tensor, depth: Tensor, targets: Sequence[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """``heads(features(rgb, depth), (H, W), targets)``."""
        return self.heads(self.features(rgb, depth), (rgb.shape[-2], rgb.shape[-1]), targets)

    def forward_export(self, rgb: Tensor, depth: Tensor) -> tuple[Tensor, ...]:
        """Batch-1 inference returning the tensors of `mtl_grasp.contract.OUTPUT_NAMES`, in that order."""
        if self.training:
            raise RuntimeError("forward_export: call model.eval() first (export traces the inference path)")
        if not torch.jit.is_tracing() and rgb.shape[0] != 1:
            raise ValueError(f"rgb: forward_export expects batch size 1, got {rgb.shape[0]}")
        Z = self.features(rgb, depth)
        detections = self.heads(Z, (rgb.shape[-2], rgb.shape[-1]))[0]
        return tuple(detections[name] for name in OUTPUT_NAMES)

    # ---- parameter groups --------------------------------------------------------------------------
    def shared_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters that produce Z: both backbones, the fusion convs and the FPN."""
        return [p for p in self.encoder.parameters() if p.requires_grad]

    def task_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters after Z: RPN and all ROI heads (disjoint from `shared_parameters`)."""
        return [p for m in (self.rpn, self.roi_heads) for p in m.parameters() if p.requires_grad]

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Disjoint named groups covering every trainable parameter: shared, rpn, box, and one per task head.

        ``box`` holds the box head, box predictor and the box code that feeds the task heads.
        """
        groups = {"shared": self.shared_parameters(), "rpn": list(self.rpn.parameters())}
        head_ids = {id(p) for h in self.roi_heads.task_heads.values() for p in h.parameters()}
        groups["box"] = [p for p in self.roi_heads.parameters() if id(p) not in head_ids]
        for name, head in self.roi_heads.task_heads.items():
            groups[name] = list(head.parameters())
        return {k: [p for p in v if p.requires_grad] for k, v in groups.items()}
