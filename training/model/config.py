"""`ModelConfig`: every hyperparameter of the RGB-D amodal network in one typed, validated dataclass."""

from __future__ import annotations

from dataclasses import dataclass, fields

from mtl_grasp.contract import OCCLUDED_RATE_THRESHOLD

FUSIONS = ("conv", "add")
BACKBONE_NORMS = ("frozen_bn", "batch_norm")


@dataclass
class ModelConfig:
    """Hyperparameters of `AmodalRCNN`; defaults follow the UOAIS-Net RGB-D configuration.

    Sizes are pixels of the (resized) network input. ``num_classes`` excludes the background
    (1 = class-agnostic, the UOAIS default). Lists given by a YAML loader are turned into tuples.
    """

    image_size: int = 512  # square training size; recorded in exported metadata, not enforced here
    num_classes: int = 1
    fusion: str = "conv"  # "conv": concat + 1x1 conv (UOAIS late fusion), "add": element-wise sum
    backbone_norm: str = "frozen_bn"  # torchvision detection default; "batch_norm" trains BN statistics
    fpn_channels: int = 256
    head_channels: int = 256  # width of the box-head convs and of every ROI task head
    pretrained_path: str | None = None  # local torchvision ResNet18 state dict; None = random init
    # RPN (anchor sizes suit small objects after downscaling, as in UOAIS)
    anchor_sizes: tuple[int, ...] = (16, 32, 64, 128, 256)
    anchor_aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    rpn_fg_iou_thresh: float = 0.7
    rpn_bg_iou_thresh: float = 0.3
    rpn_batch_size_per_image: int = 256
    rpn_positive_fraction: float = 0.5
    rpn_pre_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_train: int = 1000
    rpn_post_nms_top_n_test: int = 1000
    rpn_nms_thresh: float = 0.7
    # ROI sampling
    roi_fg_iou_thresh: float = 0.5
    roi_bg_iou_thresh: float = 0.5
    roi_batch_size_per_image: int = 512
    roi_positive_fraction: float = 0.25
    # ROI heads
    box_head_convs: int = 4
    box_fc_dim: int = 0  # 0 = no FC layer: predictors on the flattened conv features (UOAIS 4conv/0fc)
    mask_head_convs: int = 4
    occlusion_threshold: float = OCCLUDED_RATE_THRESHOLD
    # inference
    detections_per_image: int = 100
    score_thresh: float = 0.05
    nms_thresh: float = 0.5

    def __post_init__(self) -> None:
        self.anchor_sizes = tuple(int(s) for s in self.anchor_sizes)
        self.anchor_aspect_ratios = tuple(float(r) for r in self.anchor_aspect_ratios)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first field whose value is out of its valid range."""
        if self.fusion not in FUSIONS:
            raise ValueError(f"ModelConfig.fusion: expected one of {FUSIONS}, got {self.fusion!r}")
        if self.backbone_norm not in BACKBONE_NORMS:
            raise ValueError(
                f"ModelConfig.backbone_norm: expected one of {BACKBONE_NORMS}, got {self.backbone_norm!r}"
            )
        positive_ints = (
            "image_size", "num_classes", "fpn_channels", "head_channels",
            "rpn_batch_size_per_image", "rpn_pre_nms_top_n_train", "rpn_pre_nms_top_n_test",
            "rpn_post_nms_top_n_train", "rpn_post_nms_top_n_test", "roi_batch_size_per_image",
            "detections_per_image", "box_head_convs",
        )  # fmt: skip
        for name in positive_ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ModelConfig.{name}: expected a positive int, got {value!r}")
        if isinstance(self.box_fc_dim, bool) or not isinstance(self.box_fc_dim, int) or self.box_fc_dim < 0:
            raise ValueError(f"ModelConfig.box_fc_dim: expected int >= 0 (0: no FC), got {self.box_fc_dim}")
        if not isinstance(self.mask_head_convs, int) or self.mask_head_convs < 2:
            # the occlusion head needs a stride-2 conv after its guidance conv
            raise ValueError(
                f"ModelConfig.mask_head_convs: expected an int >= 2, got {self.mask_head_convs!r}"
            )
        if len(self.anchor_sizes) != 5 or any(s <= 0 for s in self.anchor_sizes):
            raise ValueError(
                "ModelConfig.anchor_sizes: expected 5 positive sizes (one per FPN level P2..P6), "
                f"got {self.anchor_sizes}"
            )
        if not self.anchor_aspect_ratios or any(r <= 0 for r in self.anchor_aspect_ratios):
            raise ValueError(
                f"ModelConfig.anchor_aspect_ratios: expected positive ratios, got {self.anchor_aspect_ratios}"
            )
        unit_interval = (
            "rpn_fg_iou_thresh", "rpn_bg_iou_thresh", "rpn_positive_fraction", "roi_fg_iou_thresh",
            "roi_bg_iou_thresh", "roi_positive_fraction", "occlusion_threshold", "score_thresh", "nms_thresh",
            "rpn_nms_thresh",
        )  # fmt: skip
        for name in unit_interval:
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"ModelConfig.{name}: expected a value in [0, 1], got {value!r}")
        if self.rpn_bg_iou_thresh > self.rpn_fg_iou_thresh:
            raise ValueError(
                f"ModelConfig.rpn_bg_iou_thresh ({self.rpn_bg_iou_thresh}) must not exceed "
                f"rpn_fg_iou_thresh ({self.rpn_fg_iou_thresh})"
            )
        if self.roi_bg_iou_thresh > self.roi_fg_iou_thresh:
            raise ValueError(
                f"ModelConfig.roi_bg_iou_thresh ({self.roi_bg_iou_thresh}) must not exceed "
                f"roi_fg_iou_thresh ({self.roi_fg_iou_thresh})"
            )

    def to_dict(self) -> dict[str, object]:
        """Plain-Python view (tuples as lists) for YAML/JSON and checkpoints."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> ModelConfig:
        """Build from a plain dict; unknown keys are an error naming them and the known keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"ModelConfig: unknown keys {unknown}; known keys are {sorted(known)}")
        return cls(**values)  # type: ignore[arg-type]
