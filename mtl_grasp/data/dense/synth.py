"""Synthetic stand-ins for NYU-v2 and CityScapes, written in the layouts the real readers read.

* ``nyuv2``: rooms (:func:`~mtl_grasp.data.dense.scenes.nyu_room`) in the per-sample ``.npy`` layout
  with 13-class labels, depth in metres and unit normals (camera frame, towards the camera);
* ``cityscapes``: streets in the same ``.npy`` layout with 7-class labels and depth stored as MTAN's
  download stores it (the disparity PNG value / 65535, see docs/dense.md);
* ``cityscapes3``: streets in the official CityScapes folders (``leftImg8bit``, ``gtFine``
  ``labelIds``/``instanceIds``, 16-bit ``disparity``), read by
  :class:`~mtl_grasp.data.dense.cityscapes.CityscapesReader`.

Targets come from :mod:`~mtl_grasp.data.dense.raycast` and agree exactly; sensor effects then mark
pixels invalid the way the real data does (NYU: holes and a border band with depth 0, zero normals
and, on the band, label -1; CityScapes: sky and far surfaces without disparity, an ego-vehicle band).
Determinism: sample ``i`` of split ``s`` under ``seed`` draws from ``default_rng([seed, s, i])`` only,
so the same arguments write byte-identical files whatever the number of samples.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mtl_grasp.data.dense import scenes
from mtl_grasp.data.dense.cityscapes import class_lut
from mtl_grasp.data.dense.layout import (
    CS_DISPARITY_DIR,
    CS_DISPARITY_SCALE,
    CS_DISPARITY_SUFFIX,
    CS_GT_DIR,
    CS_IMAGE_DIR,
    CS_IMAGE_SUFFIX,
    CS_INSTANCE_SUFFIX,
    CS_LABEL_SUFFIX,
    DATASETS,
    DEPTH_DIR,
    IGNORE_LABEL,
    IMAGE_DIR,
    LABEL_DIR,
    MTAN_CS_DEPTH_DIVISOR,
    NORMAL_DIR,
    SPLITS,
    npy_path,
)
from mtl_grasp.data.dense.raycast import RayHits, cast

LIGHT = np.array([0.3, 0.9, -0.35]) / np.linalg.norm([0.3, 0.9, -0.35])  # world direction towards the light
SKY_TOP, SKY_HORIZON = np.array([0.35, 0.55, 0.85]), np.array([0.75, 0.82, 0.9])
MAX_STEREO_DEPTH_M = 150.0  # beyond this the synthetic stereo has no disparity (0 = invalid)
SYNTH_CITY = "synthtown"


@dataclass
class RenderedView:
    """One rendered view: ``image`` uint8 ``[H, W, 3]``; ``labels``/``instances`` int64 ``[H, W]`` in the
    dataset's label ids (-1 = nothing hit); ``depth`` float64 z-depth (inf = nothing hit); ``normal``
    float32 ``[H, W, 3]`` camera frame (0 = nothing hit); ``fx`` in pixels."""

    image: np.ndarray
    labels: np.ndarray
    instances: np.ndarray
    depth: np.ndarray
    normal: np.ndarray
    fx: float


def _texture(kind: str, point: np.ndarray, rng_waves: np.ndarray) -> np.ndarray:
    """Brightness factor ``[N]`` of a procedural texture at world points ``[N, 3]``."""
    x, y, z = point[:, 0], point[:, 1], point[:, 2]
    if kind == "checker":
        return 0.82 + 0.18 * ((np.floor(x / 0.5) + np.floor(y / 0.5) + np.floor(z / 0.5)) % 2)
    if kind == "stripes":
        return 0.88 + 0.12 * np.sin(2 * np.pi * (x + y + z) / 0.35)
    if kind == "noise":
        return 0.9 + 0.1 * np.sin(point @ rng_waves[:, :3].T + rng_waves[:, 3]).mean(axis=1) * 2
    return np.ones(len(point))


def _shade(hits: RayHits, layout: scenes.Layout, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Per-pixel colour (float [H, W, 3]), label id and instance id from the hit primitives."""
    height, width = hits.depth.shape
    colour = np.zeros((height * width, 3))
    labels = np.full(height * width, IGNORE_LABEL, np.int64)
    instances = np.zeros(height * width, np.int64)
    prim_index = hits.primitive.reshape(-1)
    points, world_n = hits.point.reshape(-1, 3), hits.world_normal.reshape(-1, 3)
    waves = np.concatenate([rng.uniform(-12, 12, (4, 3)), rng.uniform(0, 2 * np.pi, (4, 1))], axis=1)
    for index, prim in enumerate(layout.primitives):
        rows = np.nonzero(prim_index == index)[0]
        if rows.size == 0:
            continue
        looks, which = prim.looks(), prim.look_index(world_n[rows])
        for k, (label, rgb, texture) in enumerate(looks):
            sel = rows[which == k]
            brightness = _texture(texture, points[sel], waves) * (
                0.45 + 0.55 * np.clip(world_n[sel] @ LIGHT, 0, 1)
            )
            colour[sel] = np.asarray(rgb) * brightness[:, None]
            labels[sel], instances[sel] = label, prim.instance
    return colour.reshape(height, width, 3), labels.reshape(height, width), instances.reshape(height, width)


