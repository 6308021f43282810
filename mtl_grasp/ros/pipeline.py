"""The per-frame path shared by the node and the offline bag tool (no DDS, no rclpy needed).

`FramePipeline.run(rgb_msg, depth_msg, camera_info)` converts one synchronised pair (same encodings,
depth units and checks as the node), runs the detector and computes the 3-D candidates; its
`instances`, `overlay`, `visible_labels`, `candidates` methods build the output messages through a
`MessageFactory`, so the node (rclpy messages) and `perception_offline` (rosbags messages) produce the
same outputs from the same code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtl_grasp.ros.candidates import (
    FrameGeometry,
    candidates_pose_array,
    frame_geometry,
    intrinsics_from_camera_info,
)
from mtl_grasp.ros.images import array_to_image, color_to_rgb, depth_to_metres
from mtl_grasp.ros.instances import Box, detections_to_instance_array, mask_boxes
from mtl_grasp.ros.messages import IMAGE, MessageFactory, rclpy_factory
from mtl_grasp.ros.visualization import overlay_image, visible_label_image


@dataclass
class Frame:
    """One processed frame: inputs as arrays, detections and everything derived from them."""

    header: Any
    rgb: np.ndarray  # H x W x 3 uint8
    depth: np.ndarray  # H x W float32 metres, 0 = invalid
    det: Any  # mtl_grasp.runtime.Detections
    n: int  # instances published (<= max_instances)
    boxes: list[tuple[Box | None, Box | None]]
    geometry: FrameGeometry
    occlusion_threshold: float
    inference_s: float
    camera_info_problem: str  # why no 3-D fields ('' when camera_info was usable)


def convert_pair(rgb_msg: Any, depth_msg: Any, depth_unit: str) -> tuple[np.ndarray, np.ndarray]:
    """Image messages -> (rgb uint8 H x W x 3, depth float32 metres); ValueError naming the problem."""
    rgb = color_to_rgb(rgb_msg, "rgb")
    depth = depth_to_metres(depth_msg, depth_unit, "depth")
    if rgb.shape[:2] != depth.shape:
        raise ValueError(
            f"rgb/depth size mismatch: rgb is {rgb.shape[1]}x{rgb.shape[0]}, depth is "
            f"{depth.shape[1]}x{depth.shape[0]}; depth must be registered to the RGB camera"
        )
    return rgb, depth


class FramePipeline:
    """Detector + conversions + 3-D candidates for one frame at a time.

    Args:
        detector: a loaded mtl_grasp.runtime.Detector (or anything with the same call).
        param: returns the current value of a node parameter by name (the node's live values, or the
            parameters file's for the offline tool): depth_unit, max_instances, occlusion_threshold.
        factory: builds empty output messages by type name.
    """

    def __init__(self, detector: Any, param: Callable[[str], Any], factory: MessageFactory | None = None):
        self.detector = detector
        self.param = param
        self.factory = factory or rclpy_factory

    def run(self, rgb_msg: Any, depth_msg: Any, camera_info: Any = None) -> Frame:
        """Convert, detect and locate; raises ValueError (or the detector's errors) for bad input."""
        rgb, depth = convert_pair(rgb_msg, depth_msg, self.param("depth_unit"))
        t = time.perf_counter()
        det = self.detector(rgb, depth)
        inference_s = time.perf_counter() - t
        height, width = depth.shape
        n = min(len(det.scores), int(self.param("max_instances")))
        occ = float(self.param("occlusion_threshold"))
        boxes = mask_boxes(det, n)  # shared by every output
        intrinsics, problem = intrinsics_from_camera_info(camera_info, height, width)
        geometry = frame_geometry(det, n, depth, intrinsics, boxes, occ)
        return Frame(rgb_msg.header, rgb, depth, det, n, boxes, geometry, occ, inference_s, problem)

    def instances(self, f: Frame) -> Any:
        """mtl_grasp_msgs/InstanceArray with the 3-D fields."""
        shape = f.depth.shape
        return detections_to_instance_array(
            f.det, f.header, shape, f.occlusion_threshold, f.n, f.boxes, f.geometry, self.factory
        )

    def overlay(self, f: Frame) -> Any:
        """rgb8 overlay image (boxes, masks, occlusion colours)."""
        img = overlay_image(f.rgb, f.det, f.n, f.occlusion_threshold, f.boxes)
        return array_to_image(img, "rgb8", f.header, lambda: self.factory(IMAGE))

    def visible_labels(self, f: Frame) -> Any:
        """mono16 label image (0 background, k = instance id)."""
        labels = visible_label_image(f.det, f.n, f.depth.shape[0], f.depth.shape[1], f.boxes)
        return array_to_image(labels, "mono16", f.header, lambda: self.factory(IMAGE))

    def candidates(self, f: Frame) -> Any:
        """geometry_msgs/PoseArray of the pick candidates in pick order (empty without camera_info)."""
        return candidates_pose_array(f.geometry, f.header, self.factory)
