"""Replay a MetaGraspNet-format folder through the perception node and collect what it detected.

One process, real DDS: the replayer (camera), the perception node and a listener run in one rclpy
context on a reserved, localhost-only domain, so the demo never disturbs (or sees) other ROS 2
traffic. Used by the project's demo command as its last step:

    from mtl_grasp.ros.demo import replay_and_detect, format_frame
    for frame in replay_and_detect("runs/demo/data", "runs/demo/model.onnx"):
        print(format_frame(frame))
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np


@dataclass(frozen=True)
class DetectedInstance:
    id: int
    class_name: str
    score: float
    amodal_box: tuple[float, float, float, float]
    visible_pixels: int
    occluded: bool
    occlusion_probability: float


@dataclass(frozen=True)
class DetectedFrame:
    """One received InstanceArray, summarised."""

    stamp_ns: int
    frame_id: str
    height: int
    width: int
    instances: tuple[DetectedInstance, ...]


def _summarise(msg: Any) -> DetectedFrame:
    stamp = msg.header.stamp
    return DetectedFrame(
        stamp_ns=stamp.sec * 1_000_000_000 + stamp.nanosec,
        frame_id=msg.header.frame_id,
        height=msg.image_height,
        width=msg.image_width,
        instances=tuple(
            DetectedInstance(
                id=i.id,
                class_name=i.class_name,
                score=float(i.score),
                amodal_box=cast(tuple[float, float, float, float], tuple(float(v) for v in i.amodal_box)),
                visible_pixels=int(np.count_nonzero(np.frombuffer(bytes(i.visible_mask.data), np.uint8))),
                occluded=bool(i.occluded),
                occlusion_probability=float(i.occlusion_probability),
            )
            for i in msg.instances
        ),
    )


def format_frame(frame: DetectedFrame, index: int | None = None) -> str:
    """One line per frame, then one per instance."""
    occluded = sum(i.occluded for i in frame.instances)
    head = f"frame {index}: " if index is not None else ""
    lines = [f"{head}{len(frame.instances)} instance(s), {occluded} occluded ({frame.width}x{frame.height})"]
    for i in frame.instances:
        x1, y1, x2, y2 = i.amodal_box
        lines.append(
            f"  #{i.id} {i.class_name} score {i.score:.2f} box ({x1:.0f},{y1:.0f})-({x2:.0f},{y2:.0f}) "
            f"visible {i.visible_pixels} px, P(occluded) {i.occlusion_probability:.2f}"
            f"{' -> occluded' if i.occluded else ''}"
        )
    return "\n".join(lines)


def replay_and_detect(
    dataset: str | Path,
    model_path: str | Path,
    rate_hz: float = 5.0,
    max_frames: int | None = None,
    providers: tuple[str, ...] = ("auto",),
    score_threshold: float | None = None,
    timeout_s: float = 120.0,
) -> list[DetectedFrame]:
    """Publish every view of `dataset` once (or `max_frames`), run the node, return its outputs.

    Raises RuntimeError when the node cannot start (e.g. a bad model) or nothing comes back in
    `timeout_s` seconds.
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from mtl_grasp.ros.domain import localhost_only, reserved_domain_id
    from mtl_grasp.ros.parameters import default_params_file
    from mtl_grasp.ros.perception_node import PerceptionNode
    from mtl_grasp.ros.replayer import Replayer
    from mtl_grasp_msgs.msg import InstanceArray

    overrides = [
        Parameter("model_path", value=str(model_path)),
        Parameter("providers", value=list(providers)),
    ]
    if score_threshold is not None:
        overrides.append(Parameter("score_threshold", value=float(score_threshold)))
    localhost_only()
    received: list[Any] = []
    with reserved_domain_id() as domain:
        ctx = rclpy.Context()
        rclpy.init(context=ctx, domain_id=domain)
        nodes = []
        try:
            node = PerceptionNode(
                context=ctx,
                cli_args=["--ros-args", "--params-file", str(default_params_file())],
                parameter_overrides=overrides,
            )
            nodes.append(node)
            if not node.autostart():
                raise RuntimeError(f"perception node did not start: {node.failure_reason}")
            listener = rclpy.create_node("demo_listener", context=ctx)
            nodes.append(listener)
            qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
            listener.create_subscription(InstanceArray, "/perception_node/instances", received.append, qos)
            executor = SingleThreadedExecutor(context=ctx)
            for n in nodes:
                executor.add_node(n)
            deadline = time.monotonic() + timeout_s
            while node._pubs["instances"].get_subscription_count() == 0 and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.05)
            replayer = Replayer(dataset, rate_hz=rate_hz, max_frames=max_frames, context=ctx)
            nodes.append(replayer)
            executor.add_node(replayer)
            while time.monotonic() < deadline and not replayer.finished:
                executor.spin_once(timeout_sec=0.05)
            # the last frame is still in flight: wait for as many answers as frames, or a quiet second
            last_change, count = time.monotonic(), len(received)
            while time.monotonic() < deadline and len(received) < replayer.published:
                executor.spin_once(timeout_sec=0.05)
                if len(received) != count:
                    last_change, count = time.monotonic(), len(received)
                elif time.monotonic() - last_change > 1.0 + 2.0 / rate_hz:
                    break
            executor.shutdown()
        finally:
            for n in nodes:
                if isinstance(n, PerceptionNode):
                    n._stop_processing()
                n.destroy_node()
            rclpy.try_shutdown(context=ctx)
    if not received:
        raise RuntimeError(f"the perception node published nothing within {timeout_s} s")
    return [_summarise(m) for m in received]
