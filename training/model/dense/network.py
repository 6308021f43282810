"""`DenseMTLNet`: dilated ResNet18 (shared, output stride 8) -> one decoder per task (task-specific).

The MTL split is the same as `AmodalRCNN`'s: ``Z = features(image)`` is the shared representation
(a one-element list holding the backbone's ``[B, 512, ceil(H/8), ceil(W/8)]`` output), and
``heads(Z, (H, W), targets)`` returns the named task losses in training mode and the per-task
predictions at the input size in eval mode. Inputs are RGB in ``[0, 1]``; the model standardises them
with the ImageNet statistics of `mtl_grasp.contract` itself.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl_grasp.contract import RGB_MEAN, RGB_STD
from training.model.amodal_rcnn import RandomInitWarning
from training.model.dense.backbone import OUT_CHANNELS, DilatedResNet18
from training.model.dense.config import DenseModelConfig
from training.model.dense.heads import build_head
from training.model.dense.tasks import TARGET_LAYOUT, dense_task
from training.model.normalization import normalize_rgb

_DTYPE_KINDS = {
    "int64": (torch.int64,),
    "bool": (torch.bool,),
    "float": (torch.float32, torch.float16, torch.bfloat16),
}


def check_image(image: Tensor) -> None:
    if image.ndim != 4 or image.shape[1] != 3 or not image.is_floating_point():
        raise ValueError(
            f"image: expected float [B, 3, H, W] RGB in [0, 1], found {image.dtype} {tuple(image.shape)}"
        )


def check_targets(
    targets: Mapping[str, Tensor], tasks: Sequence[str], batch: int, size: tuple[int, int]
) -> None:
    """Every target the tasks read must be present with its layout (`TARGET_LAYOUT`); errors name the key."""
    for key in {k for t in tasks for k in dense_task(t).target_keys}:
        if key not in targets:
            raise ValueError(
                f"targets: missing {key!r} (needed by the tasks {list(tasks)}); got {sorted(targets)}"
            )
        channels, kind = TARGET_LAYOUT[key]
        value = targets[key]
        shape = (batch, *size) if channels is None else (batch, channels, *size)
        if tuple(value.shape) != shape or value.dtype not in _DTYPE_KINDS[kind]:
            raise ValueError(
                f"targets[{key!r}]: expected {kind} of shape {shape}, "
                f"found {value.dtype} {tuple(value.shape)}"
            )


class DenseMTLNet(nn.Module):
    """Dilated ResNet18 + one decoder per task of ``config.tasks`` (module docstring)."""

    rgb_mean: Tensor  # [1, 3, 1, 1] non-persistent buffers (follow .to(device), not saved)
    rgb_std: Tensor

    def __init__(self, config: DenseModelConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else DenseModelConfig()
        self.register_buffer("rgb_mean", torch.tensor(RGB_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("rgb_std", torch.tensor(RGB_STD).view(1, 3, 1, 1), persistent=False)
        self.backbone = DilatedResNet18(self.config.backbone_norm)
        self.decoders = nn.ModuleDict(
            {
                task: build_head(
                    self.config.head,
                    OUT_CHANNELS,
                    dense_task(task).channels(self.config.num_classes),
                    self.config.head_channels,
                )
                for task in self.config.tasks
            }
        )
        if self.config.pretrained_path:
            self.backbone.load_pretrained(self.config.pretrained_path)
        else:
            warnings.warn(
                "DenseModelConfig.pretrained_path is not set: the ResNet18 starts from random weights",
                RandomInitWarning,
                stacklevel=2,
            )

    @property
    def loss_names(self) -> tuple[str, ...]:
        """The names of the losses `heads` returns in training mode (= the tasks, in config order)."""
        return self.config.tasks

    # ---- the MTL split: Z = features(image), losses = heads(Z, (H, W), targets) ------------------------
    def features(self, image: Tensor) -> list[Tensor]:
        """Shared representation Z: ``[backbone(image)]``, one ``[B, 512, ceil(H/8), ceil(W/8)]`` tensor."""
        check_image(image)
        return [self.backbone(normalize_rgb(image, self.rgb_mean, self.rgb_std))]

    def head_outputs(self, Z: Sequence[Tensor], image_size: tuple[int, int]) -> dict[str, Tensor]:
        """Every decoder on Z, bilinearly upsampled to ``image_size`` (raw outputs: logits, depth,
        unnormalised normals, offsets)."""
        if len(Z) != 1:
            raise ValueError(f"Z: expected one feature tensor (the backbone output), got {len(Z)}")
        z = Z[0]
        if self.training and z.shape[0] < 2:
            raise ValueError("batch: training needs >= 2 images (the heads' BatchNorm follows a 1x1 pooling)")
        size = (int(image_size[0]), int(image_size[1]))
        return {
            task: F.interpolate(decoder(z), size=size, mode="bilinear", align_corners=False)
            for task, decoder in self.decoders.items()
        }

    def heads(
        self, Z: Sequence[Tensor], image_size: tuple[int, int], targets: Mapping[str, Tensor] | None = None
    ) -> dict[str, Tensor]:
        """Training: ``{task: loss}`` (float32 scalars, `loss_names` order). Eval: ``{task: prediction}``
        at ``image_size``: segmentation logits ``[B, K, H, W]``, depth ``[B, 1, H, W]``, unit normals
        ``[B, 3, H, W]``, instance offsets ``[B, 2, H, W]``."""
        outputs = self.head_outputs(Z, image_size)
        if not self.training:
            return {task: dense_task(task).predict(out) for task, out in outputs.items()}
        if targets is None:
            raise ValueError("targets: required in training mode (call model.eval() for predictions)")
        check_targets(targets, self.config.tasks, Z[0].shape[0], (int(image_size[0]), int(image_size[1])))
        return {task: dense_task(task).loss(outputs[task], targets).float() for task in self.config.tasks}

    def forward(self, image: Tensor, targets: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        """``heads(features(image), (H, W), targets)``."""
        return self.heads(self.features(image), (image.shape[-2], image.shape[-1]), targets)

    # ---- parameter groups --------------------------------------------------------------------------
    def shared_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters that produce Z: the ResNet18."""
        return [p for p in self.backbone.parameters() if p.requires_grad]

    def task_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters after Z: every decoder (disjoint from `shared_parameters`)."""
        return [p for p in self.decoders.parameters() if p.requires_grad]

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """``shared`` and one group per task decoder: disjoint, covering every trainable parameter."""
        groups = {"shared": self.shared_parameters()}
        for task, decoder in self.decoders.items():
            groups[task] = [p for p in decoder.parameters() if p.requires_grad]
        return groups
