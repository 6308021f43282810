"""The perception node over real DDS (Fast DDS from the PyPI ROS wheels), no mocks.

Each test gets its own rclpy Context on a domain id reserved with the socket-lock scheme
(mtl_grasp.ros.domain), with discovery limited to localhost, so tests can run in parallel. Images
are 64x48 to stay far below Fast DDS's shared-memory segment size. The model is a real ONNX file that
honours mtl_grasp/contract.py, run by the real mtl_grasp.runtime.Detector.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("mtl_grasp_msgs.msg")
pytest.importorskip("onnx")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import PoseArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from ros_process import no_leaked_segments  # noqa: E402,F401 - fixture
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from visualization_msgs.msg import MarkerArray  # noqa: E402

from mtl_grasp.ros.domain import localhost_only, reserved_domain_id  # noqa: E402
from mtl_grasp.ros.images import array_to_image, image_to_array  # noqa: E402
from mtl_grasp.ros.instances import instance_masks  # noqa: E402
from mtl_grasp.ros.parameters import default_params_file  # noqa: E402
from mtl_grasp.ros.perception_node import PerceptionNode  # noqa: E402
from mtl_grasp.runtime import Detector  # noqa: E402
from mtl_grasp_msgs.msg import InstanceArray  # noqa: E402
from training.contract_model import write_contract_model  # noqa: E402

pytestmark = pytest.mark.ros
H, W = 48, 64
FRAME = "camera_color_optical_frame"
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
REPO = Path(__file__).resolve().parents[1]

localhost_only()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return write_contract_model(tmp_path_factory.mktemp("model") / "contract.onnx", n=6)


@pytest.fixture
def domain():
    with reserved_domain_id() as domain_id:
        yield domain_id


@pytest.fixture
def ctx(domain):
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    yield context
    rclpy.try_shutdown(context=context)


def _frame(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    depth = rng.uniform(0.5, 0.8, (H, W)).astype(np.float32)
    return rgb, depth


class Harness:
    """A node under test plus a 'camera' publisher and an output listener, in one executor."""

    def __init__(self, ctx, model: Path | str, overrides: dict | None = None, namespace: str = "") -> None:
        params = {"model_path": str(model), "providers": ["cpu"], "score_threshold": 0.3}
        params.update(overrides or {})
        self.node = PerceptionNode(
            context=ctx,
            namespace=namespace,
            cli_args=["--ros-args", "--params-file", str(default_params_file())],
            parameter_overrides=[Parameter(k, value=v) for k, v in params.items()],
        )
        self.peer = rclpy.create_node("test_peer", context=ctx)
        ns = namespace.rstrip("/")
        self.rgb_pub = self.peer.create_publisher(Image, f"{ns}/rgb/image", RELIABLE)
        self.depth_pub = self.peer.create_publisher(Image, f"{ns}/depth/image", RELIABLE)
        self.info_pub = self.peer.create_publisher(CameraInfo, f"{ns}/rgb/camera_info", RELIABLE)
        self.received: dict[str, list] = {
            "instances": [], "overlay": [], "markers": [], "visible_labels": [], "candidates": []
        }
        self.diagnostics: list[DiagnosticArray] = []
        out = f"{ns}/perception_node"
        types = {
            "instances": InstanceArray,
            "overlay": Image,
            "markers": MarkerArray,
            "visible_labels": Image,
            "candidates": PoseArray,
        }
        for name, t in types.items():
            self.peer.create_subscription(t, f"{out}/{name}", self.received[name].append, RELIABLE)
        self.peer.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, RELIABLE)
        self.executor = SingleThreadedExecutor(context=ctx)
        self.executor.add_node(self.node)
        self.executor.add_node(self.peer)
        self.stamp = 0

    def spin_until(self, cond, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)
            if cond():
                return True
        return bool(cond())

    def start(self) -> None:
        assert self.node.autostart(), self.node.failure_reason
        ok = self.spin_until(
            lambda: (
                self.rgb_pub.get_subscription_count() >= 1
                and self.depth_pub.get_subscription_count() >= 1
                and self.node._pubs["instances"].get_subscription_count() >= 1
                and self.node._pubs["overlay"].get_subscription_count() >= 1
            ),
            timeout=30.0,
        )
        assert ok, "discovery between the test peer and the node did not complete"

    def send(self, rgb_msg: Image, depth_msg: Image | None, info: CameraInfo | None = None) -> int:
        """Publish one pair with a fresh stamp (same for both); return the stamp in ns."""
        self.stamp += 1
        for msg in (rgb_msg, depth_msg, info):
            if msg is not None:
                msg.header.stamp.sec, msg.header.stamp.nanosec = 1000 + self.stamp, 500
                msg.header.frame_id = FRAME
        if info is not None:
            self.info_pub.publish(info)
        self.rgb_pub.publish(rgb_msg)
        if depth_msg is not None:
            self.depth_pub.publish(depth_msg)
        return (1000 + self.stamp) * 1_000_000_000 + 500

    def send_depth(self, depth_msg: Image) -> None:
        """Publish a depth frame alone (its own stamp), e.g. to starve the rgb stream."""
        self.stamp += 1
        depth_msg.header.stamp.sec, depth_msg.header.stamp.nanosec = 1000 + self.stamp, 500
        depth_msg.header.frame_id = FRAME
        self.depth_pub.publish(depth_msg)

    def result_for(self, stamp_ns: int, topic: str = "instances"):
        for msg in self.received[topic]:
            header = msg.markers[0].header if isinstance(msg, MarkerArray) else msg.header
            if header.stamp.sec * 1_000_000_000 + header.stamp.nanosec == stamp_ns:
                return msg
        return None

    def roundtrip(self, rgb_msg, depth_msg, info=None, topics=("instances",), attempts: int = 5):
        """Send until the node answers (best-effort inputs may lose a sample); return the outputs."""
        for _ in range(attempts):
            stamp = self.send(rgb_msg, depth_msg, info)
            if self.spin_until(lambda s=stamp: all(self.result_for(s, t) for t in topics), timeout=3.0):
                return [self.result_for(stamp, t) for t in topics]
        raise AssertionError(f"no {topics} output; node stats: last_error={self.node.stats.last_error!r}")

    def close(self) -> None:
        self.executor.shutdown()
        self.node._stop_processing()
        self.node.destroy_node()
        self.peer.destroy_node()


@pytest.fixture
def harness(ctx, model_path):
    h = Harness(ctx, model_path)
    h.start()
    yield h
    h.close()


def _camera_info() -> CameraInfo:
    info = CameraInfo(height=H, width=W)
    info.k = [60.0, 0.0, W / 2, 0.0, 60.0, H / 2, 0.0, 0.0, 1.0]
    return info


def _assert_same_as_detector(msg: InstanceArray, det) -> None:
    assert len(msg.instances) == len(det.scores) > 0
    for k, inst in enumerate(msg.instances):
        np.testing.assert_allclose(inst.amodal_box, det.boxes[k], rtol=1e-6)
        assert inst.score == pytest.approx(float(det.scores[k]), rel=1e-6)
        assert inst.class_id == int(det.labels[k]) and inst.class_name == det.class_names[det.labels[k] - 1]
        assert inst.occlusion_probability == pytest.approx(float(det.occlusion[k]))
        assert inst.occluded == bool(det.occlusion[k] >= 0.5)
        vis, amo = instance_masks(inst, H, W)
        np.testing.assert_array_equal(vis, det.visible_masks[k])
        np.testing.assert_array_equal(amo, det.amodal_masks[k])


def test_outputs_equal_the_detector_and_carry_the_input_header(harness, model_path):
    rgb, depth = _frame(0)
    outputs = harness.roundtrip(
        array_to_image(rgb, "rgb8"),
        array_to_image(depth, "32FC1"),
        _camera_info(),
        topics=("instances", "overlay", "visible_labels", "markers"),
    )
    instances, overlay, labels, markers = outputs
    expected = Detector(model_path, providers="cpu", score_threshold=0.3)(rgb, depth)
    _assert_same_as_detector(instances, expected)
    stamp = instances.header.stamp
    for msg in (overlay, labels):
        assert msg.header.frame_id == FRAME and msg.header.stamp == stamp
    assert all(m.header.frame_id == FRAME and m.header.stamp == stamp for m in markers.markers)
    assert instances.header.frame_id == FRAME and (instances.image_height, instances.image_width) == (H, W)
    assert overlay.encoding == "rgb8" and (overlay.height, overlay.width) == (H, W)
    assert not np.array_equal(image_to_array(overlay), rgb)  # something was drawn
    lab = image_to_array(labels)
    assert labels.encoding == "mono16" and lab.dtype == np.uint16
    assert set(np.unique(lab)) <= set(range(len(instances.instances) + 1))
    assert (lab > 0).sum() > 0
    # DELETEALL, a box and a text per instance, an arrow and a text per pick candidate
    assert len(instances.pick_order) == len(instances.instances) and instances.camera_info_valid
    assert len(markers.markers) == 1 + 2 * len(instances.instances) + 2 * len(instances.pick_order)


def _plane_frame(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random RGB over a depth image of a plane tilted about x (0.6 m at the image centre)."""
    rgb, _ = _frame(seed)
    v = np.arange(H, dtype=np.float32)[:, None]
    depth = np.broadcast_to(0.6 + (v - (H - 1) / 2) * 0.002, (H, W)).astype(np.float32).copy()
    depth[::7, ::5] = np.nan  # holes
    return rgb, depth


