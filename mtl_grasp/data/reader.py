"""Read MetaGraspNet scenes (simulated and real layout, and our synthetic ones) into typed samples.

A *view* is a ``<v>.npz`` label file in a scene folder (``scene<N>/``, at any depth below the root, so
``dataset_real/level_5/scene46`` works). What is read, and the decisions taken (docs/data.md has them
all):

* RGB from ``<v>_rgb.png`` (uint8 H x W x 3, RGB order).
* Depth from the npz ``depth`` (centimetres) -> **metres**, float32; NaN, +-inf and values <= 0 become
  ``0`` = invalid (real sensors leave holes; the network treats 0 as "no measurement").
* Visible masks from ``instances_objects == id`` for ids ``1..N``.
* Amodal masks from ``seg_masks_single`` (older name ``occlusion_objects``), index ``i`` <-> object id
  ``i + 1``; or, real layout, from ``<v>_amodal.npz`` ``amodal_bitmaps_full_size_instances[:, 0] |
  [:, 1]`` (visible part | occluded part). The index <-> id mapping is not documented upstream, so it is
  checked: the visible pixels of id ``k`` must lie inside amodal mask ``k - 1`` up to a tolerance
  (``max(4 px, 10 %)``, because the real data has few-pixel RGB/label misalignments). Beyond it the
  view is rejected (the mapping is wrong); within it the few stray pixels are added to the amodal mask
  so that visible is a subset of amodal exactly.
* Objects whose amodal mask is empty are not in this view and are dropped. Fully hidden objects
  (amodal > 0, visible = 0) and tiny visible fragments are *kept* here; the COCO conversion and the
  torch dataset drop objects below ``min_visible_area`` pixels (default 1: only the fully hidden ones).
* ``occluded_rate = 1 - |visible| / |amodal|`` from the masks. ``<v>_order.json`` ``occlusion`` values
  are read too (``order_occlusion``) and compared by :meth:`Sample.order_mismatches`; ``strict_order``
  turns a mismatch into an error. The masks are authoritative since they are what is trained on.
* Category ids: the most frequent ``instances_semantic`` value over the object's visible pixels; for a
  hidden object the order.json ``category_id`` if present, else 0 (unknown).
* Poses (generated scenes): ``<v>_scene.json`` gives the camera pose (``world_from_camera``) and each
  object's pose, read into metres (``Sample.camera_pose``, ``Sample.object_poses``); the real layout has
  no such file and reads as before (both None).

File names and keys come from :mod:`mtl_grasp.data.layout`.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mtl_grasp.camera import Intrinsics
from mtl_grasp.data import layout
from mtl_grasp.data.errors import DataError
from mtl_grasp.data.splits import Splits, load_splits, make_splits, natural_key

__all__ = [
    "AMODAL_TOLERANCE_FRACTION",
    "AMODAL_TOLERANCE_PIXELS",
    "Sample",
    "ViewRef",
    "discover_views",
    "load_view",
    "resolve_splits",
    "scene_names",
    "select_split",
]

AMODAL_TOLERANCE_PIXELS = 4
AMODAL_TOLERANCE_FRACTION = 0.10
ORDER_TOLERANCE = 0.02


@dataclass(frozen=True)
class ViewRef:
    """Where one view's files are; ``image_id`` is its 1-based position in :func:`discover_views`."""

    root: Path
    scene: str  # scene folder relative to root, "/"-separated (the unit of splits)
    view: int
    npz_path: Path
    rgb_path: Path
    amodal_path: Path | None
    order_path: Path | None
    camera_path: Path | None
    scene_path: Path | None  # <v>_scene.json (camera and object poses), generated scenes only
    image_id: int

    @property
    def name(self) -> str:
        return f"{self.scene}/{self.view}"


