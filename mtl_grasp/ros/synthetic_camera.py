"""A stand-in RGB-D camera process and a frame counter, for transport tests and benchmarks.

    python -m mtl_grasp.ros.synthetic_camera publish --width 640 --height 480 --rate 30 --duration 4 \
        [--reliability best_effort] [--wait-subscribers 1] --ros-args -r __ns:=/cam
    python -m mtl_grasp.ros.synthetic_camera count --duration 6 --ros-args -r __ns:=/cam

`publish` streams rgb/image (rgb8), depth/image (32FC1 metres) and rgb/camera_info with one stamp
per frame (random-ish content, precomputed, so the process spends its time in DDS, not in numpy) and
prints `published N` at the end. `count` subscribes (best effort, like the node) and prints one JSON
line with the distinct stamps received per stream. Like the node, both apply the packaged Fast DDS
profile unless FASTDDS_DEFAULT_PROFILES_FILE is set or MTL_GRASP_FASTDDS_PROFILE=none
(mtl_grasp.ros.transport). SIGINT / SIGTERM end either cleanly (exit 0), so no shared-memory segment
is left behind.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Sequence

import numpy as np

from mtl_grasp.ros.transport import apply_default_profile

RELIABILITY = ("best_effort", "reliable")


def _qos(reliability: str, depth: int = 5):
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    policy = ReliabilityPolicy.BEST_EFFORT if reliability == "best_effort" else ReliabilityPolicy.RELIABLE
    return QoSProfile(depth=depth, reliability=policy)


def _messages(width: int, height: int) -> tuple:
    from sensor_msgs.msg import CameraInfo

    from mtl_grasp.ros.images import array_to_image

    rng = np.random.default_rng(0)
    rgb = array_to_image(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "rgb8")
    depth = array_to_image(rng.uniform(0.5, 0.9, (height, width)).astype(np.float32), "32FC1")
    info = CameraInfo(height=height, width=width, distortion_model="plumb_bob")
    info.k = [500.0, 0.0, width / 2, 0.0, 500.0, height / 2, 0.0, 0.0, 1.0]
    return rgb, depth, info


def publish(node, stop: threading.Event, args: argparse.Namespace) -> int:
    """Stream frames at args.rate for args.duration seconds; returns how many were published."""
    from sensor_msgs.msg import CameraInfo, Image

    qos = _qos(args.reliability)
    pubs = [node.create_publisher(t, n, qos) for t, n in
            ((Image, "rgb/image"), (Image, "depth/image"), (CameraInfo, "rgb/camera_info"))]
    deadline = time.monotonic() + args.wait_timeout
    while min(p.get_subscription_count() for p in pubs[:2]) < args.wait_subscribers:
        if stop.is_set() or time.monotonic() > deadline:
            return 0
        time.sleep(0.05)
    time.sleep(args.settle)  # let the transports connect before the first sample
    msgs = _messages(args.width, args.height)
    frames, period = int(round(args.rate * args.duration)), 1.0 / args.rate
    start = time.monotonic()
    sent = 0
    for i in range(frames):
        wait = start + i * period - time.monotonic()
        if stop.wait(max(0.0, wait)):
            break
        stamp = node.get_clock().now().to_msg()
        for msg, pub in zip(msgs, pubs):
            msg.header.stamp, msg.header.frame_id = stamp, "camera_color_optical_frame"
            pub.publish(msg)
        sent += 1
    return sent


def count(node, executor, stop: threading.Event, args: argparse.Namespace) -> dict:
    """Distinct stamps received per stream during args.duration seconds."""
    from sensor_msgs.msg import Image

    stamps: dict[str, set] = {"rgb": set(), "depth": set()}
    last = [0.0]

    def on_image(msg, key: str) -> None:
        stamps[key].add((msg.header.stamp.sec, msg.header.stamp.nanosec))
        last[0] = time.monotonic()

    for key in stamps:
        node.create_subscription(Image, f"{key}/image", lambda m, k=key: on_image(m, k), _qos("best_effort"))
    end = time.monotonic() + args.duration
    while time.monotonic() < end and not stop.is_set():
        executor.spin_once(timeout_sec=0.05)
        if last[0] and time.monotonic() - last[0] > args.idle_exit:
            break
    return {k: len(v) for k, v in stamps.items()}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mtl_grasp.ros.synthetic_camera", description=__doc__.split("\n")[0]
    )
    p.add_argument("mode", choices=("publish", "count"))
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--rate", type=float, default=30.0, help="frames per second")
    p.add_argument("--duration", type=float, default=4.0, help="seconds of streaming (count: of listening)")
    p.add_argument("--reliability", choices=RELIABILITY, default="best_effort")
    p.add_argument("--wait-subscribers", type=int, default=1, help="publish: wait for this many subscribers")
    p.add_argument("--wait-timeout", type=float, default=60.0)
    p.add_argument("--settle", type=float, default=0.5, help="publish: seconds from matching to streaming")
    p.add_argument("--idle-exit", type=float, default=2.0, help="count: stop this long after the last image")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions
    from rclpy.utilities import remove_ros_args

    argv = list(sys.argv if argv is None else argv)
    args = build_parser().parse_args(remove_ros_args(argv)[1:])
    apply_default_profile()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    ctx = rclpy.Context()
    rclpy.init(args=argv, context=ctx, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node(f"synthetic_camera_{args.mode}", context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    try:
        if args.mode == "publish":
            print(f"published {publish(node, stop, args)}", flush=True)
            stop.wait(0.5)  # let the last samples leave before the participant goes
        else:
            print(json.dumps(count(node, executor, stop, args)), flush=True)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
    return 0


if __name__ == "__main__":
    sys.exit(main())
