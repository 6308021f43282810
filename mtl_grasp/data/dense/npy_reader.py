"""Reader of the per-sample ``.npy`` layout of the MTAN / LibMTL NYU-v2 and CityScapes downloads.

``NpyDenseReader(root, "train", "nyuv2")`` checks the folder structure once (every folder present,
the same indices ``0..N-1`` everywhere) and reads one validated :class:`DenseSample` per ``read(i)``.
See :mod:`mtl_grasp.data.dense.layout` for the layout and docs/dense.md for the sources.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from mtl_grasp.data.dense.checks import (
    as_depth,
    as_image,
    as_label,
    as_normal,
    check_not_empty,
    check_same_size,
)
from mtl_grasp.data.dense.layout import (
    DEPTH_DIR,
    IMAGE_DIR,
    LABEL_DIR,
    NORMAL_DIR,
    DenseDatasetSpec,
    check_split,
    dataset_spec,
    npy_path,
)
from mtl_grasp.data.dense.sample import DenseSample
from mtl_grasp.data.errors import DataError

_INDEX_FILE = re.compile(r"^(\d+)\.npy$")


def load_npy(path: Path) -> np.ndarray:
    """``np.load`` without pickles; a missing, truncated or foreign file is a `DataError` naming it."""
    if not path.is_file():
        raise DataError(f"{path}: missing file")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({exc})") from exc
    if not isinstance(arr, np.ndarray):
        raise DataError(f"{path}: expected one array, found {type(arr).__name__}")
    return arr


def _indices(folder: Path) -> set[int]:
    return {int(m.group(1)) for p in folder.iterdir() if (m := _INDEX_FILE.match(p.name))}


def resolve_label_dir(split_dir: Path, num_classes: int, label_dir: str | None) -> str:
    """``label_dir`` if given, else ``label_<K>`` when present (MTAN's CityScapes), else ``label``."""
    if label_dir is not None:
        return label_dir
    specific = f"{LABEL_DIR}_{num_classes}"
    return specific if (split_dir / specific).is_dir() else LABEL_DIR


class NpyDenseReader:
    """One split of a per-sample ``.npy`` dataset (``ROOT/<split>/<folder>/<i>.npy``)."""

    def __init__(
        self,
        root: str | Path,
        split: str,
        spec: DenseDatasetSpec | str,
        label_dir: str | None = None,
    ) -> None:
        self.spec = dataset_spec(spec) if isinstance(spec, str) else spec
        if self.spec.layout != "npy":
            raise ValueError(f"spec: {self.spec.name!r} is not stored in the .npy layout")
        self.root, self.split = Path(root), check_split(split)
        self.tasks, self.num_classes, self.depth_kind = (
            self.spec.tasks,
            self.spec.num_classes,
            self.spec.depth_kind,
        )
        split_dir = self.root / split
        if not split_dir.is_dir():
            raise DataError(
                f"{split_dir}: missing split folder; expected ROOT/{split}/{{image,label,depth"
                f"{',normal' if self.spec.has_normal else ''}}}/<i>.npy"
            )
        self.label_dir = resolve_label_dir(split_dir, self.spec.num_classes, label_dir)
        self.folders = {"image": IMAGE_DIR, "label": self.label_dir, "depth": DEPTH_DIR}
        if self.spec.has_normal:
            self.folders["normal"] = NORMAL_DIR
        missing = [name for name in self.folders.values() if not (split_dir / name).is_dir()]
        if missing:
            raise DataError(
                f"{split_dir}: missing folders {missing}; found {sorted(p.name for p in split_dir.iterdir())}"
            )
        self.length = self._check_indices(split_dir)

    def _check_indices(self, split_dir: Path) -> int:
        found = {name: _indices(split_dir / name) for name in self.folders.values()}
        images = found[IMAGE_DIR]
        if not images:
            raise DataError(f"{split_dir / IMAGE_DIR}: no <i>.npy files")
        length = max(images) + 1
        for name, indices in found.items():
            gaps = sorted(set(range(length)) - indices)
            if gaps:
                raise DataError(
                    f"{split_dir / name / f'{gaps[0]}.npy'}: missing file ({len(gaps)} of indices "
                    f"0..{length - 1} missing in {name}/; the layout numbers samples 0..N-1 without gaps)"
                )
            extra = sorted(indices - set(range(length)))
            if extra:
                raise DataError(f"{split_dir / name / f'{extra[0]}.npy'}: no matching image/{extra[0]}.npy")
        return length

    def __len__(self) -> int:
        return self.length

    def files(self, index: int) -> dict[str, Path]:
        """The files of sample ``index`` by role (image, label, depth[, normal])."""
        if not 0 <= index < self.length:
            raise IndexError(f"index: {index} outside 0..{self.length - 1} of {self.root / self.split}")
        return {role: npy_path(self.root, self.split, folder, index) for role, folder in self.folders.items()}

    def read(self, index: int, allow_empty: bool = False) -> DenseSample:
        """Sample ``index`` validated; all-invalid depth/normals raise `EmptyTargetError` unless allowed."""
        files = self.files(index)
        raw = {role: load_npy(path) for role, path in files.items()}
        image = as_image(raw["image"], str(files["image"]))
        label = as_label(raw["label"], self.spec.num_classes, str(files["label"]))
        depth = as_depth(raw["depth"], str(files["depth"]))
        normal = as_normal(raw["normal"], str(files["normal"])) if "normal" in raw else None
        arrays = {"image": image, "label": label, "depth": depth} | (
            {"normal": normal} if normal is not None else {}
        )
        check_same_size(
            {role: arr.shape for role, arr in arrays.items()}, f"{self.root / self.split} sample {index}"
        )
        source = str(files["image"])
        if not allow_empty:
            check_not_empty(depth, str(files["depth"]), normal, str(files.get("normal", "")))
        return DenseSample(image=image, label=label, depth=depth, normal=normal, source=source)
