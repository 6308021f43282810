"""A structured-light depth sensor model: ideal z-buffer depth -> measured depth in centimetres.

What the simulated camera returns (all draws from the scene's generator, so the result is
deterministic), applied in this order to the renderer's z-depth (metres):

1. **Projector shadows** (depth discontinuities). The pattern projector sits ``BASELINE_M`` to the
   right of the camera (+x of the optical frame), rectified. A surface point at column ``u`` and depth
   ``z`` is lit at projector column ``u - fx * BASELINE_M / z``; it has no return when a point further
   right in the same row maps to the same or a smaller projector column (the projector's ray to it is
   blocked). This leaves a band left of every near edge whose width is the disparity step
   ``fx * b * (1 / z_near - 1 / z_far)`` pixels, as real structured-light cameras do.
2. **Mixed pixels**: where the depth jumps by more than ``EDGE_STEP_M`` to a 4-neighbour, the return is
   dropped with probability ``EDGE_DROP``.
3. **Grazing surfaces**: no return where the angle between the surface normal (from the depth
   gradient) and the viewing ray exceeds ``GRAZING_DEG``.
4. **Dark surfaces**: too little reflected pattern; a pixel with rendered luminance ``Y`` (0..1) has no
   return with probability ``clip((DARK_Y - Y) / DARK_RAMP, 0, 1)``.
5. **Dropouts**: isolated missing pixels with probability ``DROPOUT``.
6. **Noise** growing with distance (disparity noise): Gaussian with ``sigma = NOISE_AT_1M_M * z^2``
   (``z`` in metres; 0.56 mm at 0.75 m).
7. **Quantisation**: the result is rounded to ``QUANTUM_CM`` = 0.01 cm (0.1 mm; what a uint16 depth
   image in 0.1 mm units stores). Missing returns are NaN, as in MetaGraspNet's npz.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mtl_grasp.data.physics.camera import Intrinsics

__all__ = ["SensorModel", "measure_depth", "surface_cosine"]


@dataclass(frozen=True)
class SensorModel:
    """The constants of the model above (defaults: a bin-picking structured-light camera)."""

    baseline_m: float = 0.08
    edge_step_m: float = 0.01
    edge_drop: float = 0.5
    grazing_deg: float = 78.0
    dark_y: float = 0.10
    dark_ramp: float = 0.06
    dropout: float = 0.001
    noise_at_1m_m: float = 0.001
    quantum_cm: float = 0.01


def _projector_shadow(z: np.ndarray, intr: Intrinsics, baseline: float) -> np.ndarray:
    cols = np.arange(z.shape[1], dtype=np.float64) + 0.5
    with np.errstate(divide="ignore"):
        xp = cols[None, :] - intr.fx * baseline / z  # projector column; z = inf -> xp = u
    # minimum projector column of every pixel strictly to the right, in the same row
    right_min = np.minimum.accumulate(xp[:, ::-1], axis=1)[:, ::-1]
    blocked = np.full(z.shape, False)
    blocked[:, :-1] = xp[:, :-1] >= right_min[:, 1:]
    return blocked


def _edges(z: np.ndarray, step: float) -> np.ndarray:
    jump = np.zeros(z.shape, bool)
    with np.errstate(invalid="ignore"):
        dx = np.abs(np.diff(z, axis=1)) > step
        dy = np.abs(np.diff(z, axis=0)) > step
    jump[:, 1:] |= dx
    jump[:, :-1] |= dx
    jump[1:, :] |= dy
    jump[:-1, :] |= dy
    return jump


def surface_cosine(z: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """|cos| of the angle between the surface normal (from central differences of the back-projected
    depth) and the viewing ray, per pixel; 1 where it cannot be computed (borders, ``inf``)."""
    h, w = z.shape
    v, u = np.mgrid[0:h, 0:w]
    rays = np.stack([(u + 0.5 - intr.cx) / intr.fx, (v + 0.5 - intr.cy) / intr.fy, np.ones((h, w))], -1)
    pts = rays * np.where(np.isfinite(z), z, np.nan)[..., None]
    dx = np.full_like(pts, np.nan)
    dy = np.full_like(pts, np.nan)
    dx[:, 1:-1] = pts[:, 2:] - pts[:, :-2]
    dy[1:-1, :] = pts[2:, :] - pts[:-2, :]
    n = np.cross(dx, dy)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.abs((n * rays).sum(-1)) / (np.linalg.norm(n, axis=-1) * np.linalg.norm(rays, axis=-1))
    return np.where(np.isfinite(cos), cos, 1.0)


def measure_depth(
    z: np.ndarray,
    rgb: np.ndarray,
    intr: Intrinsics,
    rng: np.random.Generator,
    model: SensorModel | None = None,
) -> np.ndarray:
    """Measured depth, float32 centimetres with NaN holes, from ideal z-depth ``z`` (metres, ``inf`` =
    nothing) and the rendered ``rgb`` (uint8 [H, W, 3]); see the module docstring."""
    m = model or SensorModel()
    z = np.asarray(z, np.float64)
    missing = ~np.isfinite(z) | _projector_shadow(z, intr, m.baseline_m)
    missing |= _edges(z, m.edge_step_m) & (rng.random(z.shape) < m.edge_drop)
    missing |= surface_cosine(z, intr) < math.cos(math.radians(m.grazing_deg))
    luminance = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0
    missing |= rng.random(z.shape) < np.clip((m.dark_y - luminance) / m.dark_ramp, 0.0, 1.0)
    missing |= rng.random(z.shape) < m.dropout
    noisy = z + rng.normal(0.0, 1.0, z.shape) * m.noise_at_1m_m * np.where(np.isfinite(z), z, 0.0) ** 2
    cm = np.round(noisy * 100.0 / m.quantum_cm) * m.quantum_cm
    return np.where(missing, np.nan, cm).astype(np.float32)