@dataclass
class Sample:
    """One view, in the units of docs/architecture.md (N objects, H x W pixels)."""

    ref: ViewRef
    rgb: np.ndarray  # uint8 [H, W, 3]
    depth: np.ndarray  # float32 [H, W] metres, 0 = invalid
    visible_masks: np.ndarray  # bool [N, H, W]
    amodal_masks: np.ndarray  # bool [N, H, W], visible subset of amodal
    object_ids: np.ndarray  # int64 [N], ids of instances_objects
    category_ids: np.ndarray  # int64 [N], MetaGraspNet category id, 0 = unknown
    occluded_rate: np.ndarray  # float32 [N] = 1 - visible / amodal area
    order_occlusion: np.ndarray  # float32 [N], order.json "occlusion", NaN where absent
    camera: Intrinsics | None
    # From <v>_scene.json when present (else None), metres: world_from_camera [4, 4] (camera frame = OpenCV
    # optical frame) and world_from_object [N, 4, 4] of each object's geometry frame (docs/data.md).
    camera_pose: np.ndarray | None = None
    object_poses: np.ndarray | None = None

    @property
    def object_poses_in_camera(self) -> np.ndarray | None:
        """camera_from_object [N, 4, 4] (metres), from the two poses above; None without them."""
        if self.camera_pose is None or self.object_poses is None:
            return None
        return np.linalg.inv(self.camera_pose)[None] @ self.object_poses

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def visible_area(self) -> np.ndarray:
        return self.visible_masks.reshape(len(self.object_ids), self.height * self.width).sum(axis=1)

    @property
    def amodal_area(self) -> np.ndarray:
        return self.amodal_masks.reshape(len(self.object_ids), self.height * self.width).sum(axis=1)

    def order_mismatches(self, tolerance: float = ORDER_TOLERANCE) -> list[int]:
        """Object ids whose order.json occlusion differs from the mask-derived rate by > tolerance."""
        diff = np.abs(self.order_occlusion - self.occluded_rate)
        return [int(i) for i, d in zip(self.object_ids, diff) if np.isfinite(d) and d > tolerance]


# ---- discovery -----------------------------------------------------------------------------------


def _has_amodal(npz_path: Path, amodal_path: Path | None) -> bool:
    if amodal_path is not None:
        return True
    try:
        with zipfile.ZipFile(npz_path) as zf:  # reads the zip directory only
            names = {n.removesuffix(".npy") for n in zf.namelist()}
    except (OSError, zipfile.BadZipFile):
        return True  # keep it: loading it raises the precise error
    return any(k in names for k in layout.AMODAL_KEYS)


