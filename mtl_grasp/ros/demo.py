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

    Lockstep: the next frame is published only when the node has answered the previous one (matched
    by header stamp), so every frame is processed whatever the machine's load (the node keeps only the
    latest frame, so a free-running camera would make the result depend on inference speed). A frame
    without an answer after `RETRY_S` is published again with a new stamp (a best-effort message may
    be lost); `rate_hz` is the fastest pace. Raises RuntimeError when the node cannot start (e.g. a
    bad model) or the frames are not all answered within `timeout_s` seconds.
    """
    import rclpy

    from mtl_grasp.ros.domain import localhost_only, reserved_domain_id

    localhost_only()
    with reserved_domain_id() as domain:
        ctx = rclpy.Context()
        rclpy.init(context=ctx, domain_id=domain)
        nodes: list[Any] = []
        try:
            received = _run_lockstep(ctx, nodes, dataset, model_path, rate_hz, max_frames, providers,
                                     score_threshold, time.monotonic() + timeout_s)  # fmt: skip
        finally:
            _destroy(nodes)
            rclpy.try_shutdown(context=ctx)
    if not received:
        raise RuntimeError(f"the perception node published nothing within {timeout_s} s")
    return [_summarise(m) for m in received]


#: seconds without an answer after which a frame is published again
RETRY_S = 20.0


def _start_node(
    ctx: Any, model_path: str | Path, providers: tuple[str, ...], score_threshold: float | None
) -> Any:
    from rclpy.parameter import Parameter

    from mtl_grasp.ros.parameters import default_params_file
    from mtl_grasp.ros.perception_node import PerceptionNode

    overrides = [
        Parameter("model_path", value=str(model_path)),
        Parameter("providers", value=list(providers)),
    ]
    if score_threshold is not None:
        overrides.append(Parameter("score_threshold", value=float(score_threshold)))
    return PerceptionNode(
        context=ctx,
        cli_args=["--ros-args", "--params-file", str(default_params_file())],
        parameter_overrides=overrides,
    )


def _run_lockstep(
    ctx: Any, nodes: list[Any], dataset: str | Path, model_path: str | Path, rate_hz: float,
    max_frames: int | None, providers: tuple[str, ...], score_threshold: float | None, deadline: float,
) -> list[Any]:  # fmt: skip
    """Start node, listener and a timer-less replayer in `ctx` (appended to `nodes`); answers in order."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from mtl_grasp.ros.replayer import Replayer
    from mtl_grasp_msgs.msg import InstanceArray

    node = _start_node(ctx, model_path, providers, score_threshold)
    nodes.append(node)
    if not node.autostart():
        raise RuntimeError(f"perception node did not start: {node.failure_reason}")
    answers: dict[tuple[int, int], Any] = {}
    listener = rclpy.create_node("demo_listener", context=ctx)
    nodes.append(listener)
    qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    listener.create_subscription(
        InstanceArray, "/perception_node/instances",
        lambda m: answers.setdefault((m.header.stamp.sec, m.header.stamp.nanosec), m), qos,
    )  # fmt: skip
    replayer = Replayer(dataset, rate_hz=rate_hz, max_frames=max_frames, context=ctx, timer=False)
    nodes.append(replayer)
    executor = SingleThreadedExecutor(context=ctx)
    for n in nodes:
        executor.add_node(n)
    _spin_until(executor, lambda: node._pubs["instances"].get_subscription_count() > 0, deadline)
    received = []
    while not replayer.finished and time.monotonic() < deadline:
        answer = _publish_and_wait(executor, replayer, answers, 1.0 / rate_hz, deadline)
        if answer is not None:
            received.append(answer)
    executor.shutdown()
    return received


def _publish_and_wait(
    executor: Any, replayer: Any, answers: dict[tuple[int, int], Any], min_period: float, deadline: float
) -> Any | None:
    """Publish the replayer's next frame (again after RETRY_S without answer); its answer or None."""
    stamps: list[tuple[int, int]] = []
    while time.monotonic() < deadline:
        started = time.monotonic()
        stamp = replayer.publish_next(advance=False)
        stamps.append((stamp.sec, stamp.nanosec))
        _spin_until(executor, lambda: any(s in answers for s in stamps), min(deadline, started + RETRY_S))
        _spin_until(executor, lambda: False, started + min_period)  # never faster than rate_hz
        done = [answers[s] for s in stamps if s in answers]
        if done:
            replayer.advance()
            return done[0]
    return None


def _spin_until(executor: Any, condition: Any, deadline: float) -> None:
    while not condition() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.02)


def _destroy(nodes: list[Any]) -> None:
    from mtl_grasp.ros.perception_node import PerceptionNode

    for n in nodes:
        if isinstance(n, PerceptionNode):
            n._stop_processing()
        n.destroy_node()
