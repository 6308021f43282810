"""3-D pick candidates from a mask, a registered depth image and the camera intrinsics (pure numpy).

Frame: the camera's optical frame (REP 103 / REP 105 convention for optical frames): x right, y down,
z forward along the optical axis, metres. Pixel (u, v) = (column, row) index; its ray is
((u - cx) / fx, (v - cy) / fy, 1) for an undistorted image, as in image_geometry and depth_image_proc.

Per instance, `surface_point` gives:
- the **pick point**: a point *on* the visible surface near the middle of the visible region. Why not
  the per-axis median of all back-projected points: on a curved object that point lies inside the
  object (for a sphere seen from the front, ~0.3 radius behind the surface), useless for a suction cup.
  Instead: the valid-depth pixels of the mask are filtered for outliers (depth further than
  `OUTLIER_MAD` scaled MADs, at least `OUTLIER_MIN_M`, from the median: flying pixels at mask edges,
  background leaking in); the centre pixel is the inlier pixel nearest to the median (u, v) of the
  inliers (so it lies inside the mask even for non-convex masks); the pick point is that pixel's ray
  at the median depth of the inliers within `POSITION_RADIUS_PX` of it (on the surface up to the
  depth noise: the median of a locally linear depth over a symmetric neighbourhood is the centre's).
- the **surface normal**: of the plane fitted (SVD) to the inlier points within `radius_px` of the
  centre pixel, unit length, oriented towards the camera (n . p < 0); invalid with fewer than
  `MIN_PLANE_POINTS` neighbours or collinear ones.
- the **valid-depth fraction**: valid-depth pixels / mask pixels (before outlier rejection).

`pick_order`: instances with a valid pick point, unoccluded before occluded, then nearest to the
camera (Euclidean distance of the pick point), ties by index.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mtl_grasp.camera import Intrinsics

OUTLIER_MAD = 3.0  # depth outliers: further than this many scaled MADs from the median ...
OUTLIER_MIN_M = 0.01  # ... and at least this far (metres): a flat surface has MAD ~ 0
MIN_PLANE_POINTS = 6  # fewer neighbours: no normal
POSITION_RADIUS_PX = 2  # the pick point's depth: median over the inliers this close to the centre pixel
DEFAULT_RADIUS_PX = 5


@dataclass(frozen=True)
class SurfacePoint:
    """The 3-D pick point of one instance (optical frame, metres); None fields are invalid."""

    position: np.ndarray | None  # [3]
    normal: np.ndarray | None  # [3], unit, towards the camera
    valid_fraction: float  # valid-depth pixels / mask pixels, in [0, 1]
    pixel: tuple[int, int] | None  # (u, v) of the centre pixel

    @property
    def valid(self) -> bool:
        return self.position is not None


INVALID = SurfacePoint(None, None, 0.0, None)


def _valid(z: np.ndarray) -> np.ndarray:
    """Which depth values are valid: finite and > 0."""
    return np.isfinite(z) & (z > 0)


def valid_depth_fraction(
    depth_m: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int] | None = None
) -> float:
    """Valid-depth pixels / mask pixels (0 for an empty mask), as `surface_point` reports it.

    Args:
        depth_m: H x W metres, 0 (or non-finite) = invalid.
        mask: H x W bool.
        box: (x1, y1, x2, y2) tight box of the mask, if known (restricts the work to it).
    """
    if box is not None:
        depth_m, mask = depth_m[box[1] : box[3], box[0] : box[2]], mask[box[1] : box[3], box[0] : box[2]]
    z = depth_m[mask]
    return float(np.count_nonzero(_valid(z))) / z.size if z.size else 0.0


@dataclass(frozen=True)
class FrameGeometry:
    """3-D results of one frame: `points[i]` of instance i, `order` = indices in pick order;
    `intrinsics` None when the frame had no usable camera_info (positions then all invalid)."""

    intrinsics: Intrinsics | None
    points: list[SurfacePoint] = field(default_factory=list)
    order: list[int] = field(default_factory=list)


def _inliers(z: np.ndarray) -> np.ndarray:
    """Boolean mask of depths within max(OUTLIER_MAD scaled MADs, OUTLIER_MIN_M) of the median."""
    med = float(np.median(z))
    mad = 1.4826 * float(np.median(np.abs(z - med)))
    return np.abs(z - med) <= max(OUTLIER_MAD * mad, OUTLIER_MIN_M)


def fit_plane(points: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Least-squares plane through points [N, 3]: (centroid, unit normal), or None when degenerate
    (fewer than MIN_PLANE_POINTS points, or points on a line)."""
    if len(points) < MIN_PLANE_POINTS:
        return None
    centroid = points.mean(axis=0)
    _, s, vt = np.linalg.svd(points - centroid, full_matrices=False)
    if s[1] <= 1e-6 * max(s[0], 1e-12):
        return None
    return centroid, vt[2] / np.linalg.norm(vt[2])


