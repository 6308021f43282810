"""`python -m training bench node`: the perception node's overhead on top of the runtime's latency.

Both numbers come from the same frames in one run: the runtime alone (`Detector(rgb, depth)` on numpy
arrays) and the node's whole per-frame path (`PerceptionNode.process`: Image messages -> numpy,
synchronised pair -> detector -> InstanceArray and, when subscribed, overlay / label image / markers
-> publish). Overhead = node time - runtime time inside it, reported as p50 / p95.

Without --model a small synthetic model that honours mtl_grasp/contract.py is written (fixed boxes
and masks, scores scaled by the image brightness), so the overhead is measured with a realistic
number of instances independent of how fast a trained network is on this machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from training.bench.common import require_positive
from training.contract_model import write_contract_model

HELP = "perception node overhead on top of the runtime latency (ROS 2, in-process)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default=None, help="exported ONNX model (default: a synthetic contract model)"
    )
    parser.add_argument("--instances", type=int, default=20, help="instances of the synthetic model")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--frames", type=int, default=200, help="timed frames per configuration")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--providers", default="cpu", help="runtime providers (cpu, cuda, tensorrt, auto)")


def _frame(height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    depth = rng.uniform(0.5, 0.8, (height, width)).astype(np.float32)
    return rgb, depth


def _pct(a: list[float]) -> str:
    v = np.asarray(a) * 1e3
    return f"p50 {np.percentile(v, 50):7.3f} ms  p95 {np.percentile(v, 95):7.3f} ms"


def _start_node(ctx, model: str, providers: str):
    import rclpy

    from mtl_grasp.ros.parameters import default_params_file
    from mtl_grasp.ros.perception_node import PerceptionNode

    node = PerceptionNode(
        context=ctx,
        cli_args=["--ros-args", "--params-file", str(default_params_file())],
        parameter_overrides=[
            rclpy.parameter.Parameter("model_path", value=model),
            rclpy.parameter.Parameter("providers", value=[providers]),
            rclpy.parameter.Parameter("score_threshold", value=0.05),
        ],
    )
    if not node.autostart():
        raise SystemExit(f"node did not start: {node.failure_reason}")
    return node


def _messages(frames: list[tuple[np.ndarray, np.ndarray]]) -> list:
    from mtl_grasp.ros.images import array_to_image

    msgs = []
    for i, (rgb, depth) in enumerate(frames):
        r, d = array_to_image(rgb, "rgb8"), array_to_image(depth, "32FC1")
        r.header.stamp.sec = d.header.stamp.sec = i + 1
        r.header.frame_id = d.header.frame_id = "camera_color_optical_frame"
        msgs.append((r, d))
    return msgs


def _time_runtime(det, frames, warmup: int, count: int) -> list[float]:
    out = []
    for i in range(warmup + count):
        rgb, depth = frames[i % len(frames)]
        t = time.perf_counter()
        det(rgb, depth)
        if i >= warmup:
            out.append(time.perf_counter() - t)
    return out


def _time_node(node, det, frames, msgs, warmup: int, count: int):
    """Wall time of node.process, wall time of the detector inside it, and the node's CPU-time
    overhead (thread CPU time of node.process minus that of a detector call on the same frame): the
    latter is robust to other processes competing for the cores."""
    total, inner, cpu_over = [], [], []
    for i in range(warmup + count):
        r, d = msgs[i % len(msgs)]
        before = node.stats.frames
        c0 = time.thread_time()
        t = time.perf_counter()
        ok = node.process(r, d, t)
        dt = time.perf_counter() - t
        c1 = time.thread_time()
        det(*frames[i % len(frames)])
        c2 = time.thread_time()
        if not ok or node.stats.frames != before + 1:
            raise SystemExit(f"node failed on a benchmark frame: {node.stats.last_error}")
        if i >= warmup:
            total.append(dt)
            inner.append(float(node.stats.last_inference_s))
            cpu_over.append((c1 - c0) - (c2 - c1))
    return total, inner, cpu_over, len(det(*frames[0]).scores)


def _report(title: str, total: list[float], inner: list[float], cpu_over: list[float]) -> None:
    print(f"{title}: total {_pct(total)}")
    wall_over = [a - b for a, b in zip(total, inner)]
    print(f"  node overhead, wall (total - runtime):   {_pct(wall_over)}")
    print(f"  node overhead, thread CPU time:          {_pct(cpu_over)}")


def _subscribe_views(ctx, node):
    """A listener on every output, so the tool views are built too (worst case)."""
    import rclpy
    from geometry_msgs.msg import PoseArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from visualization_msgs.msg import MarkerArray

    from mtl_grasp_msgs.msg import InstanceArray

    listener = rclpy.create_node("bench_listener", context=ctx)
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    topics = {"overlay": Image, "visible_labels": Image, "instances": InstanceArray, "markers": MarkerArray,
              "candidates": PoseArray}
    subs = [listener.create_subscription(t, f"/perception_node/{name}", lambda m: None, qos)
            for name, t in topics.items()]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and node._pubs["overlay"].get_subscription_count() == 0:
        time.sleep(0.05)
    return listener, subs


def _camera_info(height: int, width: int):
    from sensor_msgs.msg import CameraInfo

    info = CameraInfo(height=height, width=width)
    info.k = [500.0, 0.0, width / 2, 0.0, 500.0, height / 2, 0.0, 0.0, 1.0]
    return info


def _machine_line() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, 1-min load average {load:.1f}"
    )


def _measure(ctx, model: str, args: argparse.Namespace) -> None:
    h, w = args.height, args.width
    frames = [_frame(h, w, s) for s in range(4)]
    node = _start_node(ctx, model, args.providers)
    det = node.detector
    print(f"model: {model}\nproviders: {node.provider}\nframe: {w}x{h}, timed frames: {args.frames}")
    msgs = _messages(frames)
    runtime = _time_runtime(det, frames, args.warmup, args.frames)
    print(f"runtime alone (Detector call):           {_pct(runtime)}")
    total, inner, cpu_over, n_inst = _time_node(node, det, frames, msgs, args.warmup, args.frames)
    _report(f"node, ~/instances + ~/candidates, no camera_info ({n_inst} instances)", total, inner, cpu_over)
    node._on_camera_info(_camera_info(h, w))  # the 3-D pick candidates are computed from now on
    total, inner, cpu_over, _ = _time_node(node, det, frames, msgs, args.warmup, args.frames)
    _report("node, ~/instances + ~/candidates with camera_info (3-D)", total, inner, cpu_over)
    listener, subs = _subscribe_views(ctx, node)
    total, inner, cpu_over, _ = _time_node(node, det, frames, msgs, args.warmup, args.frames)
    _report("node, all views subscribed (overlay, labels, markers, 3-D)", total, inner, cpu_over)
    print(_machine_line())
    del subs
    listener.destroy_node()
    node._stop_processing()
    node.destroy_node()


def run(args: argparse.Namespace) -> int:
    import rclpy

    from mtl_grasp.ros.domain import localhost_only, reserved_domain_id

    require_positive(args, "instances", "width", "height", "frames")
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(write_contract_model(Path(tmp) / "contract.onnx", args.instances))
        localhost_only()
        with reserved_domain_id() as domain:
            ctx = rclpy.Context()
            rclpy.init(context=ctx, domain_id=domain)
            try:
                _measure(ctx, model, args)
            finally:
                rclpy.try_shutdown(context=ctx)
    return 0