def test_3d_candidates_with_camera_info(harness, model_path):
    from mtl_grasp.geometry import Intrinsics
    from mtl_grasp.ros.candidates import frame_geometry
    from mtl_grasp.ros.instances import mask_boxes

    rgb, depth = _plane_frame(5)
    info = _camera_info()
    instances, candidates = harness.roundtrip(
        array_to_image(rgb, "rgb8"), array_to_image(depth, "32FC1"), info, topics=("instances", "candidates")
    )
    det = Detector(model_path, providers="cpu", score_threshold=0.3)(rgb, depth)
    n = len(det.scores)
    clean = np.nan_to_num(depth)
    geometry = frame_geometry(det, n, clean, Intrinsics.from_k(info.k, W, H), mask_boxes(det, n), 0.5)
    assert instances.camera_info_valid and [i - 1 for i in instances.pick_order] == geometry.order
    assert len(candidates.poses) == len(geometry.order) > 0 and candidates.header == instances.header
    for rank, (pose, index) in enumerate(zip(candidates.poses, geometry.order), start=1):
        inst, p = instances.instances[index], geometry.points[index]
        assert inst.pick_rank == rank and inst.position_valid and inst.normal_valid
        got = [inst.position.x, inst.position.y, inst.position.z]
        assert got == pytest.approx(p.position.tolist(), abs=1e-6)
        assert [pose.position.x, pose.position.y, pose.position.z] == pytest.approx(got, abs=1e-6)
        assert [inst.normal.x, inst.normal.y, inst.normal.z] == pytest.approx(p.normal.tolist(), abs=1e-6)
        assert 0.7 < inst.valid_depth_fraction < 1.0  # the holes
    occluded = [instances.instances[i].occluded for i in geometry.order]
    assert occluded == sorted(occluded)  # unoccluded first


