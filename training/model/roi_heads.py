"""ROI stage: torchvision's RoIHeads for the amodal box, followed by the task heads of `TASK_HEADS`.

torchvision's `RoIHeads.forward` only hosts one mask head and one keypoint head, so this subclass keeps
its sampling (`select_training_samples`), its box loss (`fastrcnn_loss`) and its post-processing
(`postprocess_detections`) and replaces `forward` with the UOAIS chain box -> V -> A -> O.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.ops.poolers import initLevelMapper

from .config import ModelConfig
from .roi_align_2nd import TwiceDifferentiableMultiScaleRoIAlign
from .task_heads import TASK_HEADS, RoiSamples

BOX_LEVELS = ["p2", "p3", "p4", "p5"]  # UOAIS pools ROIs from P2..P5 (P6 feeds only the RPN)
BOX_ROI_SIZE = 7
MASK_ROI_SIZE = 14  # mask logits are 2x this = contract.ROI_MASK_SIZE
BOX_LEVEL_STRIDES = (4, 8, 16, 32)


def roi_pool(output_size: int) -> TwiceDifferentiableMultiScaleRoIAlign:
    """MultiScaleRoIAlign over P2..P5 with the level scales fixed up front.

    torchvision otherwise infers them on the first call by rounding feature size / image size, which
    is wrong for small inputs padded to a multiple of 32 (e.g. 40 px -> P2 16 px gives 1/2, not 1/4)
    and would be baked into an exported graph from the example input.
    The subclass only differs while training with grad enabled: its roi_align has a double backward,
    which CosReg needs; inference and ONNX export run torchvision's pooler unchanged.
    """
    pool = TwiceDifferentiableMultiScaleRoIAlign(BOX_LEVELS, output_size, sampling_ratio=2)
    pool.scales = [1.0 / s for s in BOX_LEVEL_STRIDES]
    pool.map_levels = initLevelMapper(
        2, 5, canonical_scale=pool.canonical_scale, canonical_level=pool.canonical_level
    )
    return pool


class ClassAgnosticBoxPredictor(nn.Module):
    """Class scores (K+1) and ONE set of box deltas shared by all classes (UOAIS, class-agnostic).

    The deltas are repeated per class so torchvision's `fastrcnn_loss` and `postprocess_detections`,
    which index deltas by class, can be used unchanged.
    """

    def __init__(self, in_features: int, num_classes_with_bg: int) -> None:
        super().__init__()
        self.num_classes_with_bg = num_classes_with_bg
        self.cls_score = nn.Linear(in_features, num_classes_with_bg)
        self.bbox_pred = nn.Linear(in_features, 4)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        deltas = self.bbox_pred(x)
        return self.cls_score(x), deltas.repeat(1, self.num_classes_with_bg)


class AmodalRoIHeads(RoIHeads):
    """Box head + multi-level box code + the task heads; losses or detections."""

    def __init__(self, config: ModelConfig) -> None:
        c_in, c_head = config.fpn_channels, config.head_channels
        fc = [config.box_fc_dim] if config.box_fc_dim else []
        roi_shape = (c_in, BOX_ROI_SIZE, BOX_ROI_SIZE)
        box_head = FastRCNNConvFCHead(roi_shape, [c_head] * config.box_head_convs, fc)
        box_features = config.box_fc_dim or c_head * BOX_ROI_SIZE * BOX_ROI_SIZE
        super().__init__(
            box_roi_pool=roi_pool(BOX_ROI_SIZE),
            box_head=box_head,
            box_predictor=ClassAgnosticBoxPredictor(box_features, config.num_classes + 1),
            fg_iou_thresh=config.roi_fg_iou_thresh,
            bg_iou_thresh=config.roi_bg_iou_thresh,
            batch_size_per_image=config.roi_batch_size_per_image,
            positive_fraction=config.roi_positive_fraction,
            bbox_reg_weights=None,
            score_thresh=config.score_thresh,
            nms_thresh=config.nms_thresh,
            detections_per_img=config.detections_per_image,
        )
        # Multi-level coding (UOAIS MLC): the box head's first conv output, upsampled 7 -> 14, guides
        # every task head, so the mask/occlusion heads see what the box branch saw.
        self.box_code = nn.Sequential(nn.ConvTranspose2d(c_head, c_head, 2, stride=2), nn.ReLU(inplace=True))
        self.task_pool = roi_pool(MASK_ROI_SIZE)
        heads = {}
        in_channels = c_in + c_head  # ROI features + box code
        for name, spec in TASK_HEADS.items():
            heads[name] = spec.factory(in_channels, c_head, config.mask_head_convs)
            in_channels += c_head  # the next head also sees this head's features
        self.task_heads = nn.ModuleDict(heads)
        self.output_keys = {name: spec.output_key for name, spec in TASK_HEADS.items()}

    def _box_first_conv(
        self, features: dict[str, Tensor], boxes: list[Tensor], sizes: list[tuple[int, int]]
    ) -> Tensor:
        """Output of the box head's first conv on ``boxes`` [R, C, 7, 7] (the input of the box code)."""
        return self.box_head[0](self.box_roi_pool(features, boxes, sizes))

    def _box_predict(self, first: Tensor) -> tuple[Tensor, Tensor]:
        """Rest of the box head: (class logits [R, K+1], per-class deltas [R, 4(K+1)])."""
        x = first
        for layer in list(self.box_head)[1:]:
            x = layer(x)
        return self.box_predictor(x)

    def _run_task_heads(
        self, features: dict[str, Tensor], boxes: list[Tensor], sizes: list[tuple[int, int]], box_code: Tensor
    ) -> dict[str, Tensor]:
        """Logits of every task head, in registry order, with dense concat guidance."""
        guidance = [self.task_pool(features, boxes, sizes), box_code]
        logits = {}
        for name, head in self.task_heads.items():
            logits[name], head_features = head(torch.cat(guidance, dim=1))
            guidance.append(head_features)
        return logits

    def forward(  # type: ignore[override]
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]] | None = None,
    ):
        """Training: dict of the ROI losses. Eval: list of per-image detection dicts."""
        if self.training:
            if targets is None:
                raise ValueError("targets: required in training mode, got None")
            proposals, matched_idxs, labels, regression_targets = self.select_training_samples(
                proposals, targets
            )
            first = self._box_first_conv(features, proposals, image_shapes)
            class_logits, deltas = self._box_predict(first)
            loss_cls, loss_box = fastrcnn_loss(class_logits, deltas, labels, regression_targets)
            # task heads train on the foreground ROIs only (Mask R-CNN / UOAIS)
            fg = [torch.where(lab > 0)[0] for lab in labels]
            samples = RoiSamples(
                proposals=[p[i] for p, i in zip(proposals, fg)],
                matched_idxs=[m[i] for m, i in zip(matched_idxs, fg)],
                targets=targets,
            )
            # The code of the foreground ROIs comes from the first conv run again on them alone, not
            # from rows of `first`: same values, but a task loss's backward then runs that conv and
            # the ROI pooling over the foreground ROIs only, not over all sampled ROIs with zero
            # gradient rows (3 of the 7 per-task passes of an MTL step; 16% of G_Z's FLOPs).
            box_code = self.box_code(self._box_first_conv(features, samples.proposals, image_shapes))
            logits = self._run_task_heads(features, samples.proposals, image_shapes, box_code)
            losses = {"roi_cls": loss_cls, "roi_box": loss_box}
            losses.update({name: self.task_heads[name].loss(out, samples) for name, out in logits.items()})
            return losses

        class_logits, deltas = self._box_predict(self._box_first_conv(features, proposals, image_shapes))
        boxes, scores, labels = self.postprocess_detections(class_logits, deltas, proposals, image_shapes)
        # the code is recomputed on the final (regressed) boxes so that it is aligned with their ROIs
        box_code = self.box_code(self._box_first_conv(features, boxes, image_shapes))
        logits = self._run_task_heads(features, boxes, image_shapes, box_code)
        predictions: dict[str, list[Tensor]] = {}
        for name, out in logits.items():
            probs = self.task_heads[name].predict(out)
            # no split for one image: keeps the export graph free of data-dependent split sizes
            predictions[self.output_keys[name]] = (
                [probs] if len(boxes) == 1 else list(probs.split([len(b) for b in boxes]))
            )
        return [
            {"boxes": b, "scores": s, "labels": lab, **{k: v[i] for k, v in predictions.items()}}
            for i, (b, s, lab) in enumerate(zip(boxes, scores, labels))
        ]