def render(layout: scenes.Layout, rng: np.random.Generator, haze_m: float = 0.0) -> RenderedView:
    """Ray-cast ``layout`` and shade it: Lambertian light, textures, sky gradient, haze, pixel noise."""
    hits = cast(layout.camera, layout.primitives)
    colour, labels, instances = _shade(hits, layout, rng)
    hit = np.isfinite(hits.depth)
    rows = np.linspace(0.0, 1.0, hits.depth.shape[0])[:, None, None]
    sky = SKY_TOP * (1 - rows) + SKY_HORIZON * rows
    colour = np.where(hit[..., None], colour, sky)
    if haze_m > 0:
        fog = 1.0 - np.exp(-np.where(hit, hits.depth, np.inf) / haze_m)
        colour = colour * (1 - fog[..., None]) + SKY_HORIZON * fog[..., None]
    colour = colour * rng.uniform(0.85, 1.15) + rng.normal(0.0, 0.015, colour.shape)
    image = np.clip(np.round(colour * 255.0), 0, 255).astype(np.uint8)
    return RenderedView(
        image, labels, instances, hits.depth, hits.normal.astype(np.float32), layout.camera.fx
    )


def _holes(rng: np.random.Generator, shape: tuple[int, int], count: int) -> np.ndarray:
    """Random elliptical holes (True = hole)."""
    height, width = shape
    v, u = np.mgrid[0:height, 0:width]
    mask = np.zeros(shape, bool)
    for _ in range(count):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        ry, rx = rng.uniform(0.02, 0.07) * height, rng.uniform(0.02, 0.07) * width
        mask |= ((v - cy) / ry) ** 2 + ((u - cx) / rx) ** 2 <= 1.0
    return mask


def nyu_targets(view: RenderedView, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """NYU-style arrays: image float32 [0,1], label (-1 on the border band), depth [H,W,1] metres and
    normals with 0 on holes and the band."""
    shape = view.depth.shape
    invalid = _holes(rng, shape, int(rng.integers(0, 3))) | ~np.isfinite(view.depth)
    label = view.labels.copy()
    if rng.random() < 0.5:  # an unlabelled, depth-less border band like NYU's crop margins
        band = max(1, int(round(rng.uniform(0.01, 0.03) * min(shape))))
        border = np.ones(shape, bool)
        border[band:-band, band:-band] = False
        invalid |= border
        label[border] = IGNORE_LABEL
    depth = np.where(invalid, 0.0, view.depth).astype(np.float32)
    normal = np.where(invalid[..., None], 0.0, view.normal).astype(np.float32)
    return {
        "image": view.image.astype(np.float32) / 255.0,
        "label": label.astype(np.float32),
        "depth": depth[..., None],
        "normal": normal,
    }


def street_maps(view: RenderedView, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """CityScapes-style ``labelIds`` (uint8), ``instanceIds`` (uint16) and 16-bit disparity PNG values."""
    label_ids = np.where(view.labels < 0, scenes.SKY, view.labels)
    instance_ids = np.where(view.instances > 0, view.instances, label_ids)
    valid = np.isfinite(view.depth) & (view.depth < MAX_STEREO_DEPTH_M)
    disparity = scenes.CITYSCAPES_BASELINE_M * view.fx / np.where(valid, view.depth, 1.0)
    png = np.where(valid, np.minimum(np.round(disparity * CS_DISPARITY_SCALE) + 1, 65535), 0)
    if rng.random() < 0.7:  # the ego vehicle's bonnet at the bottom: void label, no disparity
        rows = max(1, int(round(rng.uniform(0.05, 0.1) * label_ids.shape[0])))
        label_ids[-rows:], instance_ids[-rows:], png[-rows:] = scenes.EGO, scenes.EGO, 0
    return {
        "labelIds": label_ids.astype(np.uint8),
        "instanceIds": instance_ids.astype(np.uint16),
        "disparity": png.astype(np.uint16),
    }


def _save_npy(root: Path, split: str, index: int, arrays: dict[str, np.ndarray]) -> None:
    for folder, arr in arrays.items():
        path = npy_path(root, split, folder, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, arr, allow_pickle=False)


def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), arr):
        raise OSError(f"{path}: could not write the PNG")


def write_nyuv2_sample(
    root: Path, split: str, index: int, rng: np.random.Generator, size: tuple[int, int]
) -> None:
    view = render(scenes.nyu_room(rng, size[1], size[0]), rng)
    t = nyu_targets(view, rng)
    _save_npy(root, split, index, {IMAGE_DIR: t["image"], LABEL_DIR: t["label"], DEPTH_DIR: t["depth"],
                                   NORMAL_DIR: t["normal"]})  # fmt: skip


