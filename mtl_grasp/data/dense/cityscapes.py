"""Reader of the official CityScapes folders for the study's 3-task variant (segmentation, depth, instance).

``CityscapesReader(root, "train", size=(256, 512))`` pairs ``leftImg8bit`` images with the ``gtFine``
label and instance id PNGs and the ``disparity`` PNGs, and returns per image (at ``size``):

* ``label``: the 7 CityScapes categories (``catId - 1`` of cityscapesScripts' ``labels.py``) or the 19
  train ids; labels whose train id is 255 (void, parking, guard rail, ...) become ``-1``.
* ``depth``: the disparity decoded as the cityscapesScripts README says, ``(p - 1) / 256`` pixels
  for ``p > 0`` and 0 (invalid) for ``p = 0`` (``depth_encoding="disparity"``). ``"study"`` divides the
  raw value by 2729.07 as SamsungLabs/MTL and the feature-disentanglement study's loader do;
  ``"mtan"`` divides it by 65535 as MTAN's preprocessed files appear to (docs/dense.md).
* ``instance``: per pixel of an instance, ``(dy, dx)`` from the instance's centroid, in fractions of
  ``(H - 1, W - 1)`` (the study's loader normalises coordinates the same way); ``instance_mask``
  marks those pixels. An instance is an ``instanceIds`` value >= 1000 on a pixel with a valid
  semantic label; with ``crowd_as_instance`` (default, as SamsungLabs/MTL and the study) a crowd
  region of a thing class (``instanceIds`` = its label id < 1000, e.g. a group of cars) counts as one
  instance too.

Label, instance and disparity maps are resized with nearest-neighbour sampling (``INTER_NEAREST_EXACT``:
pixel centres), the image with area averaging; centroids are computed at the output size from the
resized instance map, so the offsets of an instance average to zero exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mtl_grasp.data.dense.checks import EmptyTargetError
from mtl_grasp.data.dense.layout import (
    CITYSCAPES3,
    CS_DISPARITY_DIR,
    CS_DISPARITY_SCALE,
    CS_DISPARITY_SUFFIX,
    CS_GT_DIR,
    CS_IMAGE_DIR,
    CS_IMAGE_SUFFIX,
    CS_INSTANCE_DIVISOR,
    CS_INSTANCE_SUFFIX,
    CS_LABEL_SUFFIX,
    CS_STUDY_DEPTH_DIVISOR,
    IGNORE_LABEL,
    MTAN_CS_DEPTH_DIVISOR,
    check_split,
)
from mtl_grasp.data.dense.sample import DenseSample
from mtl_grasp.data.errors import DataError

# cityscapesScripts helpers/labels.py, ids 0..33: (trainId, catId, hasInstances)
_LABEL_TABLE = (
    (255, 0, 0), (255, 0, 0), (255, 0, 0), (255, 0, 0), (255, 0, 0), (255, 0, 0), (255, 0, 0),  # 0-6 void
    (0, 1, 0), (1, 1, 0), (255, 1, 0), (255, 1, 0),  # road, sidewalk, parking, rail track
    (2, 2, 0), (3, 2, 0), (4, 2, 0), (255, 2, 0), (255, 2, 0), (255, 2, 0),  # building..tunnel
    (5, 3, 0), (255, 3, 0), (6, 3, 0), (7, 3, 0),  # pole, polegroup, traffic light, traffic sign
    (8, 4, 0), (9, 4, 0), (10, 5, 0),  # vegetation, terrain, sky
    (11, 6, 1), (12, 6, 1),  # person, rider
    (13, 7, 1), (14, 7, 1), (15, 7, 1), (255, 7, 1), (255, 7, 1), (16, 7, 1), (17, 7, 1), (18, 7, 1),
)  # fmt: skip
NUM_LABEL_IDS = len(_LABEL_TABLE)  # 34
DEPTH_ENCODINGS = ("disparity", "study", "mtan")


def class_lut(num_classes: int) -> np.ndarray:
    """``[256]`` int64: CityScapes label id -> class (7 categories or 19 train ids), -1 = ignore."""
    if num_classes not in (7, 19):
        raise ValueError(f"num_classes: CityScapes has 7 categories or 19 train ids, got {num_classes}")
    lut = np.full(256, IGNORE_LABEL, np.int64)
    for label_id, (train_id, cat_id, _) in enumerate(_LABEL_TABLE):
        if train_id != 255:
            lut[label_id] = cat_id - 1 if num_classes == 7 else train_id
    return lut


THING_LABEL_IDS = tuple(i for i, (_, _, has) in enumerate(_LABEL_TABLE) if has)  # 24..33


@dataclass(frozen=True)
class CityscapesFiles:
    """The four files of one CityScapes image."""

    name: str  # "<city>/<city>_<seq>_<frame>"
    image: Path
    label: Path
    instance: Path
    disparity: Path


def discover(root: str | Path, split: str) -> list[CityscapesFiles]:
    """Every image of ``split`` with its label, instance and disparity files, sorted by name."""
    root = Path(root)
    image_root = root / CS_IMAGE_DIR / check_split(split)
    if not image_root.is_dir():
        raise DataError(
            f"{image_root}: missing folder; expected the official layout "
            f"ROOT/{CS_IMAGE_DIR}/<split>/<city>/, ROOT/{CS_GT_DIR}/<split>/<city>/ and "
            f"ROOT/{CS_DISPARITY_DIR}/<split>/<city>/"
        )
    out = []
    for image in sorted(image_root.glob(f"*/*{CS_IMAGE_SUFFIX}")):
        city, stem = image.parent.name, image.name[: -len(CS_IMAGE_SUFFIX)]
        gt = root / CS_GT_DIR / split / city
        files = CityscapesFiles(
            name=f"{city}/{stem}",
            image=image,
            label=gt / f"{stem}{CS_LABEL_SUFFIX}",
            instance=gt / f"{stem}{CS_INSTANCE_SUFFIX}",
            disparity=root / CS_DISPARITY_DIR / split / city / f"{stem}{CS_DISPARITY_SUFFIX}",
        )
        for path in (files.label, files.instance, files.disparity):
            if not path.is_file():
                raise DataError(f"{path}: missing file (the partner of {image})")
        out.append(files)
    if not out:
        raise DataError(f"{image_root}: no <city>/*{CS_IMAGE_SUFFIX} images")
    return out


def _read_png(path: Path, what: str, dtypes: tuple[type, ...], channels: int) -> np.ndarray:
    flag = cv2.IMREAD_COLOR if channels == 3 else cv2.IMREAD_UNCHANGED
    arr = cv2.imread(str(path), flag)
    if arr is None:
        raise DataError(f"{path}: cannot decode the {what} PNG")
    if channels == 1 and arr.ndim != 2:
        raise DataError(f"{path}: {what} must be a single-channel PNG, found shape {arr.shape}")
    if arr.dtype.type not in dtypes:
        names = " or ".join(np.dtype(d).name for d in dtypes)
        raise DataError(f"{path}: {what} must be {names}, found {arr.dtype}")
    return arr[:, :, ::-1] if channels == 3 else arr  # BGR -> RGB


def _resize(arr: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
    height, width = size
    if arr.shape[:2] == (height, width):
        return arr
    if nearest:
        mode = cv2.INTER_NEAREST_EXACT
    else:
        mode = cv2.INTER_AREA if height < arr.shape[0] else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(arr), (width, height), interpolation=mode)


def instance_offsets(ids: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[H, W]`` instance ids and validity -> ``([H, W, 2]`` (dy, dx) offsets from each instance's
    centroid in fractions of ``(H - 1, W - 1)``, 0 off instances; ``valid``)."""
    height, width = ids.shape
    offsets = np.zeros((height, width, 2), np.float32)
    if not valid.any():
        return offsets, valid
    ys, xs = np.nonzero(valid)
    _, inverse, counts = np.unique(ids[ys, xs], return_inverse=True, return_counts=True)
    yn = ys / max(height - 1, 1)
    xn = xs / max(width - 1, 1)
    cy = np.bincount(inverse, weights=yn) / counts
    cx = np.bincount(inverse, weights=xn) / counts
    offsets[ys, xs, 0] = yn - cy[inverse]
    offsets[ys, xs, 1] = xn - cx[inverse]
    return offsets, valid


