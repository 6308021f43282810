"""Large images across processes: a separate camera process streams 640x480 RGB-D at 30 Hz for 4 s to
the node process; at least 90 % of the frames must reach the node (it reports what it received in its
diagnostics). Both processes apply config/fastdds_shm.xml by themselves (mtl_grasp.ros.transport).
Best effort (what cameras usually publish, and the node's default) and the reliable path (publisher
reliable, node subscriptions overridden to reliable). Without the profile this test fails: see
`python -m training bench transport` and docs/ros.md for the numbers.

The profile's 32 MiB shared-memory segments live in /dev/shm; the fixture checks that none created
during a test survives it (processes end with SIGINT, exit 0, and Fast DDS removes its segments).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("mtl_grasp_msgs.msg")
pytest.importorskip("onnx")

from ros_process import REPO, Peer, no_leaked_segments, node_env, output, start_node, stop  # noqa: E402,F401

from mtl_grasp.ros.domain import localhost_only, reserved_domain_id  # noqa: E402
from mtl_grasp.ros.transport import profile_path  # noqa: E402
from training.contract_model import write_contract_model  # noqa: E402

pytestmark = pytest.mark.ros
SEGMENT_BYTES = 32 * 2**20
RATE_HZ, DURATION_S = 30, 4
localhost_only()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return write_contract_model(tmp_path_factory.mktemp("model") / "contract.onnx", n=4)


def test_profile_file_is_valid_fast_dds_xml():
    import xml.etree.ElementTree as ET

    root = ET.parse(profile_path()).getroot()
    ns = {"d": "http://www.eprosima.com"}
    assert root.tag == "{http://www.eprosima.com}dds"
    sizes = [int(e.text) for e in root.iterfind(".//d:transport_descriptor/d:segment_size", ns)]
    assert sizes == [SEGMENT_BYTES]
    used = [e.text for e in root.iterfind(".//d:participant/d:rtps/d:userTransports/d:transport_id", ns)]
    declared = [e.text for e in root.iterfind(".//d:transport_descriptor/d:transport_id", ns)]
    assert sorted(used) == sorted(declared) and len(used) == 2  # shared memory + UDPv4


def _camera(domain: int, reliability: str) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "mtl_grasp.ros.synthetic_camera", "publish", "--width", "640",
        "--height", "480", "--rate", str(RATE_HZ), "--duration", str(DURATION_S), "--reliability",
        reliability, "--ros-args", "-r", "rgb/image:=/cam/color", "-r", "depth/image:=/cam/depth",
    ]
    env = node_env(domain)
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)  # it sets the profile itself
    out = subprocess.PIPE
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)


@pytest.mark.usefixtures("no_leaked_segments")
@pytest.mark.parametrize(
    "reliability",
    # the reliable path is also covered in-process (test_ros_node.py::test_qos_overrides_and_namespace)
    ["best_effort", pytest.param("reliable", marks=pytest.mark.slow)],
)
def test_640x480_rgbd_at_30hz_from_another_process_reaches_the_node(
    reliability, model_path, tmp_path
):
    overrides = "".join(
        f"    qos_overrides./cam/{t}.subscription.reliability: reliable\n" for t in ("color", "depth")
    ) if reliability == "reliable" else ""
    env = node_env(0)
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)  # the node and the camera set it themselves
    with reserved_domain_id() as domain:
        env["ROS_DOMAIN_ID"] = str(domain)
        node = start_node(domain, model_path, tmp_path, env=env, extra_params=overrides)
        peer = Peer(domain)
        camera = None
        try:
            peer.wait_for_node(node)
            camera = _camera(domain, reliability)
            out, _ = camera.communicate(timeout=120)
            assert camera.returncode == 0, out
            sent = int(out.split()[-1])
            assert sent == RATE_HZ * DURATION_S, out
            # counters are monotonic; queued older diagnostics may arrive first, so take the maximum
            def most(key: str) -> int:
                return max((int(d[key]) for d in peer.diagnostics), default=0)

            peer.spin_until(lambda: min(most("received_rgb"), most("received_depth")) >= sent, timeout=10)
            got_rgb, got_depth, pairs = most("received_rgb"), most("received_depth"), most("pairs")
            print(f"{reliability}: sent {sent}, node received rgb {got_rgb}, depth {got_depth}, "
                  f"pairs {pairs}")
            assert got_rgb >= 0.9 * sent and got_depth >= 0.9 * sent, peer.diagnostics[-1]
            assert pairs >= 0.9 * sent and most("frames") > 0, peer.diagnostics[-1]
            node.send_signal(signal.SIGINT)
            assert node.wait(timeout=30) == 0, output(node)
        finally:
            for proc in (camera, node):  # SIGINT first: a killed process leaves its segment behind
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout=10)
            if camera is not None and camera.poll() is None:
                camera.kill()
                camera.wait()
            stop(node)
            peer.close()
