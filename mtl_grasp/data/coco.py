"""MetaGraspNet -> COCO-style JSON with UOAIS field names (the ground truth of mtl_grasp.evaluation).

Per image: ``id`` (the view's ``image_id``, its 1-based position in
:func:`mtl_grasp.data.reader.discover_views` of the root, so the torch dataset and this file agree),
``file_name`` (the RGB, relative to the root), ``depth_file_name`` (the ``<v>.npz`` holding metric
depth, relative to the root), ``height``, ``width``, plus ``scene`` and ``view``.

Per annotation (one per object with at least ``min_visible_area`` visible pixels):
``bbox`` amodal ``[x, y, w, h]`` (pixel-inclusive: ``w = x_max - x_min + 1``, as pycocotools'
``toBbox``), ``segmentation`` amodal RLE, ``visible_mask`` RLE, ``visible_bbox``, ``occluded_mask`` RLE
(amodal and not visible), ``occluded_rate``, ``area`` (amodal pixels), ``iscrowd`` 0, ``category_id``
(1 when class-agnostic, else the MetaGraspNet category id; names from ``ROOT/categories.json`` when
present, else ``category_<id>``), plus ``object_id``. RLE ``counts`` are str
so the file is plain JSON; decode with ``pycocotools.mask.decode``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_util

from mtl_grasp.contract import CLASS_AGNOSTIC_NAMES
from mtl_grasp.data import layout
from mtl_grasp.data.errors import DataError
from mtl_grasp.data.reader import Sample, ViewRef, discover_views, load_view, select_split

__all__ = [
    "COCO_FORMAT",
    "build_coco",
    "decode_mask",
    "encode_mask",
    "mask_bbox",
    "sample_annotations",
    "write_coco",
]

COCO_FORMAT = "mtl_grasp.coco/1"


def encode_mask(mask: np.ndarray) -> dict:
    """Uncompressed-to-compressed COCO RLE of a 2-D bool mask, ``counts`` as str (JSON-serialisable)."""
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def decode_mask(rle: dict) -> np.ndarray:
    """A 2-D bool mask from an RLE written by :func:`encode_mask`."""
    counts = rle["counts"]
    return mask_util.decode(
        {"size": rle["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    ).astype(bool)


def mask_bbox(mask: np.ndarray) -> list[float]:
    """``[x, y, w, h]`` of a 2-D mask, pixel-inclusive; ``[0, 0, 0, 0]`` for an empty mask."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if ys.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs[0]), float(ys[0]), float(xs[-1] - xs[0] + 1), float(ys[-1] - ys[0] + 1)]


def sample_annotations(
    sample: Sample,
    first_annotation_id: int,
    class_agnostic: bool = True,
    min_visible_area: int = 1,
) -> list[dict]:
    """COCO annotations of one view's objects that have >= ``min_visible_area`` visible pixels."""
    anns: list[dict] = []
    vis_area = sample.visible_area
    for k in range(len(sample.object_ids)):
        if vis_area[k] < min_visible_area:
            continue  # fully hidden (or too small): not detectable from this image; see docs/data.md
        amodal, visible = sample.amodal_masks[k], sample.visible_masks[k]
        category = 1 if class_agnostic else int(sample.category_ids[k])
        if category < 1:
            raise DataError(
                f"{sample.ref.npz_path}: object {int(sample.object_ids[k])} has no category id "
                f"(instances_semantic is 0 or absent); use the class-agnostic conversion"
            )
        anns.append(
            {
                "id": first_annotation_id + len(anns),
                "image_id": sample.ref.image_id,
                "category_id": category,
                "object_id": int(sample.object_ids[k]),
                "bbox": mask_bbox(amodal),
                "segmentation": encode_mask(amodal),
                "area": int(amodal.sum()),
                "visible_mask": encode_mask(visible),
                "visible_bbox": mask_bbox(visible),
                "occluded_mask": encode_mask(amodal & ~visible),
                "occluded_rate": round(float(sample.occluded_rate[k]), 6),
                "iscrowd": 0,
            }
        )
    return anns


def _image_entry(ref: ViewRef, sample: Sample) -> dict:
    return {
        "id": ref.image_id,
        "file_name": ref.rgb_path.relative_to(ref.root).as_posix(),
        "depth_file_name": ref.npz_path.relative_to(ref.root).as_posix(),
        "height": sample.height,
        "width": sample.width,
        "scene": ref.scene,
        "view": ref.view,
    }


def _category_names(root: Path) -> dict[int, str]:
    """``ROOT/categories.json`` (written by the physics generator) as {id: name}; {} without it."""
    path = root / layout.CATEGORIES_FILE
    if not path.is_file():
        return {}
    try:
        return {int(k): str(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError, AttributeError) as exc:
        raise DataError(f"{path}: expected a JSON object of category id -> name ({exc})") from exc


def build_coco(
    root: str | Path,
    split: str | None = None,
    splits_file: str | Path | None = None,
    class_agnostic: bool = True,
    min_visible_area: int = 1,
    require_amodal: bool = False,
    views: Iterable[ViewRef] | None = None,
) -> dict:
    """The COCO dict of all views under ``root`` (or of ``split``; see reader.select_split).

    Views with no object (an empty bin) are kept as images without annotations: for evaluation every
    detection on them is a false positive. Bad files raise :class:`DataError` naming the file.
    """
    if isinstance(min_visible_area, bool) or not isinstance(min_visible_area, int) or min_visible_area < 0:
        raise ValueError(f"min_visible_area: expected an integer >= 0, found {min_visible_area!r}")
    root = Path(root)
    if views is None:
        all_views = discover_views(root, require_amodal=require_amodal)
        if not all_views:
            raise DataError(f"{root}: no views found (expected scene folders with <v>.npz and <v>_rgb.png)")
        views = select_split(all_views, split, splits_file)
    images: list[dict] = []
    annotations: list[dict] = []
    category_ids: set[int] = set()
    for ref in views:
        sample = load_view(ref)
        images.append(_image_entry(ref, sample))
        anns = sample_annotations(sample, len(annotations) + 1, class_agnostic, min_visible_area)
        annotations.extend(anns)
        category_ids.update(a["category_id"] for a in anns)
    if class_agnostic:
        categories = [
            {"id": i + 1, "name": n, "supercategory": "object"} for i, n in enumerate(CLASS_AGNOSTIC_NAMES)
        ]
    else:
        names = _category_names(root)
        categories = [
            {"id": c, "name": names.get(c, f"category_{c:03d}"), "supercategory": "object"}
            for c in sorted(category_ids)
        ]
    return {
        "info": {
            "description": "MetaGraspNet-layout dataset converted by mtl_grasp.data.coco (UOAIS field names)",
            "format": COCO_FORMAT,
            "split": split,
            "class_agnostic": class_agnostic,
            "min_visible_area": min_visible_area,
            "depth_units": "npz 'depth' in centimetres; NaN = no measurement",
        },
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def write_coco(coco: dict, path: str | Path) -> Path:
    """Write ``coco`` as compact JSON atomically (a crash never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(coco, separators=(",", ":")))
    os.replace(tmp, path)
    return path