class CityscapesReader:
    """One split of the official CityScapes folders as `DenseSample` s (module docstring)."""

    def __init__(
        self,
        root: str | Path,
        split: str,
        size: tuple[int, int] = (256, 512),
        num_classes: int = 7,
        depth_encoding: str = "disparity",
        crowd_as_instance: bool = True,
    ) -> None:
        if depth_encoding not in DEPTH_ENCODINGS:
            raise ValueError(f"depth_encoding: expected one of {DEPTH_ENCODINGS}, got {depth_encoding!r}")
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"size: expected (H, W) with positive sides, got {size}")
        self.root, self.split = Path(root), split
        self.size = (int(size[0]), int(size[1]))
        self.num_classes, self.lut = num_classes, class_lut(num_classes)
        self.depth_encoding, self.crowd_as_instance = depth_encoding, crowd_as_instance
        self.files = discover(root, split)
        self.tasks = CITYSCAPES3.tasks
        self.depth_kind = CITYSCAPES3.depth_kind

    def __len__(self) -> int:
        return len(self.files)

    def _depth(self, raw: np.ndarray) -> np.ndarray:
        raw = raw.astype(np.float64)
        if self.depth_encoding == "disparity":
            depth = np.where(raw > 0, (raw - 1.0) / CS_DISPARITY_SCALE, 0.0)
        elif self.depth_encoding == "study":
            depth = raw / CS_STUDY_DEPTH_DIVISOR
        else:
            depth = raw / MTAN_CS_DEPTH_DIVISOR
        return depth.astype(np.float32)

    def _label(self, label_ids: np.ndarray, path: Path) -> np.ndarray:
        if int(label_ids.max()) >= NUM_LABEL_IDS:
            bad = np.unique(label_ids[label_ids >= NUM_LABEL_IDS])[:5].tolist()
            raise DataError(f"{path}: label ids {bad} are not CityScapes label ids 0..{NUM_LABEL_IDS - 1}")
        return self.lut[label_ids]

    def _instances(self, ids: np.ndarray, label: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray]:
        ids = ids.astype(np.int64)
        label_of_id = np.where(ids >= CS_INSTANCE_DIVISOR, ids // CS_INSTANCE_DIVISOR, ids)
        if int(label_of_id.max()) >= NUM_LABEL_IDS:
            raise DataError(f"{path}: instance ids encode label ids >= {NUM_LABEL_IDS}")
        thing = np.isin(label_of_id, THING_LABEL_IDS)
        individual = ids >= CS_INSTANCE_DIVISOR
        valid = thing & (label != IGNORE_LABEL) & (individual | self.crowd_as_instance)
        return instance_offsets(ids, valid)

    def read(self, index: int, allow_empty: bool = False) -> DenseSample:
        """Image ``index`` at ``size``; an all-invalid disparity raises `EmptyTargetError` unless allowed."""
        f = self.files[index]
        image = _read_png(f.image, "image", (np.uint8,), 3)
        label_ids = _read_png(f.label, "labelIds", (np.uint8,), 1)
        ids = _read_png(f.instance, "instanceIds", (np.uint8, np.uint16, np.int32), 1)
        disparity = _read_png(f.disparity, "disparity", (np.uint16,), 1)
        sizes = {"image": image.shape[:2], "labelIds": label_ids.shape, "instanceIds": ids.shape,
                 "disparity": disparity.shape}  # fmt: skip
        if len(set(sizes.values())) > 1:
            raise DataError(f"{f.image}: the files of {f.name} differ in size: {sizes}")
        label = self._label(_resize(label_ids, self.size, nearest=True), f.label)
        depth = self._depth(_resize(disparity, self.size, nearest=True))
        if not allow_empty and not (depth > 0).any():
            raise EmptyTargetError(f"{f.disparity}: depth has no valid pixel (every disparity is 0)")
        offsets, mask = self._instances(_resize(ids, self.size, nearest=True), label, f.instance)
        rgb = _resize(image, self.size, nearest=False).astype(np.float32) / 255.0
        return DenseSample(image=rgb, label=label, depth=depth, instance=offsets, instance_mask=mask,
                           source=str(f.image))  # fmt: skip
