"""Image and depth-sensor corruptions at 5 severities, deterministic per seed (docs/robustness.md).

RGB: the 15 common corruptions of Hendrycks & Dietterich (ICLR 2019) as implemented by the
`imagecorruptions` package (Michaelis et al. 2019), imported lazily (extra `robustness`).
Depth (metres, 0 = invalid; every corruption keeps invalid pixels invalid), severity s = 1..5:

- `depth_noise`: d' = d + N(0, (a_s d^2)^2) on valid pixels, a_s = 0.0025, 0.005, 0.01, 0.02,
  0.04 m^-1 (axial noise of structured-light / ToF sensors grows with z^2: 1.2 .. 20 mm at 0.7 m).
- `depth_missing_blobs`: pixels where a smooth random field (uniform noise, Gaussian-blurred with
  sigma = 4 % of the shorter side) exceeds its (1 - f_s) quantile become 0, f_s = 0.02, 0.05, 0.1,
  0.2, 0.35 of the image (specular / dark / out-of-range patches).
- `depth_edge_dropout`: pixels within w_s = 1, 2, 3, 5, 8 px (camera pixels) of a depth step > 2 cm
  between two valid 4-neighbours become 0 with probability p_s = 0.3, 0.5, 0.7, 0.85, 1.0 (shadowing
  and flying-pixel filtering at object borders).
- `depth_quantization`: d' = q_s round(d / q_s), q_s = 2, 5, 10, 20, 40 mm (a coarser depth unit).
- `depth_scale`: d' = d (1 + sign e_s), e_s = 0.01, 0.02, 0.04, 0.07, 0.10, sign = +-1 drawn per frame
  (a depth calibration scale error).

Determinism: every (seed, corruption, severity, image id) gets its own random stream; the global numpy
state that `imagecorruptions` draws from is seeded from it and restored afterwards.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import cv2
import numpy as np

from mtl_grasp.suggest import did_you_mean

RGB_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)  # fmt: skip
DEPTH_CORRUPTIONS = (
    "depth_noise", "depth_missing_blobs", "depth_edge_dropout", "depth_quantization", "depth_scale",
)  # fmt: skip
ALL_CORRUPTIONS = RGB_CORRUPTIONS + DEPTH_CORRUPTIONS
GROUPS = {"all": ALL_CORRUPTIONS, "rgb": RGB_CORRUPTIONS, "depth": DEPTH_CORRUPTIONS}
SEVERITIES = (1, 2, 3, 4, 5)
# imagecorruptions functions that take their own seed (they draw from other generators than numpy's)
_SEEDED = ("impulse_noise", "glass_blur")

NOISE_A = (0.0025, 0.005, 0.01, 0.02, 0.04)  # m^-1
BLOB_FRACTION = (0.02, 0.05, 0.1, 0.2, 0.35)
EDGE_WIDTH = (1, 2, 3, 5, 8)  # px
EDGE_PROB = (0.3, 0.5, 0.7, 0.85, 1.0)
EDGE_STEP_M = 0.02
QUANT_STEP_M = (0.002, 0.005, 0.01, 0.02, 0.04)
SCALE_ERROR = (0.01, 0.02, 0.04, 0.07, 0.10)


def modality(name: str) -> str:
    """ "rgb" or "depth" for a corruption name."""
    return "depth" if name in DEPTH_CORRUPTIONS else "rgb"


def parse_corruptions(spec: str | Sequence[str]) -> list[str]:
    """Corruption names from "all" | "rgb" | "depth" | names (comma-separated string or a list).

    An unknown name raises ValueError naming it and the closest known one.
    """
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s) for s in spec]
    names: list[str] = []
    for item in items:
        if item in GROUPS:
            names.extend(n for n in GROUPS[item] if n not in names)
            continue
        if item not in ALL_CORRUPTIONS:
            hint = did_you_mean(item, [*ALL_CORRUPTIONS, *GROUPS])
            known = ", ".join(("all", "rgb", "depth") + ALL_CORRUPTIONS)
            raise ValueError(f"corruptions: unknown corruption {item!r}{hint} (known: {known})")
        if item not in names:
            names.append(item)
    if not names:
        raise ValueError("corruptions: expected at least one corruption name")
    return names


def parse_severities(spec: str | Sequence[int]) -> list[int]:
    """Severities from "1,2,3" or a list; each must be an int in 1..5 (ValueError naming the bad one)."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[int] = []
    for item in items:
        try:
            value = int(str(item).strip())
        except ValueError:
            raise ValueError(f"severities: expected integers in 1..5, got {item!r}") from None
        if value not in SEVERITIES:
            raise ValueError(f"severities: severity {value} is outside 1..5")
        if value not in out:
            out.append(value)
    if not out:
        raise ValueError("severities: expected at least one severity in 1..5")
    return out