def test_without_camera_info_3d_fields_are_invalid_never_invented(harness):
    rgb, depth = _plane_frame(6)
    instances, candidates = harness.roundtrip(
        array_to_image(rgb, "rgb8"), array_to_image(depth, "32FC1"), topics=("instances", "candidates")
    )
    assert not instances.camera_info_valid and list(instances.pick_order) == [] and candidates.poses == []
    for inst in instances.instances:
        assert not inst.position_valid and not inst.normal_valid and inst.pick_rank == 0
        assert (inst.position.x, inst.position.y, inst.position.z) == (0.0, 0.0, 0.0)
        assert 0.7 < inst.valid_depth_fraction < 1.0  # depth alone still tells how much is valid


def test_every_encoding_gives_the_detector_output(harness, model_path):
    rgb, depth_m = _frame(1)
    mm = np.rint(depth_m * 1000).astype(np.uint16)
    detector = Detector(model_path, providers="cpu", score_threshold=0.3)
    gray = np.ascontiguousarray(rgb[:, :, 0])
    alpha = np.full((H, W, 1), 255, np.uint8)
    cases = {
        ("rgb8", "32FC1"): (array_to_image(rgb, "rgb8"), array_to_image(depth_m, "32FC1"), rgb),
        ("bgr8", "16UC1"): (array_to_image(rgb[:, :, ::-1].copy(), "bgr8"), array_to_image(mm, "16UC1"), rgb),
        ("bgra8", "mono16"): (
            array_to_image(np.concatenate([rgb[:, :, ::-1], alpha], axis=2), "bgra8"),
            array_to_image(mm, "mono16"),
            rgb,
        ),
        ("rgba8", "32FC1"): (
            array_to_image(np.concatenate([rgb, alpha], axis=2), "rgba8"),
            array_to_image(depth_m, "32FC1"),
            rgb,
        ),
        ("mono8", "16UC1"): (
            array_to_image(gray, "mono8"),
            array_to_image(mm, "16UC1"),
            np.dstack([gray] * 3),
        ),
    }
    for (enc_rgb, enc_depth), (rgb_msg, depth_msg, seen_rgb) in cases.items():
        (msg,) = harness.roundtrip(rgb_msg, depth_msg)
        expected = detector(seen_rgb, depth_m if enc_depth == "32FC1" else mm.astype(np.float32) / 1000)
        try:
            _assert_same_as_detector(msg, expected)
        except AssertionError as exc:
            raise AssertionError(f"rgb {enc_rgb}, depth {enc_depth}: {exc}") from exc
    assert harness.node.stats.bad_frames == 0