def discover_views(root: str | Path, require_amodal: bool = False) -> list[ViewRef]:
    """All views under ``root``, sorted by scene (natural order) then view index.

    ``require_amodal`` skips views with no amodal labels (real viewpoints other than 3 have none);
    without it such a view raises :class:`DataError` when loaded.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"root: dataset folder {root} does not exist or is not a folder")
    found = []
    for npz in root.rglob(layout.NPZ_GLOB):
        v = layout.view_index(npz.name)
        if v is None:
            continue  # 3_amodal.npz, 3_grasps.npz, <v>_mats.npz ... are companions, not views
        scene_dir = npz.parent
        scene = scene_dir.relative_to(root).as_posix()
        if scene == ".":
            scene = root.name
        files = layout.ViewFiles(scene_dir, v)
        camera: Path | None = files.camera
        if not files.camera.is_file():  # the V2 sim samples store intrinsics for one viewpoint only
            others = sorted(scene_dir.glob(layout.CAMERA_GLOB), key=lambda p: natural_key(p.name))
            camera = others[0] if others else None
        amodal_path = files.amodal if files.amodal.is_file() else None
        if require_amodal and not _has_amodal(npz, amodal_path):
            continue
        found.append((natural_key(scene), v, scene, files, amodal_path, camera))
    found.sort(key=lambda f: (f[0], f[1]))
    return [
        ViewRef(
            root, scene, v, files.npz, files.rgb, amodal,
            files.order if files.order.is_file() else None, camera,
            files.scene if files.scene.is_file() else None, image_id=i + 1,
        )  # fmt: skip
        for i, (_, v, scene, files, amodal, camera) in enumerate(found)
    ]


def scene_names(views: list[ViewRef]) -> list[str]:
    """The distinct scenes of ``views`` in natural order."""
    return sorted({v.scene for v in views}, key=natural_key)


def select_split(
    views: list[ViewRef], split: str | None, splits_file: str | Path | None = None
) -> list[ViewRef]:
    """The views of ``split`` (all views when None), keeping their ``image_id``.

    The split file is ``splits_file`` if given, else ``<root>/splits.json`` if present (the generator
    writes one), else splits made from the scene names with the defaults of
    :func:`mtl_grasp.data.splits.make_splits` (deterministic). An unknown split name raises DataError
    listing the known ones; a split with no scene under the root raises DataError too.
    """
    if split is None:
        return list(views)
    if not views:
        raise DataError(f"split: cannot select split {split!r} from an empty list of views")
    splits = resolve_splits(views[0].root, scene_names(views), splits_file)
    members = set(splits.scenes(split))
    chosen = [v for v in views if v.scene in members]
    if not chosen:
        raise DataError(
            f"split: split {split!r} ({len(members)} scenes) has no scene under {views[0].root}; "
            f"is the split file for another dataset?"
        )
    return chosen


def resolve_splits(root: Path, scenes: list[str], splits_file: str | Path | None = None) -> Splits:
    """The split file to use for ``root`` (see :func:`select_split`)."""
    if splits_file is not None:
        return load_splits(splits_file)
    default = Path(root) / layout.SPLITS_FILE
    if default.is_file():
        return load_splits(default)
    return make_splits(scenes)


# ---- loading -------------------------------------------------------------------------------------


def _read_rgb(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: RGB image missing (every <v>.npz needs a <v>_rgb.png beside it)")
    data = np.fromfile(path, np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise DataError(f"{path}: not a decodable image (corrupt or truncated PNG)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _read_npz(
    path: Path, required: tuple[str, ...], first_of: tuple[str, ...] = (), optional: tuple[str, ...] = ()
) -> dict[str, np.ndarray]:
    """Load ``required``, the first present key of ``first_of`` and the present ``optional`` keys.

    Missing/corrupt files and missing required keys raise DataError naming the file.
    """
    if not path.is_file():
        raise DataError(f"{path}: label file missing")
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            missing = [k for k in required if k not in keys]
            if missing:
                raise DataError(f"{path}: missing keys {missing}; found keys {sorted(keys)}")
            wanted = list(required) + [k for k in first_of if k in keys][:1]
            wanted += [k for k in optional if k in keys]
            return {k: npz[k] for k in wanted}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as exc:
        raise DataError(f"{path}: corrupt or unreadable npz ({type(exc).__name__}: {exc})") from exc


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not readable JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def _read_camera(path: Path, height: int, width: int) -> Intrinsics:
    data = _read_json(path)
    try:
        fx, fy = float(data["fx"]), float(data["fy"])
        return Intrinsics(
            fx=fx,
            fy=fy,
            cx=float(data.get("cx", width / 2)),
            cy=float(data.get("cy", height / 2)),
            width=int(data.get("width", width)),
            height=int(data.get("height", height)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(
            f"{path}: expected numeric 'fx' and 'fy' (and optional cx, cy, width, height): {exc}"
        ) from exc


def _check_shape(path: Path, what: str, shape: tuple, expected: tuple) -> None:
    if tuple(shape) != tuple(expected):
        raise DataError(
            f"{path}: {what} has shape {tuple(shape)}, expected {tuple(expected)} (the RGB image's size)"
        )


def _categories(ids: np.ndarray, semantic: np.ndarray | None, n: int) -> np.ndarray:
    """Per object id 1..n the most frequent semantic value over its visible pixels (0 if none)."""
    out = np.zeros(n + 1, np.int64)
    if semantic is None:
        return out[1:]
    sel = ids > 0
    pairs = ids[sel].astype(np.int64) * (1 << 32) + semantic[sel].astype(np.int64)
    if pairs.size == 0:
        return out[1:]
    keys, counts = np.unique(pairs, return_counts=True)
    obj, cat = keys >> 32, keys & 0xFFFFFFFF
    order = np.lexsort((counts, obj))  # within each object, the most frequent category comes last
    out[obj[order]] = cat[order]
    return out[1:]


def _read_labels(ref: ViewRef, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict]:
    """Depth (metres, 0 = invalid), the visible id map, the semantic map (or None) and the raw arrays."""
    amodal_keys = () if ref.amodal_path is not None else layout.AMODAL_KEYS
    arrays = _read_npz(
        ref.npz_path, (layout.DEPTH_KEY, layout.INSTANCES_KEY), amodal_keys, (layout.SEMANTIC_KEY,)
    )
    semantic = arrays.get(layout.SEMANTIC_KEY)
    depth_cm, ids = arrays[layout.DEPTH_KEY], arrays[layout.INSTANCES_KEY]
    _check_shape(ref.npz_path, layout.DEPTH_KEY, depth_cm.shape, (h, w))
    _check_shape(ref.npz_path, layout.INSTANCES_KEY, ids.shape, (h, w))
    if semantic is not None:
        _check_shape(ref.npz_path, layout.SEMANTIC_KEY, semantic.shape, (h, w))
    if not np.issubdtype(depth_cm.dtype, np.number) or not np.issubdtype(ids.dtype, np.integer):
        raise DataError(
            f"{ref.npz_path}: expected numeric {layout.DEPTH_KEY} and integer {layout.INSTANCES_KEY}, found "
            f"{depth_cm.dtype} and {ids.dtype}"
        )
    with np.errstate(invalid="ignore"):
        depth = np.where(np.isfinite(depth_cm) & (depth_cm > 0), depth_cm, 0).astype(np.float32) / 100.0
    return depth, ids, semantic, arrays


def _read_amodal(ref: ViewRef, arrays: dict, h: int, w: int) -> tuple[np.ndarray, Path]:
    """Amodal masks [N, H, W] bool and the file they came from (real <v>_amodal.npz or the view npz)."""
    if ref.amodal_path is not None:
        key = layout.REAL_AMODAL_KEY
        real = _read_npz(ref.amodal_path, (key,))[key]
        if real.ndim != 4 or real.shape[1] != 2:
            raise DataError(f"{ref.amodal_path}: {key} has shape {real.shape}, expected [N, 2, H, W]")
        amodal, src = (real[:, 0] != 0) | (real[:, 1] != 0), ref.amodal_path  # visible | occluded part
    else:
        found = next((k for k in layout.AMODAL_KEYS if k in arrays), None)
        if found is None:
            raise DataError(
                f"{ref.npz_path}: no amodal masks: neither {' / '.join(layout.AMODAL_KEYS)} in the npz nor "
                f"a {ref.view}_amodal.npz beside it (use require_amodal=True to skip such views)"
            )
        amodal, src = arrays[found] != 0, ref.npz_path
    if amodal.ndim != 3:
        raise DataError(f"{src}: amodal masks have shape {amodal.shape}, expected [N, H, W]")
    _check_shape(src, "amodal masks", amodal.shape[1:], (h, w))
    return amodal, src


def _visible_masks(ref: ViewRef, ids: np.ndarray, amodal: np.ndarray, src: Path) -> tuple[np.ndarray, ...]:
    """Visible masks of ids 1..N, checked against the amodal masks (the index <-> id mapping); returns
    (visible, amodal with the tolerated stray pixels absorbed, visible areas)."""
    n, h, w = amodal.shape
    present = np.unique(ids)
    present = present[present != 0]
    if present.size and (present.min() < 0 or present.max() > n):
        raise DataError(
            f"{ref.npz_path}: {layout.INSTANCES_KEY} holds ids {present.tolist()[:10]} but there are only "
            f"{n} amodal masks (ids must be 1..{n})"
        )
    object_ids = np.arange(1, n + 1, dtype=np.int64)
    visible = ids[None, :, :] == object_ids[:, None, None].astype(ids.dtype)
    vis_area = visible.reshape(n, h * w).sum(axis=1)
    stray = (visible & ~amodal).reshape(n, h * w).sum(axis=1)
    limit = np.maximum(AMODAL_TOLERANCE_PIXELS, AMODAL_TOLERANCE_FRACTION * vis_area)
    bad = np.flatnonzero(stray > limit)
    if bad.size:
        k = int(bad[0])
        raise DataError(
            f"{src}: {int(stray[k])} of {int(vis_area[k])} visible pixels of object id {k + 1} lie "
            f"outside amodal mask index {k}; the amodal index <-> object id mapping does not hold"
        )
    return visible, amodal | visible, vis_area  # absorb the tolerated few-pixel misalignment


def _read_order(ref: ViewRef, n: int, categories: np.ndarray) -> np.ndarray:
    """order.json ``occlusion`` per id 1..n (NaN where absent); fills unknown categories in place."""
    order_occ = np.full(n, np.nan, np.float32)
    if ref.order_path is None:
        return order_occ
    order = _read_json(ref.order_path)
    for k in range(n):
        entry = order.get(str(k + 1))
        if not isinstance(entry, dict):
            continue
        try:
            if "occlusion" in entry:
                order_occ[k] = float(entry["occlusion"])
            if categories[k] == 0 and "category_id" in entry:
                categories[k] = int(entry["category_id"])
        except (TypeError, ValueError) as exc:
            raise DataError(f"{ref.order_path}: object {k + 1} has a non-numeric field: {exc}") from exc
    return order_occ


def _pose_m(path: Path, value, what: str) -> np.ndarray:
    """A 4x4 rigid transform written in cm -> metres; DataError naming ``what`` otherwise."""
    try:
        pose = np.asarray(value, np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: {what} is not a 4x4 matrix of numbers ({exc})") from exc
    if pose.shape != (4, 4) or not np.isfinite(pose).all():
        raise DataError(f"{path}: {what} must be a finite 4x4 matrix, found shape {pose.shape}")
    pose = pose.copy()
    pose[:3, 3] /= 100.0
    return pose


def _read_scene(ref: ViewRef, object_ids: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``<v>_scene.json``: world_from_camera [4, 4] and world_from_object [N, 4, 4] (metres; NaN for ids
    not listed), or (None, None) without the file."""
    if ref.scene_path is None:
        return None, None
    data = _read_json(ref.scene_path)
    try:
        camera = _pose_m(ref.scene_path, data["camera"]["pose_relative_to_world"], "camera pose")
        listed = {int(o["id"]): o["pose_relative_to_world"] for o in data["objects"]}
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(
            f"{ref.scene_path}: expected camera.pose_relative_to_world and objects[].id / "
            f"pose_relative_to_world ({type(exc).__name__}: {exc})"
        ) from exc
    poses = np.full((len(object_ids), 4, 4), np.nan)
    for k, oid in enumerate(object_ids):
        if int(oid) in listed:
            poses[k] = _pose_m(ref.scene_path, listed[int(oid)], f"pose of object {int(oid)}")
    return camera, poses


