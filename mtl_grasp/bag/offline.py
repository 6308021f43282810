"""`perception_offline`: run the perception node's per-frame path over a rosbag2, without ROS.

    perception_offline --bag cell.mcap_dir --out results --model model.onnx [--params-file site.yaml]
    perception_offline --dataset data/synth --out camera_bag            # a MetaGraspNet folder as a bag

Reads the RGB, depth and camera_info topics of a bag (mcap or sqlite3, any rosbag2 version rosbags
reads), pairs RGB and depth by header stamp exactly like the node (mtl_grasp.ros.sync, same `slop` and
`sync_queue_size`), converts and runs the Detector with the same parameters file as the node
(config/perception.yaml, then --params-file, then -p NAME=VALUE) and writes InstanceArray (with the 3-D
fields), the overlay image and the PoseArray of pick candidates into a new bag, each message stamped
with its input RGB header and logged at the log time of the message that completed its pair. Unlike
the node, every pair is processed (no real-time deadline, so no frame is dropped for being busy).
Needs rosbags, numpy, opencv and onnxruntime only: no rclpy, no torch. A summary (frames, pairs,
drops, latency, problems) is printed at the end; exit code 0 when at least one frame was processed,
1 when none could be (the summary says why: missing topics, nothing paired, only bad frames), 2 for
bad arguments.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtl_grasp.bag.types import STORAGES, BagTypes, open_writer
from mtl_grasp.ros import parameters as P
from mtl_grasp.ros.messages import IMAGE, INSTANCE_ARRAY, POSE_ARRAY
from mtl_grasp.ros.pipeline import FramePipeline
from mtl_grasp.ros.sync import DEPTH, RGB, PairSynchronizer, stamp_to_ns

DEFAULT_TOPICS = {
    "rgb": "/camera/rgb/image", "depth": "/camera/depth/image", "info": "/camera/rgb/camera_info"
}
OUTPUT_NS = "/perception_node"
MAX_PROBLEMS = 5


@dataclass
class Summary:
    """What an offline run read, paired, processed and dropped; latencies in milliseconds."""

    messages: dict[str, int] = field(default_factory=dict)  # per input topic
    pairs: int = 0
    processed: int = 0
    bad_frames: int = 0
    dropped_unpaired: dict[str, int] = field(default_factory=lambda: {"rgb": 0, "depth": 0})
    # stamps older than the newest one of the same stream before them (the pairing drops them)
    out_of_order: dict[str, int] = field(default_factory=lambda: {"rgb": 0, "depth": 0})
    camera_info: int = 0
    frames_without_3d: int = 0
    latency_ms: list[float] = field(default_factory=list)
    inference_ms: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    output: str = ""

    def format(self) -> str:
        def pct(v: list[float]) -> str:
            return f"p50 {np.percentile(v, 50):.1f} ms, p95 {np.percentile(v, 95):.1f} ms" if v else "n/a"

        lines = [
            "perception_offline summary",
            "  messages read: " + ", ".join(f"{t} {n}" for t, n in self.messages.items()),
            f"  pairs: {self.pairs}, processed: {self.processed}, bad frames: {self.bad_frames}",
            "  dropped unpaired: " + ", ".join(f"{k} {v}" for k, v in self.dropped_unpaired.items()),
            "  out-of-order stamps: " + ", ".join(f"{k} {v}" for k, v in self.out_of_order.items()),
            f"  frames without 3-D candidates (no usable camera_info): {self.frames_without_3d}",
            f"  latency per frame: {pct(self.latency_ms)}; inference: {pct(self.inference_ms)}",
        ]
        lines += [f"  problem: {p}" for p in self.problems]
        if self.output:
            lines.append(f"  output: {self.output}")
        return "\n".join(lines)


class OutputBag:
    """The output bag: instances, overlay and candidates under `namespace`."""

    def __init__(self, path: Path, storage: str, types: BagTypes, namespace: str = OUTPUT_NS) -> None:
        self.types = types
        self.writer = open_writer(path, storage)
        ns = namespace.rstrip("/")
        self.topics = {"instances": (INSTANCE_ARRAY, f"{ns}/instances"), "overlay": (IMAGE, f"{ns}/overlay"),
                       "candidates": (POSE_ARRAY, f"{ns}/candidates")}
        self.connections = {
            key: self.writer.add_connection(topic, typename, typestore=types.store)
            for key, (typename, topic) in self.topics.items()
        }

    def write(self, key: str, msg: Any, log_time_ns: int) -> None:
        typename = self.topics[key][0]
        self.writer.write(self.connections[key], log_time_ns, self.types.serialize(msg, typename))

    def close(self) -> None:
        self.writer.close()


def _connections(reader: Any, topics: dict[str, str], summary: Summary) -> dict[str, Any] | None:
    """The input connections by role; None (with the problem in the summary) when RGB or depth is absent."""
    by_topic = {c.topic: c for c in reader.connections if c.msgcount > 0}
    found, expected = {}, {"rgb": IMAGE, "depth": IMAGE, "info": "sensor_msgs/msg/CameraInfo"}
    for role, topic in topics.items():
        conn = by_topic.get(topic)
        if conn is None:
            what = "required" if role != "info" else "optional: no 3-D candidates without it"
            summary.problems.append(
                f"topic {topic!r} ({role}, {what}) has no messages in the bag; topics with messages: "
                f"{sorted(by_topic)}"
            )
        elif conn.msgtype != expected[role]:
            summary.problems.append(f"topic {topic!r} is {conn.msgtype}, expected {expected[role]}")
        else:
            found[role] = conn
    return found if "rgb" in found and "depth" in found else None


class _Run:
    """State of one offline run: synchroniser, pipeline, counters."""

    def __init__(self, params: dict[str, Any], detector: Any, types: BagTypes, out: OutputBag) -> None:
        self.params, self.types, self.out = params, types, out
        self.sync: PairSynchronizer[tuple[Any, int]] = PairSynchronizer(
            params["slop"], params["sync_queue_size"]
        )
        self.pipeline = FramePipeline(detector, params.__getitem__, types.new)
        self.camera_info: Any = None
        self.last_stamp: dict[str, int] = {}
        self.summary = Summary()

    def on_message(self, role: str, topic: str, msg: Any, log_time: int) -> None:
        s = self.summary
        s.messages[topic] = s.messages.get(topic, 0) + 1
        if role == "info":
            self.camera_info = msg
            s.camera_info += 1
            return
        stamp = stamp_to_ns(msg.header.stamp)
        if stamp < self.last_stamp.get(role, -1):
            s.out_of_order[role] += 1
        self.last_stamp[role] = max(stamp, self.last_stamp.get(role, -1))
        try:
            pair = self.sync.add(RGB if role == "rgb" else DEPTH, stamp, (msg, log_time))
        except ValueError as exc:
            self._problem(str(exc))
            return
        if pair is not None:  # logged when the pair completed, as the node would publish it
            self.process(pair.rgb[0], pair.depth[0], log_time)

    def process(self, rgb_msg: Any, depth_msg: Any, log_time: int) -> None:
        t = time.perf_counter()
        try:
            frame = self.pipeline.run(rgb_msg, depth_msg, self.camera_info)
            self.out.write("instances", self.pipeline.instances(frame), log_time)
            self.out.write("overlay", self.pipeline.overlay(frame), log_time)
            self.out.write("candidates", self.pipeline.candidates(frame), log_time)
        except Exception as exc:  # noqa: BLE001 - a bad frame is counted and reported, never fatal
            self.summary.bad_frames += 1
            self._problem(f"frame {stamp_to_ns(rgb_msg.header.stamp)} skipped: {exc}")
            return
        self.summary.processed += 1
        self.summary.frames_without_3d += frame.geometry.intrinsics is None
        self.summary.latency_ms.append((time.perf_counter() - t) * 1e3)
        self.summary.inference_ms.append(frame.inference_s * 1e3)

    def _problem(self, text: str) -> None:
        if len(self.summary.problems) < MAX_PROBLEMS:
            self.summary.problems.append(text)

    def finish(self) -> Summary:
        st, s = self.sync.stats, self.summary
        s.pairs = st.pairs
        pending = self.sync.pending()  # never paired: dropped at the end of the bag
        s.dropped_unpaired = {
            "rgb": st.dropped_rgb + pending[RGB], "depth": st.dropped_depth + pending[DEPTH]
        }
        if st.pairs == 0 and (st.received_rgb or st.received_depth):
            s.problems.append(
                f"no rgb/depth pair within slop {self.sync.slop_s:.3f} s ({st.received_rgb} rgb, "
                f"{st.received_depth} depth): check the topics, the stamps and the slop parameter"
            )
        return s


def run_offline(
    bag: str | Path,
    out: str | Path,
    params: dict[str, Any],
    topics: dict[str, str] | None = None,
    storage: str = "mcap",
    detector: Any = None,
    progress: bool = False,
) -> Summary:
    """Process `bag` into the new bag `out`; see the module docstring. `params` from
    `mtl_grasp.ros.parameters.load_parameter_files`; `detector` defaults to one built from them."""
    from rosbags.rosbag2 import Reader

    if storage not in STORAGES:
        raise ValueError(f"storage: expected one of {list(STORAGES)}, got {storage!r}")
    topics = {**DEFAULT_TOPICS, **(topics or {})}
    types = BagTypes()
    summary = Summary()
    with Reader(bag) as reader:
        conns = _connections(reader, topics, summary)
        if conns is None:
            return summary
        if detector is None:
            from mtl_grasp.runtime import Detector

            detector = Detector(**P.detector_kwargs(params.__getitem__))
        out_bag = OutputBag(Path(out), storage, types)
        run = _Run(params, detector, types, out_bag)
        run.summary.problems = summary.problems
        roles = {c.id: role for role, c in conns.items()}
        try:
            for conn, log_time, raw in _progress(reader.messages(connections=list(conns.values())),
                                                 sum(c.msgcount for c in conns.values()), progress):
                run.on_message(roles[conn.id], conn.topic, types.deserialize(raw, conn.msgtype), log_time)
        finally:
            out_bag.close()
        summary = run.finish()
        summary.output = f"{out} ({storage}): {summary.processed} x instances, overlay, candidates"
    return summary


def _progress(items: Any, total: int, enabled: bool) -> Any:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, unit="msg", desc="perception_offline")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="perception_offline",
        description="Run mtl_grasp's perception over a rosbag2 (mcap or sqlite3) without ROS, or write a "
        "MetaGraspNet-format folder as a camera bag. See docs/ros.md, 'Bags'.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--bag", help="input rosbag2 folder with RGB, depth and (optional) camera_info topics")
    src.add_argument("--dataset", help="MetaGraspNet-format folder to write as a camera bag (no model)")
    p.add_argument("--out", required=True, help="output bag folder (must not exist)")
    p.add_argument("--storage", choices=STORAGES, default="mcap", help="output storage (default mcap)")
    p.add_argument("--model", help="exported ONNX model (else model_path of the parameters)")
    p.add_argument("--params-file", action="append", default=[], help="ROS 2 parameter file (repeatable)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="override one parameter (YAML value), e.g. -p score_threshold=0.3")
    p.add_argument("--rgb-topic", default=DEFAULT_TOPICS["rgb"])
    p.add_argument("--depth-topic", default=DEFAULT_TOPICS["depth"])
    p.add_argument("--camera-info-topic", default=DEFAULT_TOPICS["info"])
    p.add_argument("--rate", type=float, default=5.0, help="--dataset: frames per second of the bag")
    p.add_argument("--depth-encoding", choices=("32FC1", "16UC1"), default="32FC1", help="--dataset")
    p.add_argument("--evaluate", metavar="DATASET",
                   help="--bag made with --dataset DATASET: score the output against its ground truth")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _overrides(items: Sequence[str], model: str | None) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--param: expected NAME=VALUE, got {item!r}")
        out[name.strip()] = yaml.safe_load(value)
    if model:
        out["model_path"] = model
    return out


def _topics(args: argparse.Namespace) -> dict[str, str]:
    return {"rgb": args.rgb_topic, "depth": args.depth_topic, "info": args.camera_info_topic}


def _guarded(fn: Callable[[], int]) -> int:
    from rosbags.rosbag2 import ReaderError, WriterError

    try:
        return fn()
    except (ValueError, FileNotFoundError, ReaderError, WriterError) as exc:
        print(f"perception_offline: {exc}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry `perception_offline` (see the module docstring)."""
    args = build_parser().parse_args(argv)

    def go() -> int:
        if args.dataset:
            from mtl_grasp.bag.dataset import write_dataset_bag

            n = write_dataset_bag(args.dataset, args.out, _topics(args), args.rate, args.storage,
                                  args.depth_encoding)
            print(f"perception_offline: wrote {n} frame(s) of {args.dataset} to {args.out} ({args.storage})")
            return 0
        params = P.load_parameter_files(args.params_file, _overrides(args.param, args.model))
        summary = run_offline(args.bag, args.out, params, _topics(args), args.storage,
                              progress=not args.no_progress)
        print(summary.format())
        if args.evaluate and summary.processed:
            from mtl_grasp.bag.dataset import evaluate_bag

            for key, value in evaluate_bag(args.out, args.bag, args.evaluate).items():
                print(f"  {key:20s} {value:.4f}")
        return 0 if summary.processed else 1

    return _guarded(go)


if __name__ == "__main__":
    sys.exit(main())
