"""Test helpers: the perception node as a separate process, a test peer on the same DDS domain, and
busy processes that load every core. Real DDS, real onnxruntime; nothing is mocked."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from mtl_grasp.ros.images import array_to_image
from mtl_grasp_msgs.msg import InstanceArray

REPO = Path(__file__).resolve().parents[1]
SHM = Path("/dev/shm")
PROFILE_SEGMENT_BYTES = 32 * 2**20  # config/fastdds_shm.xml (Fast DDS's default segment is 512 KB)


def _mapped_segments() -> set[str]:
    """/dev/shm files mapped by any live process (a segment still in use is not a leak)."""
    mapped: set[str] = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        try:
            text = maps.read_text()
        except OSError:  # the process ended, or is not ours to read
            continue
        mapped.update(line.split()[-1] for line in text.splitlines() if "/dev/shm/fastdds_" in line)
    return mapped


def large_segments(since: float) -> list[Path]:
    """Shared-memory files of the profile's size, modified since `since` (epoch seconds), that no live
    process maps: left behind by a process that ended without finalising its DDS participant."""
    found = []
    for f in SHM.glob("fastdds_*"):
        try:
            st = f.stat()
        except FileNotFoundError:
            continue
        if st.st_size >= PROFILE_SEGMENT_BYTES and st.st_mtime >= since:
            found.append(f)
    if found:
        mapped = _mapped_segments()
        found = [f for f in found if str(f) not in mapped]
    return found


@pytest.fixture
def no_leaked_segments():
    """Fails a test after which a 32 MiB Fast DDS segment created during it is still in /dev/shm
    (a process of the test ended without finalising its DDS participant); removes such segments."""
    if not SHM.is_dir():
        pytest.skip("no /dev/shm")
    start = time.time() - 1
    yield
    leaked = large_segments(start)
    for f in leaked:  # clean up whatever the outcome, then report
        f.unlink(missing_ok=True)
        Path(f"{f}_el").unlink(missing_ok=True)
    assert not leaked, f"shared-memory segments left in /dev/shm: {leaked}"
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def node_env(domain: int, **extra: str) -> dict[str, str]:
    env = dict(
        os.environ,
        ROS_DOMAIN_ID=str(domain),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def start_node(
    domain: int, model: Path, tmp: Path, env: dict[str, str] | None = None, extra_params: str = ""
) -> subprocess.Popen:
    """`python -m mtl_grasp.ros.perception_node` named /detector, inputs remapped to /cam/color and
    /cam/depth; stdout+stderr to a file in `tmp` (read it with `output(proc)`). `extra_params`: more
    YAML lines of the ros__parameters section (4-space indented)."""
    params = tmp / "site.yaml"
    params.write_text(
        "/**:\n  ros__parameters:\n"
        f"    model_path: '{model}'\n    providers: ['cpu']\n    score_threshold: 0.3\n"
        "    inference_size: 0\n"  # camera resolution: the test frames reach the model unresized
        + extra_params
    )
    cmd = [
        sys.executable, "-m", "mtl_grasp.ros.perception_node", "--ros-args", "--params-file", str(params),
        "-r", "rgb/image:=/cam/color", "-r", "depth/image:=/cam/depth", "-r", "__node:=detector",
    ]
    log = open(tmp / f"node-{time.monotonic_ns()}.log", "w+")  # noqa: SIM115 - closed by output()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env or node_env(domain), stdout=log, stderr=subprocess.STDOUT)
    proc.log = log  # type: ignore[attr-defined]
    return proc


def output(proc: subprocess.Popen) -> str:
    proc.log.flush()  # type: ignore[attr-defined]
    proc.log.seek(0)  # type: ignore[attr-defined]
    return proc.log.read()  # type: ignore[attr-defined]


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)
    proc.log.close()  # type: ignore[attr-defined]


class Peer:
    """Camera publisher, output and diagnostics listener on `domain` (one rclpy context)."""

    def __init__(self, domain: int, reliability: ReliabilityPolicy = ReliabilityPolicy.RELIABLE) -> None:
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=domain)
        self.node = rclpy.create_node("test_peer", context=self.ctx)
        qos = QoSProfile(depth=5, reliability=reliability)
        self.rgb_pub = self.node.create_publisher(Image, "/cam/color", qos)
        self.depth_pub = self.node.create_publisher(Image, "/cam/depth", qos)
        self.outputs: list[InstanceArray] = []
        self.diagnostics: list[dict[str, str]] = []
        self.node.create_subscription(InstanceArray, "/detector/instances", self.outputs.append, RELIABLE)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, RELIABLE)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self.stamp = 0

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if "/detector" in status.name:
                self.diagnostics.append({kv.key: kv.value for kv in status.values} | {"_msg": status.message})

    def spin_until(self, cond, timeout: float, proc: subprocess.Popen | None = None) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return True
            if proc is not None and proc.poll() is not None:
                return bool(cond())
            self.executor.spin_once(timeout_sec=0.05)
        return bool(cond())

    def wait_for_node(self, proc: subprocess.Popen, timeout: float = 90.0) -> None:
        """Until the node subscribes to both inputs (it is active) and its instances reach us."""
        ok = self.spin_until(
            lambda: self.rgb_pub.get_subscription_count() >= 1
            and self.depth_pub.get_subscription_count() >= 1
            and self.node.count_publishers("/detector/instances") >= 1,
            timeout,
            proc,
        )
        assert ok, f"node did not become active; rc={proc.poll()}\n{output(proc)}"

    def send(self, rgb: np.ndarray, depth: np.ndarray) -> None:
        self.stamp += 1
        rgb_msg, depth_msg = array_to_image(rgb, "rgb8"), array_to_image(depth, "32FC1")
        for msg, pub in ((rgb_msg, self.rgb_pub), (depth_msg, self.depth_pub)):
            msg.header.stamp.sec = 1000 + self.stamp
            msg.header.frame_id = "camera_color_optical_frame"
            pub.publish(msg)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)


class CpuLoad:
    """One busy Python process per core while the context is open."""

    def __enter__(self) -> CpuLoad:
        code = "import time\nwhile True:\n    pass"
        self.procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(os.cpu_count() or 1)]
        time.sleep(0.3)  # let them reach the run queue
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait(timeout=30)


def frame(height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
        rng.uniform(0.5, 0.8, (height, width)).astype(np.float32),
    )