def load_view(ref: ViewRef, strict_order: bool = False) -> Sample:
    """Read one view (see the module docstring for units and policies); bad files raise DataError."""
    rgb = _read_rgb(ref.rgb_path)
    h, w = rgb.shape[:2]
    depth, ids, semantic, arrays = _read_labels(ref, h, w)
    amodal, src = _read_amodal(ref, arrays, h, w)
    n = amodal.shape[0]
    visible, amodal, vis_area = _visible_masks(ref, ids, amodal, src)
    categories = _categories(ids, semantic, n)
    order_occ = _read_order(ref, n, categories)
    amodal_area = amodal.reshape(n, h * w).sum(axis=1)
    keep = amodal_area > 0  # an empty amodal mask: the object is not in this view
    rate = np.zeros(n, np.float32)
    rate[keep] = 1.0 - vis_area[keep] / amodal_area[keep]
    object_ids = np.arange(1, n + 1, dtype=np.int64)[keep]
    camera_pose, object_poses = _read_scene(ref, object_ids)
    sample = Sample(
        ref=ref, rgb=rgb, depth=depth, visible_masks=visible[keep], amodal_masks=amodal[keep],
        object_ids=object_ids, category_ids=categories[keep], occluded_rate=rate[keep],
        order_occlusion=order_occ[keep],
        camera=_read_camera(ref.camera_path, h, w) if ref.camera_path is not None else None,
        camera_pose=camera_pose, object_poses=object_poses,
    )  # fmt: skip
    if strict_order:
        mismatched = sample.order_mismatches()
        if mismatched:
            raise DataError(
                f"{ref.order_path}: occlusion of objects {mismatched[:10]} differs from the masks' "
                f"occluded rate by more than {ORDER_TOLERANCE}"
            )
    return sample
