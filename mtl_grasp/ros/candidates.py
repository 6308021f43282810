"""3-D pick candidates of a frame: per-instance surface points (mtl_grasp.geometry) and their messages.

Pure functions, no DDS: `frame_geometry` computes every instance's pick point, normal and valid-depth
fraction plus the frame's pick order; `candidates_pose_array` turns them into a geometry_msgs/PoseArray
(pick order; each pose's +z is the approach direction -normal) and `candidate_markers` into RViz
markers. Without a usable camera_info nothing 3-D is computed: the fields stay invalid.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mtl_grasp.geometry import (
    DEFAULT_RADIUS_PX,
    INVALID,
    FrameGeometry,
    Intrinsics,
    SurfacePoint,
    approach_quaternion,
    pick_order,
    surface_point,
    valid_depth_fraction,
)
from mtl_grasp.ros.instances import Box, DetectionsLike
from mtl_grasp.ros.messages import POSE, POSE_ARRAY, MessageFactory, rclpy_factory

__all__ = [
    "FrameGeometry",
    "candidate_markers",
    "candidates_pose_array",
    "frame_geometry",
    "intrinsics_from_camera_info",
]

# CameraInfo distortion models whose coefficients mtl_grasp.geometry.Intrinsics understands
_DISTORTION_MODELS = ("plumb_bob", "rational_polynomial", "")


def intrinsics_from_camera_info(info: Any, height: int, width: int) -> tuple[Intrinsics | None, str]:
    """Intrinsics of a sensor_msgs/CameraInfo for an image of height x width, or (None, why not)."""
    if info is None:
        return None, "no rgb/camera_info received"
    if (int(info.height), int(info.width)) != (height, width):
        return None, f"camera_info is {info.width}x{info.height} but images are {width}x{height}"
    d = [float(v) for v in info.d]
    if any(d) and info.distortion_model not in _DISTORTION_MODELS:
        return None, f"camera_info distortion_model {info.distortion_model!r} is not supported"
    if len(d) > 8:
        d = d[:8]
    try:
        return Intrinsics.from_k(info.k, width, height, d if any(d) else ()), ""
    except ValueError as exc:
        return None, f"camera_info: {exc}"


def frame_geometry(
    det: DetectionsLike,
    n: int,
    depth_m: np.ndarray,
    intrinsics: Intrinsics | None,
    boxes: list[tuple[Box | None, Box | None]],
    occlusion_threshold: float,
    radius_px: int = DEFAULT_RADIUS_PX,
) -> FrameGeometry:
    """Pick point, normal and valid-depth fraction of the first `n` instances, and the pick order.

    The visible mask is used (the hidden part has no depth of its own). Without intrinsics only the
    valid-depth fraction is computed; positions, normals and the order stay empty.
    """
    points: list[SurfacePoint] = []
    for i in range(n):
        vbox = boxes[i][0]
        if vbox is None:
            points.append(INVALID)
            continue
        mask = np.asarray(det.visible_masks[i], bool)
        if intrinsics is None:
            points.append(SurfacePoint(None, None, valid_depth_fraction(depth_m, mask, vbox), None))
            continue
        points.append(surface_point(depth_m, mask, intrinsics, radius_px, box=vbox))
    if intrinsics is None:
        return FrameGeometry(None, points, [])
    occluded = [bool(det.occlusion[i] >= occlusion_threshold) for i in range(n)]
    return FrameGeometry(intrinsics, points, pick_order(points, occluded))


def candidates_pose_array(geometry: FrameGeometry, header: Any, factory: MessageFactory | None = None) -> Any:
    """geometry_msgs/PoseArray of the pick candidates in pick order (header = the input RGB header)."""
    factory = factory or rclpy_factory
    out = factory(POSE_ARRAY)
    out.header = header
    poses = []
    for i in geometry.order:
        p = geometry.points[i]
        if p.position is None:  # never in the order; keeps the types honest
            continue
        pose = factory(POSE)
        pose.position.x, pose.position.y, pose.position.z = (float(v) for v in p.position)
        q = approach_quaternion(p.normal)
        pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = q
        poses.append(pose)
    out.poses = poses
    return out


def candidate_markers(geometry: FrameGeometry, header: Any, namespace: str = "mtl_grasp_candidates") -> list:
    """RViz markers of the candidates: per candidate an ARROW along the normal (5 cm, pointing out of
    the surface; a SPHERE when the normal is invalid) and a text with its pick rank."""
    from geometry_msgs.msg import Point
    from visualization_msgs.msg import Marker

    markers = []
    for rank, i in enumerate(geometry.order, start=1):
        p, position = geometry.points[i], geometry.points[i].position
        if position is None:
            continue
        start = Point(x=float(position[0]), y=float(position[1]), z=float(position[2]))
        shape = Marker()
        shape.header, shape.ns, shape.id, shape.action = header, namespace, 2 * i, Marker.ADD
        shape.pose.orientation.w = 1.0
        shape.color.r, shape.color.g, shape.color.b, shape.color.a = 0.1, 0.4, 1.0, 1.0
        if p.normal is not None:
            end = position + 0.05 * p.normal
            shape.type = Marker.ARROW
            shape.points = [start, Point(x=float(end[0]), y=float(end[1]), z=float(end[2]))]
            shape.scale.x, shape.scale.y, shape.scale.z = 0.005, 0.01, 0.01  # shaft, head diameters
        else:
            shape.type = Marker.SPHERE
            shape.pose.position = start
            shape.scale.x = shape.scale.y = shape.scale.z = 0.01
        text = Marker()
        text.header, text.ns, text.id, text.action = header, namespace, 2 * i + 1, Marker.ADD
        text.type = Marker.TEXT_VIEW_FACING
        text.pose.position = Point(x=start.x, y=start.y - 0.015, z=start.z)
        text.pose.orientation.w = 1.0
        text.scale.z = 0.02
        text.color.r, text.color.g, text.color.b, text.color.a = 0.1, 0.4, 1.0, 1.0
        text.text = f"pick {rank}"
        markers += [shape, text]
    return markers
