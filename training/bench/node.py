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

from mtl_grasp.contract import (
    INPUT_DEPTH,
    INPUT_RGB,
    OUTPUT_AMODAL_MASKS,
    OUTPUT_BOXES,
    OUTPUT_LABELS,
    OUTPUT_OCCLUSION,
    OUTPUT_SCORES,
    OUTPUT_VISIBLE_MASKS,
    ROI_MASK_SIZE,
    ModelMetadata,
)

HELP = "perception node overhead on top of the runtime latency (ROS 2, in-process)"


def contract_model_outputs(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The constant parts of the synthetic model: box fractions, base scores, labels, masks, occlusion."""
    rng = np.random.default_rng(seed)
    grid = int(np.ceil(np.sqrt(max(n, 1))))
    boxes = []
    for i in range(n):
        gx, gy = i % grid, i // grid
        x1, y1 = (gx + 0.1) / grid, (gy + 0.1) / grid
        w, h = rng.uniform(0.5, 0.8) / grid, rng.uniform(0.5, 0.8) / grid
        boxes.append([x1, y1, min(1.0, x1 + w), min(1.0, y1 + h)])
    yy, xx = np.mgrid[0:ROI_MASK_SIZE, 0:ROI_MASK_SIZE] / (ROI_MASK_SIZE - 1)
    amodal = (((xx - 0.5) / 0.45) ** 2 + ((yy - 0.5) / 0.45) ** 2 <= 1.0).astype(np.float32)
    visible = np.repeat(amodal[None], n, axis=0).copy()
    occlusion = np.zeros(n, np.float32)
    for i in range(1, n, 2):  # every other instance has its right part hidden
        cut = rng.integers(ROI_MASK_SIZE // 3, 2 * ROI_MASK_SIZE // 3)
        visible[i, :, cut:] = 0.0
        occlusion[i] = 0.9
    occlusion[0::2] = 0.1
    return {
        "box_fractions": np.asarray(boxes, np.float32).reshape(n, 4),
        "base_scores": np.linspace(0.99, 0.55, n, dtype=np.float32),
        "labels": np.ones(n, np.int64),
        "visible": visible * 0.98,
        "amodal": np.repeat(amodal[None], n, axis=0) * 0.98,
        "occlusion": occlusion,
    }


def write_contract_model(
    path: str | os.PathLike, n: int = 8, seed: int = 0, metadata: ModelMetadata | None = None
) -> Path:
    """Write a tiny ONNX model with the contract's inputs, outputs and metadata.

    boxes = fixed fractions x (W, H, W, H) of the input; scores = base scores x (0.5 + 0.5 mean(rgb)),
    so brighter frames score higher and a different frame gives a different output.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if n < 1:
        raise ValueError(f"n: expected at least one instance, got {n}")
    c = contract_model_outputs(n, seed)
    inits = [
        numpy_helper.from_array(c["box_fractions"], "box_fractions"),
        numpy_helper.from_array(c["base_scores"], "base_scores"),
        numpy_helper.from_array(c["labels"], "const_labels"),
        numpy_helper.from_array(c["visible"].astype(np.float32), "const_visible"),
        numpy_helper.from_array(c["amodal"].astype(np.float32), "const_amodal"),
        numpy_helper.from_array(c["occlusion"], "const_occlusion"),
        numpy_helper.from_array(np.array([2], np.int64), "idx_h"),
        numpy_helper.from_array(np.array([3], np.int64), "idx_w"),
        numpy_helper.from_array(np.array(0.5, np.float32), "half"),
    ]
    nodes = [
        helper.make_node("Shape", [INPUT_RGB], ["shape"]),
        helper.make_node("Gather", ["shape", "idx_h"], ["h"]),
        helper.make_node("Gather", ["shape", "idx_w"], ["w"]),
        helper.make_node("Concat", ["w", "h", "w", "h"], ["whwh_i"], axis=0),
        helper.make_node("Cast", ["whwh_i"], ["whwh"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["box_fractions", "whwh"], [OUTPUT_BOXES]),
        helper.make_node("ReduceMean", [INPUT_RGB], ["mean_rgb"], keepdims=0),
        helper.make_node("Mul", ["mean_rgb", "half"], ["mean_half"]),
        helper.make_node("Add", ["mean_half", "half"], ["factor"]),
        helper.make_node("Mul", ["base_scores", "factor"], [OUTPUT_SCORES]),
        helper.make_node("Identity", ["const_labels"], [OUTPUT_LABELS]),
        helper.make_node("Identity", ["const_visible"], [OUTPUT_VISIBLE_MASKS]),
        helper.make_node("Identity", ["const_amodal"], [OUTPUT_AMODAL_MASKS]),
        # depth enters the graph (as in a real model) without changing the constant occlusion
        helper.make_node("ReduceMax", [INPUT_DEPTH], ["max_depth"], keepdims=0),
        helper.make_node("Mul", ["max_depth", "half"], ["depth_zero_a"]),
        helper.make_node("Sub", ["depth_zero_a", "depth_zero_a"], ["depth_zero"]),
        helper.make_node("Add", ["const_occlusion", "depth_zero"], [OUTPUT_OCCLUSION]),
    ]
    m = ROI_MASK_SIZE
    graph = helper.make_graph(
        nodes,
        "mtl_grasp_contract_test_model",
        [
            helper.make_tensor_value_info(INPUT_RGB, TensorProto.FLOAT, [1, 3, "H", "W"]),
            helper.make_tensor_value_info(INPUT_DEPTH, TensorProto.FLOAT, [1, 1, "H", "W"]),
        ],
        [
            helper.make_tensor_value_info(OUTPUT_BOXES, TensorProto.FLOAT, [n, 4]),
            helper.make_tensor_value_info(OUTPUT_SCORES, TensorProto.FLOAT, [n]),
            helper.make_tensor_value_info(OUTPUT_LABELS, TensorProto.INT64, [n]),
            helper.make_tensor_value_info(OUTPUT_VISIBLE_MASKS, TensorProto.FLOAT, [n, m, m]),
            helper.make_tensor_value_info(OUTPUT_AMODAL_MASKS, TensorProto.FLOAT, [n, m, m]),
            helper.make_tensor_value_info(OUTPUT_OCCLUSION, TensorProto.FLOAT, [n]),
        ],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="mtl_grasp")
    model.ir_version = 8
    meta = metadata or ModelMetadata(train_image_size=64, config_hash="synthetic-contract-model")
    helper.set_model_props(model, meta.to_dict())
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path


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


def run(args: argparse.Namespace) -> int:
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from mtl_grasp.ros.domain import localhost_only, reserved_domain_id
    from mtl_grasp.ros.images import array_to_image
    from mtl_grasp.ros.parameters import default_params_file
    from mtl_grasp.ros.perception_node import PerceptionNode
    from mtl_grasp.runtime import Detector

    for name in ("instances", "width", "height", "frames"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name}: expected a positive integer, got {getattr(args, name)}")
    tmp = tempfile.TemporaryDirectory()
    model = args.model or str(write_contract_model(Path(tmp.name) / "contract.onnx", args.instances))
    h, w = args.height, args.width
    frames = [_frame(h, w, s) for s in range(4)]

    localhost_only()
    with reserved_domain_id() as domain:
        ctx = rclpy.Context()
        rclpy.init(context=ctx, domain_id=domain)
        try:
            node = PerceptionNode(
                context=ctx,
                cli_args=["--ros-args", "--params-file", str(default_params_file())],
                parameter_overrides=[
                    rclpy.parameter.Parameter("model_path", value=model),
                    rclpy.parameter.Parameter("providers", value=[args.providers]),
                    rclpy.parameter.Parameter("score_threshold", value=0.05),
                ],
            )
            if not node.autostart():
                raise SystemExit(f"node did not start: {node.failure_reason}")
            det: Detector = node.detector
            print(f"model: {model}\nproviders: {node.provider}\nframe: {w}x{h}, timed frames: {args.frames}")
            listener = rclpy.create_node("bench_listener", context=ctx)
            from sensor_msgs.msg import CameraInfo, Image
            from visualization_msgs.msg import MarkerArray

            from mtl_grasp_msgs.msg import InstanceArray

            qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
            msgs = []
            for i, (rgb, depth) in enumerate(frames):
                r = array_to_image(rgb, "rgb8")
                d = array_to_image(depth, "32FC1")
                r.header.stamp.sec = d.header.stamp.sec = i + 1
                r.header.frame_id = d.header.frame_id = "camera_color_optical_frame"
                msgs.append((r, d))

            def time_runtime() -> list[float]:
                out = []
                for i in range(args.warmup + args.frames):
                    rgb, depth = frames[i % len(frames)]
                    t = time.perf_counter()
                    det(rgb, depth)
                    if i >= args.warmup:
                        out.append(time.perf_counter() - t)
                return out

            def time_node() -> tuple[list[float], list[float], list[float], int]:
                """Wall time of node.process, wall time of the detector inside it, and the node's
                CPU-time overhead (thread CPU time of node.process minus that of a detector call on
                the same frame): the latter is robust to other processes competing for the cores."""
                total, inner, cpu_over = [], [], []
                for i in range(args.warmup + args.frames):
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
                    if i >= args.warmup:
                        total.append(dt)
                        inner.append(float(node.stats.last_inference_s))
                        cpu_over.append((c1 - c0) - (c2 - c1))
                n_inst = len(det(*frames[0]).scores)
                return total, inner, cpu_over, n_inst

            def report(title: str, total: list[float], inner: list[float], cpu_over: list[float]) -> None:
                print(f"{title}: total {_pct(total)}")
                wall_over = [a - b for a, b in zip(total, inner)]
                print(f"  node overhead, wall (total - runtime):   {_pct(wall_over)}")
                print(f"  node overhead, thread CPU time:          {_pct(cpu_over)}")

            rt = time_runtime()
            print(f"runtime alone (Detector call):           {_pct(rt)}")
            total, inner, cpu_over, n_inst = time_node()
            report(f"node, instances only ({n_inst} instances)", total, inner, cpu_over)
            topics = {
                "overlay": Image,
                "visible_labels": Image,
                "instances": InstanceArray,
                "markers": MarkerArray,
            }
            subs = [
                listener.create_subscription(t, f"/perception_node/{name}", lambda m: None, qos)
                for name, t in topics.items()
            ]
            info = CameraInfo(height=h, width=w)
            info.k = [500.0, 0.0, w / 2, 0.0, 500.0, h / 2, 0.0, 0.0, 1.0]
            node._on_camera_info(info)  # so the markers are built too (worst case)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and node._pubs["overlay"].get_subscription_count() == 0:
                time.sleep(0.05)
            total2, inner2, cpu_over2, _ = time_node()
            report("node, all views subscribed (overlay, labels, markers)", total2, inner2, cpu_over2)
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
            print(
                f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
                f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, 1-min load average {load:.1f}"
            )
            del subs
            listener.destroy_node()
            node._stop_processing()
            node.destroy_node()
        finally:
            rclpy.try_shutdown(context=ctx)
    tmp.cleanup()
    return 0
