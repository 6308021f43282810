"""Pinhole cameras for the simulated scenes: intrinsics, poses, viewpoints, OpenGL matrices.

Conventions (the same in memory and in the files, docs/data.md "Camera and poses"):

* **Camera frame** = OpenCV optical frame: x to the right of the image, y down, z forward along the
  optical axis. A point ``(X, Y, Z)`` in it projects to the continuous pixel coordinate
  ``u = fx X / Z + cx``, ``v = fy Y / Z + cy``; pixel ``(row i, column j)`` covers
  ``[j, j + 1) x [i, i + 1)`` so its centre is ``(j + 0.5, i + 0.5)``.
* **Pose** = ``world_from_camera``, the 4x4 rigid transform that maps camera-frame coordinates to world
  coordinates (``p_world = T @ p_camera``); its translation is the camera centre in the world, its
  columns 0..2 the camera's x, y, z axes in the world. ``camera_from_world`` is its inverse. In memory
  everything is in **metres**; the files store centimetres (MetaGraspNet's 3-D unit).
* **World frame** of a bin scene: origin at the centre of the bin floor's top surface, z up, x along
  the bin's length.

`Intrinsics` is :class:`mtl_grasp.camera.Intrinsics` (re-exported). Nothing here imports pybullet: the
matrices are plain numpy, so any renderer (or a test) can use them.
:mod:`mtl_grasp.data.physics.render` turns them into pybullet camera images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mtl_grasp.camera import Intrinsics

__all__ = [
    "Intrinsics",
    "hemisphere_poses",
    "invert_pose",
    "look_at",
    "opengl_projection",
    "opengl_view",
    "project_points",
]

# OpenCV optical frame -> OpenGL camera frame (x right, y up, z backwards): flip y and z.
_CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])


def invert_pose(pose: np.ndarray) -> np.ndarray:
    """Inverse of a 4x4 rigid transform (rotation transposed, exact up to rounding)."""
    out = np.eye(4)
    rot = pose[:3, :3]
    out[:3, :3] = rot.T
    out[:3, 3] = -rot.T @ pose[:3, 3]
    return out


def look_at(eye, target, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """``world_from_camera`` of a camera at ``eye`` looking at ``target``.

    The image's "up" (-y of the optical frame) points along ``up`` projected onto the image plane;
    ``up`` must not be parallel to the viewing direction.
    """
    eye, target, up = (np.asarray(a, np.float64) for a in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    y = -(up - np.dot(up, z) * z)
    norm = np.linalg.norm(y)
    if norm < 1e-9:
        raise ValueError(f"up: {up.tolist()} is parallel to the viewing direction {z.tolist()}")
    y /= norm
    x = np.cross(y, z)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = x, y, z, eye
    return pose


def hemisphere_poses(
    target, distances: Sequence[float], polar_deg: Sequence[float], azimuth_deg: Sequence[float],
    roll_deg: Sequence[float],
) -> list[np.ndarray]:  # fmt: skip
    """Cameras on a hemisphere above ``target``, each looking at it.

    View k sits at ``distances[k]`` from ``target``, ``polar_deg[k]`` away from the vertical (0 = straight
    down, top-down) at azimuth ``azimuth_deg[k]`` around the world z axis (0 = from +x). Its image's up
    points away from the viewer horizontally (the far side of the bin is at the top of the image; for a
    top-down view the world +y), then rolled by ``roll_deg[k]`` about the optical axis.
    """
    target = np.asarray(target, np.float64)
    poses = []
    for d, pol, az, roll in zip(distances, polar_deg, azimuth_deg, roll_deg):
        pol, az = math.radians(pol), math.radians(az)
        offset = np.array([math.sin(pol) * math.cos(az), math.sin(pol) * math.sin(az), math.cos(pol)])
        away = -offset[:2] if pol > 1e-6 else np.array([0.0, 1.0])
        up = np.array([*away / np.linalg.norm(away), 0.0])
        pose = look_at(target + d * offset, target, up)
        c, s = math.cos(math.radians(roll)), math.sin(math.radians(roll))
        spin = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        pose[:3, :3] = pose[:3, :3] @ spin
        poses.append(pose)
    return poses


def project_points(points_world: np.ndarray, intr: Intrinsics, world_from_camera: np.ndarray) -> np.ndarray:
    """``[N, 3]`` world points (metres) -> ``[N, 3]`` of ``(u, v, z)``: pixel coordinates and depth (m)."""
    cam = invert_pose(world_from_camera)
    p = points_world @ cam[:3, :3].T + cam[:3, 3]
    z = p[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = intr.fx * p[:, 0] / z + intr.cx
        v = intr.fy * p[:, 1] / z + intr.cy
    return np.stack([u, v, z], axis=1)


def opengl_view(world_from_camera: np.ndarray) -> list[float]:
    """The OpenGL view matrix (column-major list of 16) of an OpenCV-frame camera pose."""
    view = _CV_TO_GL @ invert_pose(world_from_camera)
    return view.T.reshape(-1).tolist()


def opengl_projection(intr: Intrinsics, near: float, far: float) -> list[float]:
    """The OpenGL projection matrix (column-major list of 16) equivalent to ``intr``.

    Normalised device x = 2 u / width - 1 and y = 1 - 2 v / height for the pixel coordinates ``(u, v)``
    of :func:`project_points` (rows counted from the top, as pybullet returns them); depth maps
    ``[near, far]`` metres to ``[-1, 1]``. Off-centre principal points (cropped windows) are exact.
    """
    w, h = intr.width, intr.height
    proj = np.zeros((4, 4))
    proj[0, 0] = 2 * intr.fx / w
    proj[0, 2] = 1 - 2 * intr.cx / w
    proj[1, 1] = 2 * intr.fy / h
    proj[1, 2] = 2 * intr.cy / h - 1
    proj[2, 2] = -(far + near) / (far - near)
    proj[2, 3] = -2 * far * near / (far - near)
    proj[3, 2] = -1.0
    return proj.T.reshape(-1).tolist()