def _stream(seed: int, name: str, severity: int, image_id: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode()), severity, image_id])


def corrupt_rgb(rgb: np.ndarray, name: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    """`imagecorruptions.corrupt` with the global numpy state seeded from `rng` (and restored)."""
    try:
        from imagecorruptions import corrupt  # type: ignore[import-untyped]  # no stubs
    except ImportError as exc:
        raise ImportError(
            "RGB corruptions need the `imagecorruptions` module: install the maintained fork without its "
            "GUI-opencv dependency, `pip install --no-deps imagecorruptions-imaug==1.1.5`, plus the "
            f"`robustness` extra (docs/robustness.md); import failed with: {exc}"
        ) from exc

    seed = int(rng.integers(2**31 - 1))
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        kwargs = {"seed": seed} if name in _SEEDED else {}
        return corrupt(np.ascontiguousarray(rgb), severity=severity, corruption_name=name, **kwargs)
    finally:
        np.random.set_state(state)


def _missing_blobs(depth: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    h, w = depth.shape
    sigma = 0.04 * min(h, w)
    field = cv2.GaussianBlur(rng.random((h, w), dtype=np.float32), (0, 0), sigmaX=sigma, sigmaY=sigma)
    holes = field > np.quantile(field, 1.0 - BLOB_FRACTION[severity - 1])
    return np.where(holes, 0.0, depth).astype(np.float32)


def _edge_dropout(depth: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    valid = depth > 0
    edge = np.zeros(depth.shape, bool)
    for axis in (0, 1):
        step = np.abs(np.diff(depth, axis=axis)) > EDGE_STEP_M
        both = np.diff(valid.astype(np.int8), axis=axis) == 0  # a step to a hole is not an edge
        jump = step & both & np.take(valid, range(depth.shape[axis] - 1), axis=axis)
        lo = [slice(None)] * 2
        hi = [slice(None)] * 2
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        edge[tuple(lo)] |= jump
        edge[tuple(hi)] |= jump
    width = EDGE_WIDTH[severity - 1]
    band = cv2.dilate(edge.astype(np.uint8), np.ones((2 * width + 1, 2 * width + 1), np.uint8)) > 0
    drop = band & (rng.random(depth.shape) < EDGE_PROB[severity - 1])
    return np.where(drop, 0.0, depth).astype(np.float32)


def corrupt_depth(depth: np.ndarray, name: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    """One depth corruption of the module docstring's table (float32 metres in and out, 0 = invalid)."""
    depth = np.asarray(depth, dtype=np.float32)
    valid = depth > 0
    i = severity - 1
    if name == "depth_noise":
        noisy = depth + rng.normal(size=depth.shape).astype(np.float32) * np.float32(NOISE_A[i]) * depth**2
        return np.where(valid, np.maximum(noisy, 1e-3), 0.0).astype(np.float32)
    if name == "depth_missing_blobs":
        return _missing_blobs(depth, severity, rng)
    if name == "depth_edge_dropout":
        return _edge_dropout(depth, severity, rng)
    if name == "depth_quantization":
        q = np.float32(QUANT_STEP_M[i])
        return np.where(valid, np.maximum(np.round(depth / q) * q, q), 0.0).astype(np.float32)
    if name == "depth_scale":
        sign = 1.0 if rng.random() < 0.5 else -1.0
        return (depth * np.float32(1.0 + sign * SCALE_ERROR[i])).astype(np.float32)
    raise ValueError(f"corruption: {name!r} is not a depth corruption ({', '.join(DEPTH_CORRUPTIONS)})")


def corrupt_frame(
    rgb: np.ndarray, depth: np.ndarray, name: str, severity: int, seed: int = 0, image_id: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(rgb, depth) with corruption `name` at `severity` applied to its modality, the other unchanged.

    rgb: uint8 H x W x 3; depth: float32 metres H x W (0 = invalid). Deterministic in
    (seed, name, severity, image_id).
    """
    if name not in ALL_CORRUPTIONS:
        parse_corruptions([name])  # raises with the closest name
    if severity not in SEVERITIES:
        raise ValueError(f"severity: expected an int in 1..5, got {severity!r}")
    rng = _stream(seed, name, severity, image_id)
    if modality(name) == "rgb":
        return corrupt_rgb(rgb, name, severity, rng), depth
    return rgb, corrupt_depth(depth, name, severity, rng)