def _diag_values(h: Harness) -> dict[str, str]:
    status = h.diagnostics[-1].status[0]
    return {kv.key: kv.value for kv in status.values} | {"_level": status.level, "_message": status.message}


def _good_pair():
    rgb, depth = _frame(2)
    return array_to_image(rgb, "rgb8"), array_to_image(depth, "32FC1")


def _bad_cases():
    rgb, depth = _frame(3)
    nan_depth = np.full((H, W), np.nan, np.float32)
    return {
        "unsupported encoding": (
            array_to_image(rgb[:, :, :2].copy().reshape(H, W * 2), "mono8"),
            None,
            "yuv",
        ),
        "size mismatch": (
            array_to_image(rgb, "rgb8"),
            array_to_image(depth[: H // 2, : W // 2].copy(), "32FC1"),
            "size mismatch",
        ),
        "nan depth": (array_to_image(rgb, "rgb8"), array_to_image(nan_depth, "32FC1"), "depth"),
        "empty image": (Image(encoding="rgb8"), array_to_image(depth, "32FC1"), "empty image"),
    }


@pytest.mark.parametrize("case", ["unsupported encoding", "size mismatch", "nan depth", "empty image"])
def test_bad_input_is_reported_and_the_node_keeps_serving(harness, case):
    rgb_msg, depth_msg, match = _bad_cases()[case]
    if case == "unsupported encoding":
        rgb_msg.encoding = "yuv422"
        depth_msg = array_to_image(_frame(3)[1], "32FC1")
    errors_before = harness.node.stats.bad_frames
    harness.send(rgb_msg, depth_msg)
    assert harness.spin_until(lambda: harness.node.stats.bad_frames > errors_before, timeout=5)
    assert match in harness.node.stats.last_error
    n_diag = len(harness.diagnostics)
    assert harness.spin_until(lambda: len(harness.diagnostics) > n_diag, timeout=3)
    values = _diag_values(harness)
    assert values["_level"] == bytes([2]) and match in values["last_error"]
    (msg,) = harness.roundtrip(*_good_pair())  # the next good frame is served
    assert len(msg.instances) > 0 and harness.node.lifecycle_state == "active"


def test_unpaired_streams_are_reported(harness):
    rgb_msg, _ = _good_pair()
    for _ in range(4):
        harness.send(rgb_msg, None)
        harness.spin_until(lambda: False, timeout=0.3)
    assert harness.spin_until(lambda: "unpaired" in harness.node.stats.last_error, timeout=3)
    assert harness.spin_until(
        lambda: harness.diagnostics and "unpaired" in _diag_values(harness)["last_error"]
    )
    assert harness.node._sync.stats.pairs == 0 or harness.node._sync.stats.received_depth == 0
    (msg,) = harness.roundtrip(*_good_pair())
    assert len(msg.instances) > 0


def test_a_starving_stream_gives_a_warn_diagnostic_naming_it(harness):
    """Depth at ~20 Hz, rgb at a quarter of that (what large best-effort RGB frames across processes
    without the shared-memory profile look like): WARN, 'rgb starves', with both rates."""
    rgb_msg, depth_msg = _good_pair()
    for i in range(60):
        if i % 4 == 0:
            harness.send(rgb_msg, depth_msg)
        else:
            harness.send_depth(depth_msg)
        harness.spin_until(lambda: False, timeout=0.05)
    assert harness.spin_until(
        lambda: harness.diagnostics and "starves" in _diag_values(harness)["_message"], timeout=5
    )
    values = _diag_values(harness)
    assert values["_level"] == bytes([1]) and values["_message"].startswith("rgb starves")
    assert float(values["depth_hz"]) > 2 * float(values["rgb_hz"]) > 0


def test_missing_model_is_an_error_until_it_appears(ctx, tmp_path, model_path):
    target = tmp_path / "later.onnx"
    h = Harness(ctx, target)
    try:
        assert h.node.autostart(retry_period_s=0.2) is False
        assert h.node.lifecycle_state == "unconfigured"
        assert h.spin_until(lambda: len(h.diagnostics) > 0, timeout=5)
        values = _diag_values(h)
        assert values["_level"] == bytes([2]) and "no such file" in values["_message"]
        target.write_bytes(model_path.read_bytes())  # e.g. the export finished
        assert h.spin_until(lambda: h.node.lifecycle_state == "active", timeout=5)
        assert h.spin_until(lambda: h.rgb_pub.get_subscription_count() >= 1, timeout=10)
        assert h.spin_until(lambda: h.node._pubs["instances"].get_subscription_count() >= 1, timeout=10)
        (msg,) = h.roundtrip(*_good_pair())
        assert len(msg.instances) > 0
    finally:
        h.close()


def test_lifecycle_releases_the_model_and_reactivates(harness):
    node = harness.node
    assert node._detector is not None
    node.trigger_deactivate()
    assert node.lifecycle_state == "inactive" and node._detector is None and node._worker is None
    assert harness.spin_until(lambda: harness.rgb_pub.get_subscription_count() == 0, timeout=5)
    node.trigger_activate()
    assert node.lifecycle_state == "active" and node._detector is not None
    assert harness.spin_until(lambda: harness.rgb_pub.get_subscription_count() >= 1, timeout=10)
    (msg,) = harness.roundtrip(*_good_pair())
    assert len(msg.instances) > 0


def test_parameters_are_validated_and_applied_at_run_time(harness):
    node = harness.node
    res = node.set_parameters([Parameter("score_threshold", value=1.5)])[0]
    assert not res.successful and "1.0" in res.reason
    res = node.set_parameters([Parameter("depth_unit", value="cm")])[0]
    assert not res.successful and "depth_unit" in res.reason
    res = node.set_parameters([Parameter("max_instances", value=1.0)])[0]
    assert not res.successful  # wrong type
    assert node.set_parameters([Parameter("score_threshold", value=0.6)])[0].successful
    assert node._detector.score_threshold == pytest.approx(0.6)
    assert node.set_parameters([Parameter("slop", value=0.05)])[0].successful
    assert node._sync.slop_s == pytest.approx(0.05)
    assert node.set_parameters([Parameter("max_instances", value=1)])[0].successful
    (msg,) = harness.roundtrip(*_good_pair())
    assert len(msg.instances) == 1


def test_bad_parameter_file_value_is_rejected_by_name(ctx, model_path):
    with pytest.raises(Exception, match="depth_unit"):
        Harness(ctx, model_path, overrides={"depth_unit": "feet"})


def test_qos_overrides_and_namespace(ctx, model_path):
    h = Harness(
        ctx,
        model_path,
        namespace="/cam1",
        overrides={"qos_overrides./cam1/rgb/image.subscription.reliability": "reliable"},
    )
    try:
        h.start()
        infos = h.peer.get_subscriptions_info_by_topic("/cam1/rgb/image")
        assert [i.qos_profile.reliability for i in infos] == [ReliabilityPolicy.RELIABLE]
        infos = h.peer.get_subscriptions_info_by_topic("/cam1/depth/image")
        assert [i.qos_profile.reliability for i in infos] == [ReliabilityPolicy.BEST_EFFORT]  # sensor data
        (msg,) = h.roundtrip(*_good_pair())
        assert len(msg.instances) > 0
    finally:
        h.close()


@pytest.mark.usefixtures("no_leaked_segments")
def test_node_runs_as_a_process_and_exits_0_on_sigint(domain, model_path, tmp_path):
    params = tmp_path / "site.yaml"
    params.write_text(
        "/**:\n  ros__parameters:\n"
        f"    model_path: '{model_path}'\n    providers: ['cpu']\n    score_threshold: 0.3\n"
    )
    env = dict(
        os.environ,
        ROS_DOMAIN_ID=str(domain),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    cmd = [
        sys.executable,
        "-m",
        "mtl_grasp.ros.perception_node",
        "--ros-args",
        "--params-file",
        str(params),
        "-r",
        "rgb/image:=/cam/color",
        "-r",
        "depth/image:=/cam/depth",
        "-r",
        "__node:=detector",
    ]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    peer = rclpy.create_node("test_client", context=ctx)
    got: list[InstanceArray] = []
    peer.create_subscription(InstanceArray, "/detector/instances", got.append, RELIABLE)
    rgb_pub = peer.create_publisher(Image, "/cam/color", RELIABLE)
    depth_pub = peer.create_publisher(Image, "/cam/depth", RELIABLE)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(peer)
    try:
        rgb, depth = _frame(4)
        rgb_msg, depth_msg = array_to_image(rgb, "rgb8"), array_to_image(depth, "32FC1")
        deadline = time.monotonic() + 60
        sec = 0
        while not got and time.monotonic() < deadline and proc.poll() is None:
            if rgb_pub.get_subscription_count() and depth_pub.get_subscription_count():
                sec += 1
                for m in (rgb_msg, depth_msg):
                    m.header.stamp.sec = sec
                rgb_pub.publish(rgb_msg)
                depth_pub.publish(depth_msg)
            executor.spin_once(timeout_sec=0.2)
        assert got, f"no output from the node process; rc={proc.poll()}"
        assert got[0].header.stamp.sec >= 1 and len(got[0].instances) > 0
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0, out
        assert "active on CPUExecutionProvider" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        executor.shutdown()
        peer.destroy_node()
        rclpy.try_shutdown(context=ctx)


def test_node_process_rejects_a_bad_parameter_by_name(domain):
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    cmd = [sys.executable, "-m", "mtl_grasp.ros.perception_node", "--ros-args", "-p", "slop:=1"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "invalid parameter" in done.stderr and "slop" in done.stderr and "DOUBLE" in done.stderr


def test_diagnostics_report_ok_with_rates_and_provider(harness):
    for _ in range(6):
        harness.roundtrip(*_good_pair())
    n = len(harness.diagnostics)
    assert harness.spin_until(lambda: len(harness.diagnostics) > n, timeout=3)
    values = _diag_values(harness)
    assert values["_level"] == bytes([0]), values["_message"]
    assert values["state"] == "active" and values["provider"] == "CPUExecutionProvider"
    assert float(values["fps"]) > 0 and int(values["frames"]) >= 6
    assert float(values["latency_p95_ms"]) >= float(values["latency_p50_ms"]) > 0
    assert values["dropped_frames_unsynced"] == "0" and values["bad_frames"] == "0"
    assert abs(float(values["last_output_age_ms"])) < 1e15  # a number (stamps here are synthetic)
