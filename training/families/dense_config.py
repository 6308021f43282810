"""The `dense:` section of the training config: which dense benchmark, its reader options, the network.

Read only when `family: dense` (see `training.families.dense` and docs/dense.md)::

    family: dense
    data: {root: data/nyuv2, augment: false}            # data.root, splits, workers: shared keys
    dense:
      dataset: nyuv2                                    # nyuv2 | cityscapes | cityscapes3
      model: {tasks: [segmentation, depth, normal], num_classes: 13, head: ppm}
      synth: {train: 64, val: 16, size: [48, 64]}       # generate a synthetic stand-in at data.root

`dense.model` is `training.model.dense.DenseModelConfig` itself: its `tasks` are the tasks trained (a
subset of the dataset's; one task = a single-task baseline) and its `num_classes` the dataset's label
set (13 NYU-v2; 7 or 19 CityScapes). Every check names the dotted key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mtl_grasp.data.dense.cityscapes import DEPTH_ENCODINGS
from mtl_grasp.data.dense.layout import DATASETS, dataset_spec
from training.model.dense.config import DenseModelConfig

#: the label sets each dataset is published with (number of classes)
CLASS_SETS: dict[str, tuple[int, ...]] = {"nyuv2": (13,), "cityscapes": (7, 19), "cityscapes3": (7, 19)}


@dataclass
class DenseSynthConfig:
    """Generate the synthetic stand-in (`mtl_grasp.data.dense.synth`) at `data.root` if it is not there.

    train/val: samples per split (0 = never generate: real data); size: [H, W] of the generated images
    (null = the benchmark's own size, e.g. 288x384); seed: the generator's seed.
    """

    train: int = 0
    val: int = 0
    size: tuple[int, int] | None = None
    seed: int = 0


@dataclass
class DenseConfig:
    """The dense family's data and network (module docstring).

    size: [H, W] the official-folder CityScapes reader (`cityscapes3`) resizes to (null = 256x512);
        the `.npy` layouts are read at their stored size, which must then equal `size` when it is set.
    label_dir: `.npy` layouts only: the label folder (null: `label_<K>` if present, else `label`).
    depth_encoding, crowd_as_instance: `cityscapes3` only (docs/dense.md, "CityScapes, 3-task variant").
    skip_empty: drop samples with all-invalid depth/normals (read once at start) instead of failing.
    eval_batch_size: images per forward pass when evaluating.
    """

    dataset: str = "nyuv2"
    size: tuple[int, int] | None = None
    label_dir: str | None = None
    depth_encoding: str = "disparity"
    crowd_as_instance: bool = True
    skip_empty: bool = False
    eval_batch_size: int = 4
    synth: DenseSynthConfig = field(default_factory=DenseSynthConfig)
    model: DenseModelConfig = field(default_factory=DenseModelConfig)

    def validate(self) -> None:
        """Raise ValueError naming the first `dense.*` key whose value does not fit the dataset."""
        if self.dataset not in DATASETS:
            dataset_spec(self.dataset)  # raises with the closest name
        spec = DATASETS[self.dataset]
        extra = [t for t in self.model.tasks if t not in spec.tasks]
        if extra:
            raise ValueError(
                f"dense.model.tasks: {extra} are not tasks of the {self.dataset} dataset; "
                f"choose from {list(spec.tasks)}"
            )
        if self.model.num_classes not in CLASS_SETS[self.dataset]:
            raise ValueError(
                f"dense.model.num_classes: the {self.dataset} dataset has "
                f"{_either(CLASS_SETS[self.dataset])} classes, got {self.model.num_classes}"
            )
        for key, size in (("dense.size", self.size), ("dense.synth.size", self.synth.size)):
            if size is not None and min(size) < 8:
                raise ValueError(f"{key}: expected [H, W] of at least 8 pixels each, got {list(size)}")
        for key, number in (("dense.synth.train", self.synth.train), ("dense.synth.val", self.synth.val)):
            if number < 0:
                raise ValueError(f"{key}: expected a count >= 0, got {number}")
        if (self.synth.train > 0) != (self.synth.val > 0):
            raise ValueError(
                f"dense.synth: train and val must both be > 0 to generate data (or both 0), got "
                f"train={self.synth.train}, val={self.synth.val}"
            )
        if self.eval_batch_size < 1:
            raise ValueError(f"dense.eval_batch_size: expected a positive int, got {self.eval_batch_size}")
        self._check_layout_options(spec.layout)

    def _check_layout_options(self, layout: str) -> None:
        if self.depth_encoding not in DEPTH_ENCODINGS:
            raise ValueError(
                f"dense.depth_encoding: expected one of {DEPTH_ENCODINGS}, got {self.depth_encoding!r}"
            )
        if layout == "cityscapes" and self.label_dir is not None:
            raise ValueError(
                f"dense.label_dir: only for the .npy layouts; {self.dataset} reads the official "
                "CityScapes folders"
            )
        if layout == "npy" and (self.depth_encoding != "disparity" or not self.crowd_as_instance):
            raise ValueError(
                f"dense.depth_encoding / dense.crowd_as_instance: only for the official CityScapes folders "
                f"(dataset cityscapes3); {self.dataset} is read from .npy files"
            )


def _either(options: tuple[int, ...]) -> str:
    return " or ".join(str(o) for o in options)
