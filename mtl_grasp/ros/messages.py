"""Message construction by type name, so one builder serves rclpy and the offline bag tools.

The builders in this package (instances, candidates, images) create messages through a
`MessageFactory`: a callable taking a ROS 2 type name such as "sensor_msgs/msg/Image" and returning an
empty message whose fields can be assigned. `rclpy_factory` returns the rclpy classes' default
instances; `mtl_grasp.bag.typestore.BagTypes.new` returns rosbags dataclasses (no rclpy needed).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

MessageFactory = Callable[[str], Any]

INSTANCE = "mtl_grasp_msgs/msg/Instance"
INSTANCE_ARRAY = "mtl_grasp_msgs/msg/InstanceArray"
IMAGE = "sensor_msgs/msg/Image"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POSE_ARRAY = "geometry_msgs/msg/PoseArray"
POSE = "geometry_msgs/msg/Pose"


def rclpy_factory(typename: str) -> Any:
    """An empty rclpy message of `typename` ("pkg/msg/Name")."""
    pkg, kind, name = typename.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)()
