"""The MetaGraspNet replayer and the replay demo over real DDS, on a tiny synthetic dataset."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("mtl_grasp_msgs.msg")
pytest.importorskip("onnx")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from ros_process import no_leaked_segments  # noqa: E402,F401 - fixture
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from mtl_grasp.data.reader import discover_views, load_view  # noqa: E402
from mtl_grasp.data.synth import generate_dataset  # noqa: E402
from mtl_grasp.ros.demo import format_frame, replay_and_detect  # noqa: E402
from mtl_grasp.ros.domain import localhost_only, reserved_domain_id  # noqa: E402
from mtl_grasp.ros.images import image_to_array  # noqa: E402
from mtl_grasp.ros.replayer import Replayer, depth_message_array  # noqa: E402
from mtl_grasp.runtime import Detector  # noqa: E402
from training.contract_model import write_contract_model  # noqa: E402

pytestmark = pytest.mark.ros
REPO = Path(__file__).resolve().parents[1]
RELIABLE = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
localhost_only()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mgn")
    generate_dataset(root, scenes=2, image_size=64, seed=3)
    return root


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return write_contract_model(tmp_path_factory.mktemp("model") / "contract.onnx", n=5)


def test_depth_message_array_units():
    depth = np.array([[0.0, 0.6543]], np.float32)
    f = depth_message_array(depth, "32FC1")
    assert np.isnan(f[0, 0]) and f[0, 1] == pytest.approx(0.6543)
    u = depth_message_array(depth, "16UC1")
    assert u.dtype == np.uint16 and u.tolist() == [[0, 654]]
    with pytest.raises(ValueError, match="depth_encoding"):
        depth_message_array(depth, "mono8")


@pytest.mark.parametrize("encoding", ["32FC1", "16UC1"])
def test_replayer_publishes_synchronised_frames_of_the_dataset(dataset, encoding):
    sample = load_view(discover_views(dataset)[0])
    with reserved_domain_id() as domain:
        ctx = rclpy.Context()
        rclpy.init(context=ctx, domain_id=domain)
        try:
            peer = rclpy.create_node("peer", context=ctx)
            got = {"rgb": [], "depth": [], "info": []}
            peer.create_subscription(Image, "/cam/rgb/image", got["rgb"].append, RELIABLE)
            peer.create_subscription(Image, "/cam/depth/image", got["depth"].append, RELIABLE)
            peer.create_subscription(CameraInfo, "/cam/rgb/camera_info", got["info"].append, RELIABLE)
            replayer = Replayer(dataset, rate_hz=20, depth_encoding=encoding, namespace="cam", context=ctx)
            assert replayer.num_views == 2
            executor = SingleThreadedExecutor(context=ctx)
            executor.add_node(peer)
            executor.add_node(replayer)
            deadline = time.monotonic() + 10
            while len(got["info"]) < 2 and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.05)
            assert replayer.finished and replayer.published == 2
            assert len(got["rgb"]) == len(got["depth"]) == 2
            rgb, depth, info = got["rgb"][0], got["depth"][0], got["info"][0]
            assert rgb.header == depth.header == info.header and rgb.header.stamp.sec > 0
            assert rgb.encoding == "rgb8" and depth.encoding == encoding
            np.testing.assert_array_equal(image_to_array(rgb), sample.rgb)
            d = image_to_array(depth).astype(np.float32)
            if encoding == "16UC1":
                np.testing.assert_allclose(d / 1000, sample.depth, atol=6e-4)
            else:
                valid = sample.depth > 0
                np.testing.assert_array_equal(d[valid], sample.depth[valid])
                assert np.isnan(d[~valid]).all()
            assert (info.width, info.height) == (64, 64) and info.k[0] > 0 and info.k[8] == 1.0
            executor.shutdown()
            replayer.destroy_node()
            peer.destroy_node()
        finally:
            rclpy.try_shutdown(context=ctx)


def test_replayer_rejects_bad_arguments(tmp_path, dataset):
    ctx = rclpy.Context()
    with reserved_domain_id() as domain:
        rclpy.init(context=ctx, domain_id=domain)
        try:
            with pytest.raises(ValueError, match="rate_hz"):
                Replayer(dataset, rate_hz=0, context=ctx)
            with pytest.raises(ValueError, match="depth_encoding"):
                Replayer(dataset, depth_encoding="8UC1", context=ctx)
            with pytest.raises(ValueError, match="no MetaGraspNet views"):
                Replayer(tmp_path, context=ctx)
        finally:
            rclpy.try_shutdown(context=ctx)


def test_replay_demo_detections_equal_the_detector(dataset, model_path):
    frames = replay_and_detect(dataset, model_path, rate_hz=10, providers=("cpu",), score_threshold=0.3)
    assert len(frames) == 2
    detector = Detector(model_path, providers="cpu", score_threshold=0.3)
    for frame, ref in zip(frames, discover_views(dataset)):
        sample = load_view(ref)
        det = detector(sample.rgb, sample.depth)
        assert [i.score for i in frame.instances] == pytest.approx(det.scores.tolist(), rel=1e-6)
        assert [i.visible_pixels for i in frame.instances] == det.visible_masks.sum(axis=(1, 2)).tolist()
        assert frame.frame_id == "camera_color_optical_frame"
    text = format_frame(frames[0], 0)
    assert text.startswith("frame 0: ") and text.count("\n") == len(frames[0].instances)


@pytest.mark.usefixtures("no_leaked_segments")  # the replayer applies the 32 MiB shared-memory profile
def test_replayer_console_entry(dataset):
    with reserved_domain_id() as domain:
        env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
        cmd = [
            sys.executable,
            "-m",
            "mtl_grasp.ros.replayer",
            str(dataset),
            "--rate",
            "20",
            "--max-frames",
            "3",
            "--loop",
            "--linger",
            "0",
            "--ros-args",
            "-r",
            "__ns:=/cam",
        ]
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "published 3 frame(s)" in done.stdout
        bad = subprocess.run(
            [*cmd[:3], str(dataset / "nope")], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
        )
        assert bad.returncode == 2 and "does not exist" in bad.stderr
