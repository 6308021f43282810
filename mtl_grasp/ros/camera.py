"""Camera messages of a MetaGraspNet view, for the replayer (rclpy) and the dataset bag writer
(rosbags): pure functions that build messages through a MessageFactory."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mtl_grasp.ros.messages import CAMERA_INFO, MessageFactory, rclpy_factory

DEPTH_ENCODINGS = ("32FC1", "16UC1")
DEFAULT_FRAME_ID = "camera_color_optical_frame"


def depth_message_array(depth_m: np.ndarray, encoding: str) -> np.ndarray:
    """Depth in metres (0 = invalid) as the array a camera driver would publish in `encoding`."""
    if encoding == "32FC1":
        out = depth_m.astype(np.float32, copy=True)
        out[out <= 0] = np.nan  # REP 118: non-finite marks invalid in 32FC1
        return out
    if encoding == "16UC1":
        return np.clip(np.rint(depth_m * 1000.0), 0, 65535).astype(np.uint16)
    raise ValueError(f"depth_encoding: expected one of {list(DEPTH_ENCODINGS)}, got {encoding!r}")


def camera_info_for(sample: Any, frame_id: str, factory: MessageFactory | None = None) -> Any:
    """CameraInfo of a reader Sample; a 60-degree horizontal field of view when it has no intrinsics."""
    factory = factory or rclpy_factory
    h, w = sample.rgb.shape[:2]
    cam = getattr(sample, "camera", None)
    if cam is not None:
        fx, fy, cx, cy = cam.fx, cam.fy, cam.cx, cam.cy
    else:
        fx = fy = (w / 2) / math.tan(math.radians(30))
        cx, cy = (w - 1) / 2, (h - 1) / 2
    info = factory(CAMERA_INFO)
    info.height, info.width, info.distortion_model = h, w, "plumb_bob"
    info.header.frame_id = frame_id
    info.d = [0.0] * 5
    info.k = [float(fx), 0.0, float(cx), 0.0, float(fy), float(cy), 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [float(fx), 0.0, float(cx), 0.0, 0.0, float(fy), float(cy), 0.0, 0.0, 0.0, 1.0, 0.0]
    return info
