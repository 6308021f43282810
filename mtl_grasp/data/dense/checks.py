"""Validation of dense-benchmark arrays: every bad file fails with a `DataError` naming file and problem.

Each ``as_*`` function takes the raw array of one file and returns it in the in-memory units of
:mod:`mtl_grasp.data.dense.layout`, or raises. An all-invalid depth or normal map raises
:class:`EmptyTargetError` (a `DataError`), which the readers turn into a documented skip when asked.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mtl_grasp.data.dense.layout import IGNORE_LABEL
from mtl_grasp.data.errors import DataError

NORMAL_NORM_TOLERANCE = 0.1  # a valid normal's length must be within 1 +- this (resized GT is not exact)
IMAGE_RANGE_TOLERANCE = 1e-3  # float images may overshoot [0, 1] by rounding, not more


class EmptyTargetError(DataError):
    """A sample's depth or normal map has no valid pixel (nothing to train or score on)."""


def _squeeze_channel(arr: np.ndarray, file: str, what: str) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[-1] == 1:
        return arr[..., 0]
    if arr.ndim != 2:
        raise DataError(f"{file}: {what} must be [H, W] or [H, W, 1], found shape {arr.shape}")
    return arr


def _require_finite(arr: np.ndarray, file: str, what: str, hint: str = "") -> None:
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise DataError(f"{file}: {what} has {bad} NaN/inf values{hint}")


def as_image(arr: np.ndarray, file: str) -> np.ndarray:
    """``[H, W, 3]`` uint8 (0..255) or float in [0, 1] -> float32 in [0, 1]."""
    if arr.ndim != 3 or arr.shape[-1] != 3:
        hint = " (channels first? the layout stores H x W x 3)" if arr.ndim == 3 and arr.shape[0] == 3 else ""
        raise DataError(f"{file}: image must be [H, W, 3] RGB, found shape {arr.shape}{hint}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if not np.issubdtype(arr.dtype, np.floating):
        raise DataError(f"{file}: image must be uint8 or float in [0, 1], found dtype {arr.dtype}")
    _require_finite(arr, file, "image")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -IMAGE_RANGE_TOLERANCE or hi > 1.0 + IMAGE_RANGE_TOLERANCE:
        raise DataError(
            f"{file}: float image must lie in [0, 1], found values in [{lo:.4g}, {hi:.4g}]"
            + (" (0..255 stored as float? store uint8 or divide by 255)" if hi > 2.0 else "")
        )
    return np.clip(arr, 0.0, 1.0).astype(np.float32)


def as_label(arr: np.ndarray, num_classes: int, file: str) -> np.ndarray:
    """``[H, W]`` (or ``[H, W, 1]``) integral class indices in ``0..K-1`` or ``-1`` -> int64."""
    arr = _squeeze_channel(arr, file, "label")
    if np.issubdtype(arr.dtype, np.floating):
        _require_finite(arr, file, "label")
        if not np.array_equal(arr, np.round(arr)):
            raise DataError(f"{file}: label must hold whole class indices, found fractional values")
    elif not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{file}: label must be an integer or float array, found dtype {arr.dtype}")
    label = arr.astype(np.int64)
    bad = (label != IGNORE_LABEL) & ((label < 0) | (label >= num_classes))
    if bad.any():
        values, counts = np.unique(label[bad], return_counts=True)
        listed = ", ".join(f"{v} ({c} px)" for v, c in list(zip(values.tolist(), counts.tolist()))[:5])
        raise DataError(
            f"{file}: label values outside 0..{num_classes - 1} and the ignore value {IGNORE_LABEL}: {listed}"
        )
    return label


def as_depth(arr: np.ndarray, file: str) -> np.ndarray:
    """``[H, W]`` or ``[H, W, 1]`` non-negative depth (0 = invalid) -> float32 ``[H, W]``."""
    arr = _squeeze_channel(arr, file, "depth")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise DataError(f"{file}: depth must be numeric, found dtype {arr.dtype}")
    _require_finite(arr, file, "depth", " (the layout marks invalid depth with 0)")
    if (arr < 0).any():
        raise DataError(f"{file}: depth must be >= 0 (0 = invalid), found minimum {float(arr.min()):.4g}")
    return arr.astype(np.float32)


def as_normal(arr: np.ndarray, file: str) -> np.ndarray:
    """``[H, W, 3]`` unit normals, zero vector = invalid -> float32 (validated, not renormalised)."""
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise DataError(f"{file}: normal must be [H, W, 3], found shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise DataError(f"{file}: normal must be float unit vectors, found dtype {arr.dtype}")
    _require_finite(arr, file, "normal", " (the layout marks invalid normals with the zero vector)")
    norm = np.linalg.norm(arr.astype(np.float64), axis=-1)
    valid = norm > 0
    if valid.any():
        lo, hi = float(norm[valid].min()), float(norm[valid].max())
        if lo < 1.0 - NORMAL_NORM_TOLERANCE or hi > 1.0 + NORMAL_NORM_TOLERANCE:
            raise DataError(
                f"{file}: normals must be unit vectors (or zero = invalid), found lengths in "
                f"[{lo:.4g}, {hi:.4g}] (colour-encoded normals? decode with n = 2 c - 1)"
            )
    return arr.astype(np.float32)


def check_same_size(shapes: Mapping[str, tuple[int, ...]], source: str) -> tuple[int, int]:
    """All arrays of one sample must share ``(H, W)``; returns it."""
    sizes = {name: tuple(int(s) for s in shape[:2]) for name, shape in shapes.items()}
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{name} {size[0]}x{size[1]}" for name, size in sizes.items())
        raise DataError(f"{source}: image and targets differ in size (H x W): {listed}")
    height, width = next(iter(sizes.values()))
    return height, width


def check_not_empty(
    depth: np.ndarray, depth_source: str, normal: np.ndarray | None = None, normal_source: str = ""
) -> None:
    """Raise `EmptyTargetError` naming the file when the depth (or normal) map has no valid pixel."""
    if not (depth > 0).any():
        raise EmptyTargetError(f"{depth_source}: depth has no valid pixel (every value is 0)")
    if normal is not None and not np.any(normal != 0):
        raise EmptyTargetError(f"{normal_source}: normal has no valid pixel (every vector is zero)")