def _check_inputs(depth_m: np.ndarray, mask: np.ndarray, intrinsics: Intrinsics, radius_px: int) -> None:
    if depth_m.shape != mask.shape:
        raise ValueError(f"depth_m: shape {depth_m.shape} differs from mask {mask.shape}")
    if (intrinsics.height, intrinsics.width) != depth_m.shape:
        raise ValueError(
            f"intrinsics: {intrinsics.width}x{intrinsics.height} but the image is "
            f"{depth_m.shape[1]}x{depth_m.shape[0]}"
        )
    if radius_px < 1:
        raise ValueError(f"radius_px: expected >= 1, got {radius_px}")


def surface_point(
    depth_m: np.ndarray,
    mask: np.ndarray,
    intrinsics: Intrinsics,
    radius_px: int = DEFAULT_RADIUS_PX,
    box: tuple[int, int, int, int] | None = None,
) -> SurfacePoint:
    """The pick point, normal and valid-depth fraction of one instance (see the module docstring).

    Args:
        depth_m: H x W float32 metres, 0 (or non-finite) = invalid, registered to the mask's image.
        mask: H x W bool, the instance's visible mask.
        intrinsics: of that image (its width/height must match).
        radius_px: neighbourhood radius of the plane fit, pixels (>= 1).
        box: (x1, y1, x2, y2) tight box of the mask, if known (restricts the work to it).
    """
    _check_inputs(depth_m, mask, intrinsics, radius_px)
    x0, y0 = (box[0], box[1]) if box is not None else (0, 0)
    if box is not None:
        depth_m, mask = depth_m[box[1] : box[3], box[0] : box[2]], mask[box[1] : box[3], box[0] : box[2]]
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return INVALID
    z = depth_m[ys, xs].astype(np.float64)
    valid = _valid(z)
    fraction = float(valid.sum()) / ys.size
    if not valid.any():
        return SurfacePoint(None, None, fraction, None)
    ys, xs, z = ys[valid], xs[valid], z[valid]
    keep = _inliers(z)
    ys, xs, z = ys[keep], xs[keep], z[keep]
    um, vm = np.median(xs), np.median(ys)
    c = int(np.argmin((xs - um) ** 2 + (ys - vm) ** 2))
    d2 = (xs - xs[c]) ** 2 + (ys - ys[c]) ** 2
    centre = d2 <= POSITION_RADIUS_PX**2
    ray = intrinsics.rays(np.array([xs[c] + x0]), np.array([ys[c] + y0]))[0]
    position = ray * float(np.median(z[centre]))
    near = d2 <= radius_px**2
    points = intrinsics.rays(xs[near] + x0, ys[near] + y0) * z[near][:, None]
    plane = fit_plane(points)
    normal = None
    if plane is not None:
        normal = plane[1] if float(plane[1] @ position) < 0 else -plane[1]
    return SurfacePoint(position, normal, fraction, (int(xs[c] + x0), int(ys[c] + y0)))


def pick_order(points: Sequence[SurfacePoint], occluded: Sequence[bool]) -> list[int]:
    """Indices of the instances with a valid pick point: unoccluded first, then nearest (|p|), then index."""
    if len(points) != len(occluded):
        raise ValueError(f"occluded: {len(occluded)} flags for {len(points)} points")
    ranked = [
        (bool(occluded[i]), float(np.linalg.norm(p.position)), i)
        for i, p in enumerate(points)
        if p.position is not None
    ]
    return [i for _, _, i in sorted(ranked)]


def approach_quaternion(normal: np.ndarray | None) -> tuple[float, float, float, float]:
    """(x, y, z, w) rotating the optical frame's +z onto the approach direction -normal.

    The gripper approaches along the pose's +z, into the surface. Without a normal: identity (approach
    along the optical axis).
    """
    if normal is None:
        return 0.0, 0.0, 0.0, 1.0
    a = -np.asarray(normal, np.float64) / np.linalg.norm(normal)
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(z, a)
    s, c = float(np.linalg.norm(axis)), float(z @ a)
    if s < 1e-12:  # parallel or anti-parallel
        return (0.0, 0.0, 0.0, 1.0) if c > 0 else (1.0, 0.0, 0.0, 0.0)
    half = math.atan2(s, c) / 2
    axis = axis / s * math.sin(half)
    return float(axis[0]), float(axis[1]), float(axis[2]), math.cos(half)
