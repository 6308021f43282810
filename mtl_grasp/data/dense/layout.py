"""The on-disk contracts of the dense benchmarks (NYU-v2, CityScapes): one owner for every name and unit.

Two layouts are read (see docs/dense.md for the sources of every convention):

* **Per-sample ``.npy``** (the MTAN / LibMTL preprocessed downloads)::

      ROOT/{train,val}/image/<i>.npy    [H, W, 3] RGB, float in [0, 1] (uint8 0..255 also accepted)
      ROOT/{train,val}/label/<i>.npy    [H, W] class index 0..K-1, -1 = ignore (stored as float or int)
      ROOT/{train,val}/depth/<i>.npy    [H, W, 1] or [H, W]; 0 = invalid
      ROOT/{train,val}/normal/<i>.npy   [H, W, 3] unit normals, zero vector = invalid (NYU-v2 only)

  ``i`` runs over 0..N-1 without gaps (the reference loaders open ``<i>.npy`` for ``i < N``). MTAN's
  CityScapes download names the label folder ``label_7`` / ``label_19`` (``label_2`` too); LibMTL's
  re-packaged one ``label``: the reader takes ``label_<K>`` when it exists, else ``label``.
* **Official CityScapes folders** (the study's 3-task variant)::

      ROOT/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png
      ROOT/gtFine/<split>/<city>/<name>_gtFine_labelIds.png
      ROOT/gtFine/<split>/<city>/<name>_gtFine_instanceIds.png
      ROOT/disparity/<split>/<city>/<name>_disparity.png       uint16, d = (p - 1) / 256 px, p = 0 invalid

In memory every reader returns a :class:`~mtl_grasp.data.dense.sample.DenseSample` with the units of
this module: RGB float32 in [0, 1], labels int64 with ``IGNORE_LABEL``, depth float32 with 0 =
invalid, unit normals with the zero vector invalid, instance offsets float32 ``(dy, dx)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "val")  # the val split is the test split in every reference (MTAN, LibMTL, CAGrad)
IGNORE_LABEL = -1  # semantic label of a pixel that is neither trained nor scored
TASKS = ("segmentation", "depth", "normal", "instance")

IMAGE_DIR, LABEL_DIR, DEPTH_DIR, NORMAL_DIR = "image", "label", "depth", "normal"
NPY_SUFFIX = ".npy"

# official CityScapes file names
CS_IMAGE_DIR, CS_GT_DIR, CS_DISPARITY_DIR = "leftImg8bit", "gtFine", "disparity"
CS_IMAGE_SUFFIX = "_leftImg8bit.png"
CS_LABEL_SUFFIX = "_gtFine_labelIds.png"
CS_INSTANCE_SUFFIX = "_gtFine_instanceIds.png"
CS_DISPARITY_SUFFIX = "_disparity.png"
CS_DISPARITY_SCALE = 256.0  # cityscapesScripts README: d = (p - 1) / 256 for p > 0, p = 0 invalid
CS_INSTANCE_DIVISOR = 1000  # instanceIds: id >= 1000 -> label id = id // 1000; id < 1000 is a label id
# SamsungLabs/MTL and the feature-disentanglement study's loader divide the raw disparity PNG by this
# "standard deviation" instead of decoding it (code/data/datasets/cityscapes.py, DEPTH_STD)
CS_STUDY_DEPTH_DIVISOR = 2729.0680031169923
# MTAN's preprocessed CityScapes depth peaks at 0.4922 = 32257 / 65535 (lorenmt/mtan issue #25): the
# raw PNG value divided by 65535, which the synthetic writer reproduces for that layout [inferred]
MTAN_CS_DEPTH_DIVISOR = 65535.0


@dataclass(frozen=True)
class DenseDatasetSpec:
    """What one benchmark holds: its tasks, its number of classes and its default size (H, W)."""

    name: str
    tasks: tuple[str, ...]
    num_classes: int
    size: tuple[int, int]
    layout: str  # "npy" (MTAN/LibMTL per-sample files) or "cityscapes" (official folders)
    class_names: tuple[str, ...]
    depth_kind: str = "depth"  # "depth" (metres, NYU-v2) or "disparity" (inverse depth, CityScapes)

    def __post_init__(self) -> None:
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown:
            raise ValueError(f"DenseDatasetSpec.tasks: unknown tasks {unknown}; known: {TASKS}")
        if self.depth_kind not in ("depth", "disparity"):
            raise ValueError(f"DenseDatasetSpec.depth_kind: 'depth' or 'disparity', got {self.depth_kind!r}")
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"DenseDatasetSpec {self.name!r}: {len(self.class_names)} class names for "
                f"{self.num_classes} classes"
            )

    @property
    def has_normal(self) -> bool:
        return "normal" in self.tasks


# The 13 NYU-v2 classes of MTAN's labels (Couprie et al. / SceneNet mapping, alphabetical, 0-based);
# the order is inferred from that mapping, the reader only needs K = 13.
NYU13_CLASSES = (
    "bed", "books", "ceiling", "chair", "floor", "furniture", "objects", "picture", "sofa", "table",
    "tv", "wall", "window",
)  # fmt: skip
# CityScapes categories without "void" (catId - 1 of cityscapesScripts' labels.py)
CITYSCAPES7_CLASSES = ("flat", "construction", "object", "nature", "sky", "human", "vehicle")
CITYSCAPES19_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
    "bicycle",
)  # fmt: skip

NYUV2 = DenseDatasetSpec("nyuv2", ("segmentation", "depth", "normal"), 13, (288, 384), "npy", NYU13_CLASSES)
CITYSCAPES = DenseDatasetSpec(
    "cityscapes", ("segmentation", "depth"), 7, (128, 256), "npy", CITYSCAPES7_CLASSES, "disparity"
)
CITYSCAPES3 = DenseDatasetSpec(
    "cityscapes3",
    ("segmentation", "depth", "instance"),
    7,
    (256, 512),
    "cityscapes",
    CITYSCAPES7_CLASSES,
    "disparity",
)
DATASETS: dict[str, DenseDatasetSpec] = {s.name: s for s in (NYUV2, CITYSCAPES, CITYSCAPES3)}


def dataset_spec(name: str) -> DenseDatasetSpec:
    """The spec called ``name``; an unknown name raises ValueError listing the known ones."""
    if name not in DATASETS:
        import difflib

        close = difflib.get_close_matches(name, DATASETS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"dataset: unknown dense dataset {name!r}{hint}; known: {sorted(DATASETS)}")
    return DATASETS[name]


def npy_path(root: str | Path, split: str, folder: str, index: int) -> Path:
    """``ROOT/<split>/<folder>/<index>.npy``."""
    return Path(root) / split / folder / f"{index}{NPY_SUFFIX}"


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    return split
