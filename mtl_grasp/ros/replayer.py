"""`mgn_replayer`: publish a MetaGraspNet-format folder as a synchronised RGB-D camera stream.

For demos and tests without a camera: every view of the folder (real, simulated or synthetic from
`python -m training synth`) becomes one frame of
  rgb/image         sensor_msgs/Image rgb8
  depth/image       sensor_msgs/Image 32FC1 (metres, NaN = invalid) or 16UC1 (millimetres, 0 = invalid)
  rgb/camera_info   sensor_msgs/CameraInfo (the view's intrinsics, else a 60-degree pinhole guess)
all three with the same header (stamp = publish time, frame_id = --frame-id), at --rate Hz, once or
in a loop. Topics are relative, so `-r __ns:=/camera` or remaps place them like a real driver's.

    python -m mtl_grasp.ros.replayer DATASET_DIR --rate 5 --loop --ros-args -r __ns:=/camera
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.utilities import remove_ros_args
from sensor_msgs.msg import CameraInfo, Image

from mtl_grasp.ros.camera import DEFAULT_FRAME_ID, DEPTH_ENCODINGS, camera_info_for, depth_message_array
from mtl_grasp.ros.images import array_to_image
from mtl_grasp.ros.transport import apply_default_profile

__all__ = ["CAMERA_QOS", "DEFAULT_FRAME_ID", "DEPTH_ENCODINGS", "Replayer", "camera_info_for",
           "depth_message_array", "main"]

# Drivers publish raw sensor data reliable (REP 2003); consumers choose best effort.
CAMERA_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)


class Replayer(Node):
    """Publishes the views of a MetaGraspNet-format folder as rgb/image, depth/image, rgb/camera_info.

    Args:
        dataset: folder with scene*/ views (mtl_grasp.data.reader layout).
        rate_hz: frames per second (> 0).
        loop: start over after the last view; otherwise `finished` becomes True.
        depth_encoding: "32FC1" (metres) or "16UC1" (millimetres).
        frame_id: header.frame_id of every message (the camera optical frame).
        max_frames: stop after this many frames (None: no limit).
        timer: publish on a `rate_hz` timer; False leaves publishing to the caller (`publish_next`),
            e.g. a lockstep replay that waits for each answer (mtl_grasp.ros.demo).
    """

    def __init__(
        self,
        dataset: str | Path,
        rate_hz: float = 5.0,
        loop: bool = False,
        depth_encoding: str = "32FC1",
        frame_id: str = DEFAULT_FRAME_ID,
        max_frames: int | None = None,
        node_name: str = "mgn_replayer",
        timer: bool = True,
        **kwargs: Any,
    ) -> None:
        from mtl_grasp.data.reader import discover_views

        if not (rate_hz > 0 and math.isfinite(rate_hz)):
            raise ValueError(f"rate_hz: expected a positive number of frames per second, got {rate_hz!r}")
        depth_message_array(np.zeros((1, 1), np.float32), depth_encoding)  # validates the encoding
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames: expected None or >= 1, got {max_frames!r}")
        self._views = discover_views(dataset, require_amodal=False)
        if not self._views:
            raise ValueError(f"dataset: no MetaGraspNet views (scene*/<v>.npz) under {str(dataset)!r}")
        super().__init__(node_name, **kwargs)
        self.loop, self.depth_encoding, self.frame_id = loop, depth_encoding, frame_id
        self.max_frames = max_frames
        self.published = 0
        self.finished = False
        # Looping over a small folder: keep the converted messages instead of re-reading the files.
        self._cache_views = loop and len(self._views) <= 64
        self._cache: dict[int, tuple[Image, Image, CameraInfo]] = {}
        self._rgb_pub = self.create_publisher(Image, "rgb/image", CAMERA_QOS)
        self._depth_pub = self.create_publisher(Image, "depth/image", CAMERA_QOS)
        self._info_pub = self.create_publisher(CameraInfo, "rgb/camera_info", CAMERA_QOS)
        if timer:
            self._timer = self.create_timer(1.0 / rate_hz, self.publish_next)
        self.get_logger().info(f"replaying {len(self._views)} view(s) of {dataset} at {rate_hz} Hz")

    @property
    def num_views(self) -> int:
        return len(self._views)

    def _messages(self, index: int) -> tuple[Image, Image, CameraInfo]:
        if index in self._cache:
            return self._cache[index]
        from mtl_grasp.data.reader import load_view

        sample = load_view(self._views[index])
        rgb = array_to_image(sample.rgb, "rgb8")
        depth = array_to_image(depth_message_array(sample.depth, self.depth_encoding), self.depth_encoding)
        msgs = (rgb, depth, camera_info_for(sample, self.frame_id))
        if self._cache_views:
            self._cache[index] = msgs
        return msgs

    def publish_next(self, advance: bool = True) -> Any:
        """Publish the next frame (all three topics share one header stamped now); returns the stamp.

        advance=False publishes the same frame again on the next call until `advance()` is called.
        """
        if self.finished:
            return None
        index = self.published % len(self._views)
        rgb, depth, info = self._messages(index)
        stamp = self.get_clock().now().to_msg()
        for msg in (rgb, depth, info):
            msg.header.stamp = stamp
            msg.header.frame_id = self.frame_id
        self._rgb_pub.publish(rgb)
        self._depth_pub.publish(depth)
        self._info_pub.publish(info)
        if advance:
            self.advance()
        return stamp

    def advance(self) -> None:
        """Move to the next view (sets `finished` after the last one, or after max_frames)."""
        self.published += 1
        done_all = not self.loop and self.published >= len(self._views)
        if done_all or (self.max_frames is not None and self.published >= self.max_frames):
            self.finished = True


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mgn_replayer",
        description="Publish a MetaGraspNet-format folder as synchronised rgb/image, depth/image and "
        "rgb/camera_info (append --ros-args for remaps and namespace).",
    )
    p.add_argument("dataset", help="folder with scene*/ views (real, simulated or synthetic)")
    p.add_argument("--rate", type=float, default=5.0, help="frames per second (default 5)")
    p.add_argument("--loop", action="store_true", help="start over after the last view")
    p.add_argument("--depth-encoding", choices=DEPTH_ENCODINGS, default="32FC1")
    p.add_argument("--frame-id", default=DEFAULT_FRAME_ID)
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    p.add_argument("--linger", type=float, default=1.0, help="seconds to keep running after the last frame")
    return p


def main(args: Sequence[str] | None = None) -> int:
    """Console entry `mgn_replayer`."""
    argv = list(sys.argv if args is None else args)
    opts = build_parser().parse_args(remove_ros_args(argv)[1:])
    apply_default_profile()  # large images to another process: the shared-memory profile (docs/ros.md)
    context = rclpy.Context()
    rclpy.init(args=argv, context=context)
    node = None
    try:
        node = Replayer(
            opts.dataset,
            opts.rate,
            opts.loop,
            opts.depth_encoding,
            opts.frame_id,
            opts.max_frames,
            context=context,
        )
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        while context.ok() and not node.finished:
            executor.spin_once(timeout_sec=0.1)
        # give subscribers time to receive the last reliable samples before the publishers vanish
        end = node.get_clock().now().nanoseconds + int(opts.linger * 1e9)
        while context.ok() and node.get_clock().now().nanoseconds < end:
            executor.spin_once(timeout_sec=0.05)
        print(f"mgn_replayer: published {node.published} frame(s)")
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ValueError as exc:
        print(f"mgn_replayer: {exc}", file=sys.stderr)
        return 2
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown(context=context)
    return 0


if __name__ == "__main__":
    sys.exit(main())
