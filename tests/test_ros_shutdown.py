"""Bounded shutdown of the node process: SIGINT, SIGTERM and the lifecycle shutdown transition end it
with exit code 0 within 2 s, even mid-inference and with every core busy (docs/ros.md, "Shutdown").

The model is the contract test model with a chain of matrix products that keeps onnxruntime busy for
seconds on the 128-px-wide test frames; the signal is sent once the node has paired a frame and not
published it yet, i.e. while its worker is inside the inference. The default run checks each case
once with a generous bound (it only has to tell "bounded" from the old unbounded join); the slow test
repeats every case 10 times against the 2 s requirement, so a 1-in-5 failure would show.
"""

from __future__ import annotations

import signal
import time

import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("mtl_grasp_msgs.msg")
pytest.importorskip("onnx")

from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState  # noqa: E402
from ros_process import CpuLoad, Peer, frame, no_leaked_segments, output, start_node, stop  # noqa: E402,F401

from mtl_grasp.ros.domain import localhost_only, reserved_domain_id  # noqa: E402
from training.contract_model import write_contract_model  # noqa: E402

pytestmark = pytest.mark.ros
CASES = ("sigint", "sigterm", "lifecycle")
REQUIRED_S = 2.0  # the requirement
DEFAULT_RUN_BOUND_S = 5.0  # default run: far from the old 20 s hang, far from timing noise
localhost_only()


@pytest.fixture(scope="module")
def busy_model(tmp_path_factory):
    # 300 products of 1024x1024 matrices (0.6 TFLOP): seconds of inference on any CPU
    return write_contract_model(tmp_path_factory.mktemp("model") / "busy.onnx", n=4, slow_matmuls=300)


def _wait_mid_inference(peer: Peer, proc) -> None:
    """Send frames until the node reports a pair and no processed frame: its worker is inferring."""
    rgb, depth = frame(96, 128, 0)

    def paired() -> bool:
        d = peer.diagnostics[-1] if peer.diagnostics else {}
        return int(d.get("pairs", 0)) >= 1

    for _ in range(20):
        peer.send(rgb, depth)
        if peer.spin_until(paired, timeout=1.5, proc=proc):
            break
    assert paired(), f"the node never paired a frame\n{output(proc)}"
    assert peer.diagnostics[-1]["frames"] == "0" and not peer.outputs, "inference finished too early"


def _request_shutdown(case: str, proc, peer: Peer) -> None:
    if case == "sigint":
        proc.send_signal(signal.SIGINT)
    elif case == "sigterm":
        proc.send_signal(signal.SIGTERM)
    else:
        client = peer.node.create_client(ChangeState, "/detector/change_state")
        assert client.wait_for_service(timeout_sec=10), "no lifecycle change_state service"
        request = ChangeState.Request(transition=Transition(id=Transition.TRANSITION_ACTIVE_SHUTDOWN))
        client.call_async(request)
        peer.spin_until(lambda: proc.poll() is not None, timeout=0.5)  # deliver the request


def shutdown_seconds(case: str, model, tmp_path) -> float:
    """Start the node, make it infer, load every core, request shutdown; seconds until it exited 0."""
    with reserved_domain_id() as domain:
        proc = start_node(domain, model, tmp_path)
        peer = Peer(domain)
        try:
            peer.wait_for_node(proc)
            _wait_mid_inference(peer, proc)
            with CpuLoad():
                start = time.monotonic()
                _request_shutdown(case, proc, peer)
                rc = proc.wait(timeout=60)
                elapsed = time.monotonic() - start
            log = output(proc)
            assert rc == 0, f"{case}: exit code {rc}\n{log}"
            assert "Traceback" not in log, log
            return elapsed
        finally:
            stop(proc)
            peer.close()


@pytest.mark.usefixtures("no_leaked_segments")
@pytest.mark.parametrize("case", CASES)
def test_shutdown_mid_inference_under_load_exits_0_promptly(case, busy_model, tmp_path):
    elapsed = shutdown_seconds(case, busy_model, tmp_path)
    print(f"{case}: exited 0 after {elapsed:.2f} s")
    assert elapsed < DEFAULT_RUN_BOUND_S


@pytest.mark.slow
@pytest.mark.usefixtures("no_leaked_segments")
@pytest.mark.parametrize("case", CASES)
def test_shutdown_within_2s_ten_times_under_load(case, busy_model, tmp_path):
    times = [shutdown_seconds(case, busy_model, tmp_path) for _ in range(10)]
    print(f"{case}: exit after " + ", ".join(f"{t:.2f}" for t in times) + " s")
    assert max(times) < REQUIRED_S, times


def test_detector_terminate_aborts_a_running_inference(busy_model):
    """onnxruntime RunOptions.terminate, as the node uses it: the running call raises promptly."""
    import threading

    from mtl_grasp.runtime import Detector

    detector = Detector(busy_model, providers="cpu", num_threads=1)
    rgb, depth = frame(96, 128, 1)
    outcome: list[BaseException | None] = []

    def infer() -> None:
        try:
            detector(rgb, depth)
            outcome.append(None)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    worker = threading.Thread(target=infer)
    worker.start()
    time.sleep(0.3)
    assert worker.is_alive(), "inference finished before it could be terminated"
    start = time.monotonic()
    detector.terminate()
    worker.join(timeout=30)
    assert not worker.is_alive() and time.monotonic() - start < 1.0
    assert outcome and outcome[0] is not None and "terminate" in str(outcome[0]).lower()


def test_watchdog_ends_a_stuck_process_with_status_0():
    """The last resort: whatever blocks after a shutdown request, the process exits 0 at the deadline."""
    import subprocess
    import sys

    code = (
        "import time\n"
        "from mtl_grasp.ros.perception_node import ShutdownGuard\n"
        "ShutdownGuard(deadline_s=0.3).request()\n"
        "time.sleep(60)  # stuck\n"
    )
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "shutdown deadline reached" in done.stderr
    assert time.monotonic() - start < 30  # far below the 60 s the process would otherwise sleep