def write_cityscapes_npy_sample(
    root: Path, split: str, index: int, rng: np.random.Generator, size: tuple[int, int]
) -> None:
    view = render(scenes.cityscapes_street(rng, size[1], size[0]), rng, haze_m=300.0)
    maps = street_maps(view, rng)
    label = class_lut(7)[maps["labelIds"]].astype(np.float32)
    depth = (maps["disparity"].astype(np.float32) / MTAN_CS_DEPTH_DIVISOR)[..., None]
    _save_npy(root, split, index, {IMAGE_DIR: view.image.astype(np.float32) / 255.0, LABEL_DIR: label,
                                   DEPTH_DIR: depth})  # fmt: skip


def write_cityscapes_official_sample(
    root: Path, split: str, index: int, rng: np.random.Generator, size: tuple[int, int]
) -> None:
    view = render(scenes.cityscapes_street(rng, size[1], size[0]), rng, haze_m=300.0)
    maps = street_maps(view, rng)
    stem = f"{SYNTH_CITY}_{index // 1000:06d}_{index % 1000:06d}"
    _png(root / CS_IMAGE_DIR / split / SYNTH_CITY / f"{stem}{CS_IMAGE_SUFFIX}", view.image[:, :, ::-1])
    gt = root / CS_GT_DIR / split / SYNTH_CITY
    _png(gt / f"{stem}{CS_LABEL_SUFFIX}", maps["labelIds"])
    _png(gt / f"{stem}{CS_INSTANCE_SUFFIX}", maps["instanceIds"])
    _png(root / CS_DISPARITY_DIR / split / SYNTH_CITY / f"{stem}{CS_DISPARITY_SUFFIX}", maps["disparity"])


SampleWriter = Callable[[Path, str, int, np.random.Generator, tuple[int, int]], None]
WRITERS: dict[str, SampleWriter] = {
    "nyuv2": write_nyuv2_sample,
    "cityscapes": write_cityscapes_npy_sample,
    "cityscapes3": write_cityscapes_official_sample,
}


def sample_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of sample ``index`` of ``split``: depends on nothing else."""
    return np.random.default_rng([seed, SPLITS.index(split), index])


def generate(
    dataset: str,
    out: str | Path,
    train: int,
    val: int,
    seed: int = 0,
    size: tuple[int, int] | None = None,
    progress: bool = False,
) -> dict[str, int]:
    """Write ``train`` + ``val`` synthetic samples of ``dataset`` (``nyuv2``, ``cityscapes``,
    ``cityscapes3``) under ``out`` at ``size`` (H, W; default: the benchmark's size). Returns counts."""
    if dataset not in WRITERS:
        raise ValueError(f"dataset: unknown synthetic dataset {dataset!r}; known: {sorted(WRITERS)}")
    size = DATASETS[dataset].size if size is None else (int(size[0]), int(size[1]))
    if min(size) < 8:
        raise ValueError(f"size: expected H, W >= 8 pixels, got {size}")
    if train < 0 or val < 0 or train + val == 0:
        raise ValueError(f"train/val: expected non-negative counts, not both 0, got {train}/{val}")
    from tqdm import tqdm

    root, writer = Path(out), WRITERS[dataset]
    jobs = [(split, i) for split, n in zip(SPLITS, (train, val)) for i in range(n)]
    for split, index in tqdm(jobs, desc=f"synth {dataset}", unit="sample", disable=not progress):
        writer(root, split, index, sample_rng(seed, split, index), size)
    return {"train": train, "val": val}


#: written into a generated dataset's root last; its presence means the generation finished
SYNTH_MARKER = "synth.json"


def generate_once(
    dataset: str,
    out: str | Path,
    train: int,
    val: int,
    seed: int = 0,
    size: tuple[int, int] | None = None,
    progress: bool = False,
) -> bool:
    """`generate` into ``out`` unless it already holds exactly this synthetic dataset; True if written.

    The samples are written into a sibling temporary folder that is renamed to ``out`` at the end (with
    ``synth.json`` recording the arguments), so an interrupted generation leaves no half dataset. A
    ``synth.json`` with other arguments, or a non-empty ``out`` without one (e.g. real data), is an
    error naming the folder: synthetic files are never written over something else.
    """
    if dataset not in WRITERS:
        raise ValueError(f"dataset: unknown synthetic dataset {dataset!r}; known: {sorted(WRITERS)}")
    root = Path(out)
    size = DATASETS[dataset].size if size is None else (int(size[0]), int(size[1]))
    wanted = {"dataset": dataset, "train": train, "val": val, "seed": seed, "size": list(size)}
    marker = root / SYNTH_MARKER
    if marker.is_file():
        found = json.loads(marker.read_text())
        if found != wanted:
            raise ValueError(
                f"{root}: holds a synthetic dataset generated with {found}, not the requested {wanted}; "
                "choose another folder or delete this one"
            )
        return False
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ValueError(
            f"{root}: exists and is not a finished synthetic dataset (no {SYNTH_MARKER}); refusing to write "
            "synthetic samples into it (real data, or an interrupted generation: delete it to regenerate)"
        )
    tmp = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    generate(dataset, tmp, train, val, seed=seed, size=size, progress=progress)
    (tmp / SYNTH_MARKER).write_text(json.dumps(wanted))
    if root.exists():
        root.rmdir()  # empty (checked above)
    root.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, root)
    return True
