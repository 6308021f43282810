"""The MetaGraspNet on-disk layout: every file name, pattern and key, in one place.

The reader (:mod:`.reader`), both generators (:mod:`.synth`, :mod:`.physics`), the COCO conversion and
the replayer name files only through this module, the way :mod:`mtl_grasp.contract` owns the ONNX
contract. Per scene folder and viewpoint ``v`` (docs/data.md has the field-by-field description)::

    <v>_rgb.png               RGB image
    <v>.npz                   depth (float cm, NaN holes), instances_objects, instances_semantic,
                              seg_masks_single (amodal [N, H, W]; older name occlusion_objects)
    <v>_amodal.npz            real layout: amodal_bitmaps_full_size_instances [N, 2, H, W]
    <v>_order.json            per object id: occlusion, parents/children (occluders), rests_on, ...
    <v>_camera_params.json    fx, fy, cx, cy, width, height
    <v>_scene.json            ours (the JSON counterpart of MetaGraspNet's <v>_scene.hdf5): camera pose,
                              object poses, categories, bin geometry
    ROOT/splits.json          train/val/test scene lists (mtl_grasp.data.splits)
    ROOT/categories.json      category id -> name (written by the generators)
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "AMODAL_KEYS",
    "CAMERA_GLOB",
    "CATEGORIES_FILE",
    "DEPTH_KEY",
    "NPZ_GLOB",
    "INSTANCES_KEY",
    "REAL_AMODAL_KEY",
    "SCENE_FORMAT",
    "SEMANTIC_KEY",
    "SPLITS_FILE",
    "ViewFiles",
    "npz_bytes",
    "scene_dir_name",
    "view_index",
]

# ---- npz keys ------------------------------------------------------------------------------------
DEPTH_KEY = "depth"  # float, centimetres, NaN = no measurement
INSTANCES_KEY = "instances_objects"  # visible instance map, 0 = background, ids 1..N
SEMANTIC_KEY = "instances_semantic"  # category id map
AMODAL_KEYS = ("seg_masks_single", "occlusion_objects")  # amodal [N, H, W]: newer name (written), older
REAL_AMODAL_KEY = "amodal_bitmaps_full_size_instances"  # <v>_amodal.npz, [N, 2, H, W]

# ---- files ---------------------------------------------------------------------------------------
SPLITS_FILE = "splits.json"
CATEGORIES_FILE = "categories.json"
CAMERA_GLOB = "*_camera_params.json"
NPZ_GLOB = "*.npz"  # views and their companions; view_index() tells them apart
SCENE_PREFIX = "scene"
SCENE_FORMAT = "mtl_grasp.scene/1"  # the "format" field of <v>_scene.json
_VIEW_NPZ = re.compile(r"^(\d+)\.npz$")


def scene_dir_name(index: int) -> str:
    """``scene<index>``, the folder of generated scene ``index``."""
    return f"{SCENE_PREFIX}{index}"


def view_index(npz_name: str) -> int | None:
    """The viewpoint of a view label file name (``"3.npz"`` -> 3); None for companions like
    ``3_amodal.npz`` or ``3_grasps.npz``."""
    m = _VIEW_NPZ.match(npz_name)
    return None if m is None else int(m.group(1))


@dataclass(frozen=True)
class ViewFiles:
    """The paths of viewpoint ``view``'s files in ``scene_dir`` (whether they exist or not)."""

    scene_dir: Path
    view: int

    def _path(self, suffix: str) -> Path:
        return self.scene_dir / f"{self.view}{suffix}"

    @property
    def rgb(self) -> Path:
        return self._path("_rgb.png")

    @property
    def npz(self) -> Path:
        return self._path(".npz")

    @property
    def amodal(self) -> Path:
        return self._path("_amodal.npz")

    @property
    def order(self) -> Path:
        return self._path("_order.json")

    @property
    def camera(self) -> Path:
        return self._path("_camera_params.json")

    @property
    def scene(self) -> Path:
        return self._path("_scene.json")


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """An ``np.load``-compatible npz with fixed timestamps (``np.savez`` stamps the current time), so the
    same arrays always give the same bytes."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue(), compresslevel=1)
    return out.getvalue()
