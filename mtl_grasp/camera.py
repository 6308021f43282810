"""Pinhole camera intrinsics: the one type for the reader, the simulated scenes and the 3-D geometry.

Pixels: (u, v) = (column, row); pixel (row i, column j) covers ``[j, j + 1) x [i, i + 1)``, its
centre is ``(j + 0.5, i + 0.5)``. A point ``(X, Y, Z)`` of the camera's optical frame (x right, y
down, z forward, REP 103 optical-frame convention; OpenCV's) projects to ``u = fx X / Z + cx``,
``v = fy Y / Z + cy`` on an undistorted image. Numpy only (opencv for distorted rays).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Intrinsics"]


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels of a ``width`` x ``height`` image; optional plumb_bob distortion.

    `distortion` = (k1, k2, p1, p2[, k3[, k4, k5, k6]]) as in sensor_msgs/CameraInfo.d for the
    plumb_bob / rational_polynomial models; empty or all zero = rectified image.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    distortion: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        values = (self.fx, self.fy, self.cx, self.cy)
        if not all(math.isfinite(v) for v in values) or self.fx <= 0 or self.fy <= 0:
            raise ValueError(
                f"intrinsics: fx, fy must be positive and finite, got fx={self.fx}, fy={self.fy}"
            )
        if self.width < 1 or self.height < 1:
            raise ValueError(f"intrinsics: width, height must be >= 1, got {self.width}x{self.height}")
        if len(self.distortion) not in (0, 4, 5, 8) or not all(math.isfinite(v) for v in self.distortion):
            raise ValueError(
                f"intrinsics: distortion must have 0, 4, 5 or 8 finite coefficients, got {self.distortion}"
            )

    @classmethod
    def from_k(
        cls, k: Sequence[float], width: int, height: int, distortion: Sequence[float] = ()
    ) -> Intrinsics:
        """From a row-major 3x3 matrix (sensor_msgs/CameraInfo.k)."""
        return cls(float(k[0]), float(k[4]), float(k[2]), float(k[5]), int(width), int(height),
                   tuple(float(v) for v in distortion))

    @classmethod
    def from_fov(cls, width: int, height: int, fov_y_deg: float) -> Intrinsics:
        """Square pixels, principal point at the image centre, vertical field of view ``fov_y_deg``."""
        f = 0.5 * height / math.tan(math.radians(fov_y_deg) / 2)
        return cls(f, f, width / 2, height / 2, int(width), int(height))

    def crop(self, x0: int, y0: int, x1: int, y1: int) -> Intrinsics:
        """The intrinsics of the pixel window ``[x0, x1) x [y0, y1)`` of this image.

        A render with them gives exactly that block of the full render (same pixel grid), which is how
        the simulated scenes render amodal masks on small windows around each object.
        """
        if not (0 <= x0 < x1 <= self.width and 0 <= y0 < y1 <= self.height):
            raise ValueError(f"window: [{x0}, {x1}) x [{y0}, {y1}) is not inside {self.width}x{self.height}")
        return Intrinsics(self.fx, self.fy, self.cx - x0, self.cy - y0, int(x1 - x0), int(y1 - y0),
                          self.distortion)  # fmt: skip

    def matrix(self) -> np.ndarray:
        """The 3x3 camera matrix K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def as_dict(self) -> dict[str, float]:
        """fx, fy, cx, cy, width, height: the MetaGraspNet `<v>_camera_params.json` fields."""
        return {
            "fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy,
            "width": self.width, "height": self.height,
        }  # fmt: skip

    @property
    def distorted(self) -> bool:
        return any(v != 0.0 for v in self.distortion)

    def rays(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Rays (x/z, y/z, 1) of pixels `u`, `v` (any shape, same shape) as [..., 3] float64."""
        u = np.asarray(u, np.float64)
        v = np.asarray(v, np.float64)
        if self.distorted:
            import cv2

            k = self.matrix()
            pts = np.stack([u.ravel(), v.ravel()], axis=1)[:, None, :]
            und = cv2.undistortPoints(pts, k, np.asarray(self.distortion, np.float64))[:, 0, :]
            x, y = und[:, 0].reshape(u.shape), und[:, 1].reshape(u.shape)
        else:
            x, y = (u - self.cx) / self.fx, (v - self.cy) / self.fy
        return np.stack([x, y, np.ones_like(x)], axis=-1)

    def project(self, points: np.ndarray) -> np.ndarray:
        """Pixel coordinates [N, 2] (u, v) of points [N, 3] in the optical frame (z > 0), no distortion."""
        p = np.asarray(points, np.float64).reshape(-1, 3)
        u = p[:, 0] / p[:, 2] * self.fx + self.cx
        return np.stack([u, p[:, 1] / p[:, 2] * self.fy + self.cy], axis=1)
