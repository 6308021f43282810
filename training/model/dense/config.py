"""`DenseModelConfig`: every hyperparameter of the dense multi-task network, typed and validated."""

from __future__ import annotations

from dataclasses import dataclass, fields

from training.model.dense.heads import HEADS
from training.model.dense.tasks import DENSE_TASKS

BACKBONE_NORMS = ("batch_norm", "frozen_bn")


@dataclass
class DenseModelConfig:
    """Hyperparameters of `DenseMTLNet`. Defaults: the NYU-v2 tasks with pyramid-pooling heads.

    ``tasks`` are names of `training.model.dense.tasks.DENSE_TASKS` (their order is the order of the
    losses); ``num_classes`` is the number of segmentation classes (13 NYU-v2, 7 or 19 CityScapes).
    """

    tasks: tuple[str, ...] = ("segmentation", "depth", "normal")
    num_classes: int = 13
    head: str = "ppm"  # "ppm" (PSPNet pyramid pooling, the study's code) or "aspp" (DeepLab, MTAN/LibMTL)
    head_channels: int = 256  # width of the ppm head's fusion conv (the aspp head is fixed at 256)
    backbone_norm: str = "batch_norm"  # trained BN as in every reference; "frozen_bn" for tiny batches
    pretrained_path: str | None = None  # local torchvision ResNet18 state dict; None = random init

    def __post_init__(self) -> None:
        self.tasks = tuple(self.tasks)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first field whose value is out of range."""
        if not self.tasks:
            raise ValueError("DenseModelConfig.tasks: expected at least one task")
        unknown = [t for t in self.tasks if t not in DENSE_TASKS]
        if unknown:
            raise ValueError(f"DenseModelConfig.tasks: unknown {unknown}; known: {sorted(DENSE_TASKS)}")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"DenseModelConfig.tasks: repeated task in {self.tasks}")
        for name in ("num_classes", "head_channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"DenseModelConfig.{name}: expected a positive int, got {value!r}")
        if "segmentation" in self.tasks and self.num_classes < 2:
            raise ValueError(
                f"DenseModelConfig.num_classes: segmentation needs >= 2 classes, got {self.num_classes}"
            )
        if self.head not in HEADS:
            raise ValueError(f"DenseModelConfig.head: expected one of {HEADS}, got {self.head!r}")
        if self.backbone_norm not in BACKBONE_NORMS:
            raise ValueError(
                f"DenseModelConfig.backbone_norm: expected one of {BACKBONE_NORMS}, "
                f"got {self.backbone_norm!r}"
            )

    def to_dict(self) -> dict[str, object]:
        """Plain-Python view (tuples as lists) for YAML/JSON and checkpoints."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> DenseModelConfig:
        """Build from a plain dict; unknown keys are an error naming them and the known keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"DenseModelConfig: unknown keys {unknown}; known keys are {sorted(known)}")
        return cls(**values)  # type: ignore[arg-type]
