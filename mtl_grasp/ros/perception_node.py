"""The mtl_grasp perception node: RGB-D frames in, amodal instances out.

Lifecycle (rclpy LifecycleNode):
  configure   read and check parameters, create the publishers, check that the model file exists
  activate    load the model (mtl_grasp.runtime.Detector), subscribe to the inputs, start the worker
  deactivate  unsubscribe, stop the worker, release the model (and its GPU memory)
  cleanup     destroy the publishers
`main()` triggers configure + activate itself (no launch or lifecycle manager needed) and retries
every few seconds while that fails (e.g. the model file is not exported yet).

Inputs (relative, remap them): rgb/image, depth/image, rgb/camera_info (optional; for ~/markers),
subscribed with sensor-data QoS (best effort, depth 5), overridable per topic with
`qos_overrides.<topic>.subscription.*` parameters.
Outputs (reliable, stamped with the input RGB header): ~/instances (mtl_grasp_msgs/InstanceArray,
with 3-D pick candidates when rgb/camera_info is available), ~/candidates (geometry_msgs/PoseArray in
pick order), ~/overlay (rgb8), ~/markers (MarkerArray), ~/visible_labels (mono16) and /diagnostics.

Threading: subscription callbacks only pair messages by stamp and drop the pair into a one-slot
mailbox (KeepLatest); one worker thread converts, infers and publishes. A pair that arrives while the
worker is busy replaces the pending one and counts as dropped, so latency stays bounded.

Shutdown (SIGINT, SIGTERM or the lifecycle shutdown transition) is bounded: `main()` handles the
signals itself (a flag, never an exception raised at an arbitrary point of the executor or the worker),
stops spinning, gives the worker `WORKER_JOIN_S` to finish its frame and exits 0; a watchdog ends the
process with status 0 `SHUTDOWN_DEADLINE_S` after the request whatever the worker is doing
(mid-inference, blocked in a publish).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import rclpy
import rclpy.signals
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseArray
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import InvalidParameterTypeException, ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, Image
from visualization_msgs.msg import MarkerArray

from mtl_grasp.ros import parameters as P
from mtl_grasp.ros.candidates import candidate_markers
from mtl_grasp.ros.diagnostics import NodeStats, diagnostic_status
from mtl_grasp.ros.keep_latest import KeepLatest
from mtl_grasp.ros.pipeline import Frame, FramePipeline
from mtl_grasp.ros.streams import StreamMonitor
from mtl_grasp.ros.sync import DEPTH, RGB, Pair, PairSynchronizer, stamp_to_ns
from mtl_grasp.ros.transport import apply_default_profile
from mtl_grasp.ros.visualization import instance_markers
from mtl_grasp_msgs.msg import InstanceArray

NODE_NAME = "perception_node"
TOPIC_RGB = "rgb/image"
TOPIC_DEPTH = "depth/image"
TOPIC_CAMERA_INFO = "rgb/camera_info"
DIAGNOSTICS_PERIOD_S = 1.0
LOG_THROTTLE_S = 5.0
OUTPUT_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
WORKER_JOIN_S = 0.5  # how long stopping waits for the worker's current frame
SHUTDOWN_DEADLINE_S = 1.5  # after a shutdown request the process ends within this, whatever happens


def sensor_data_qos() -> QoSProfile:
    """A fresh rclpy sensor-data profile (best effort, keep last 5, volatile).

    Fresh on purpose: QoS overrides are written into the profile object passed to
    create_subscription, so passing rclpy's shared `qos_profile_sensor_data` would leak one topic's
    override into every later subscription of the process.
    """
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=5,
        reliability=ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.VOLATILE,
    )


_TYPES = {
    "string": Parameter.Type.STRING,
    "double": Parameter.Type.DOUBLE,
    "integer": Parameter.Type.INTEGER,
    "bool": Parameter.Type.BOOL,
    "string_array": Parameter.Type.STRING_ARRAY,
}

DetectorFactory = Callable[..., Any]


def _default_detector_factory(**kwargs: Any) -> Any:
    from mtl_grasp.runtime import Detector  # imported on activate: keeps node import light

    return Detector(**kwargs)


class _Job:
    """A synchronised pair waiting for the worker, with the time it became ready."""

    __slots__ = ("pair", "ready_at")

    def __init__(self, pair: Pair, ready_at: float) -> None:
        self.pair, self.ready_at = pair, ready_at


class PerceptionNode(LifecycleNode):
    """Lifecycle node running mtl_grasp.runtime.Detector on synchronised RGB-D frames.

    Args:
        node_name: ROS node name.
        detector_factory: builds the detector from keyword arguments (model_path, providers,
            score_threshold, max_instances); defaults to mtl_grasp.runtime.Detector.
        **kwargs: passed to rclpy's Node (namespace, context, cli_args, parameter_overrides, ...).
    """

    def __init__(
        self, node_name: str = NODE_NAME, detector_factory: DetectorFactory | None = None, **kwargs: Any
    ) -> None:
        super().__init__(node_name, **kwargs)
        self._detector_factory = detector_factory or _default_detector_factory
        self._detector: Any = None
        self._state = "unconfigured"
        self._fatal = ""  # why configure/activate failed; ERROR diagnostic until it succeeds
        self._stats = NodeStats()
        self._slot: KeepLatest[_Job] = KeepLatest()
        self._sync: PairSynchronizer[Image] | None = None
        self._worker: threading.Thread | None = None
        self._subs: list[Any] = []
        self._pubs: dict[str, Any] = {}
        self._camera_info: CameraInfo | None = None
        self._live: dict[str, Any] = {}  # current values of the parameters, applied atomically
        self._live_lock = threading.Lock()
        self._rates: dict[str, float] = {}
        self._retry_timer = None
        self._last_age_ms: float | None = None
        self._streams = StreamMonitor(time.monotonic())  # renewed with self._sync in configure
        self._stream_warning = ""
        self.shutdown_requested = threading.Event()  # set by the lifecycle shutdown transition
        self._lingering: list[threading.Thread] = []  # stopped workers still inside a frame

        # Validation runs for declarations too, so a bad YAML value is rejected by name at start.
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        for spec in P.PARAMETERS:
            self.declare_parameter(spec.name, _TYPES[spec.type], _descriptor(spec))
        with self._live_lock:
            for spec in P.PARAMETERS:
                value = self.get_parameter(spec.name).value
                if value is not None:
                    self._live[spec.name] = value

        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)

    # ---- parameters ---------------------------------------------------------------------------
    def _validate_parameters(self, params: list[Parameter]) -> SetParametersResult:
        for p in params:
            err = P.validate(p.name, p.value)
            if err:
                return SetParametersResult(successful=False, reason=err)
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params: list[Parameter]) -> None:
        with self._live_lock:
            for p in params:
                if p.name in P.BY_NAME:
                    self._live[p.name] = p.value
            live = dict(self._live)
        names = {p.name for p in params}
        if self._sync is not None and names & {"slop", "sync_queue_size"}:
            self._sync.configure(live["slop"], live["sync_queue_size"])
        det = self._detector
        if det is not None:
            if "score_threshold" in names:
                det.score_threshold = float(live["score_threshold"])
            if "max_instances" in names:
                det.max_instances = int(live["max_instances"])
        later = sorted(n for n in names if n in P.BY_NAME and P.BY_NAME[n].configure_time)
        if later and self._state != "unconfigured":
            self.get_logger().info(f"{later} changed: applied when the node is next activated (model load)")

    def _param(self, name: str) -> Any:
        with self._live_lock:
            return self._live[name]

    # ---- lifecycle ----------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        missing = [s.name for s in P.PARAMETERS if self.get_parameter(s.name).value is None]
        if missing:
            return self._fail(
                f"parameters {missing} have no value; start the node with --params-file "
                f"config/perception.yaml (where all defaults live)"
            )
        model = Path(self._param("model_path")).expanduser()
        if not model.is_file():
            return self._fail(
                f"model_path: no such file {str(model)!r}; export one with `python -m training export` "
                "or set model_path"
            )
        self._pubs = {
            "instances": self.create_publisher(InstanceArray, "~/instances", OUTPUT_QOS),
            "overlay": self.create_publisher(Image, "~/overlay", OUTPUT_QOS),
            "markers": self.create_publisher(MarkerArray, "~/markers", OUTPUT_QOS),
            "visible_labels": self.create_publisher(Image, "~/visible_labels", OUTPUT_QOS),
            "candidates": self.create_publisher(PoseArray, "~/candidates", OUTPUT_QOS),
        }
        self._sync = PairSynchronizer(self._param("slop"), self._param("sync_queue_size"))
        self._streams = StreamMonitor(time.monotonic())  # the new synchroniser's counters start at zero
        self._fatal = ""
        self._state = "inactive"
        self.get_logger().info(f"configured with model {str(model)!r}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._detector = self._detector_factory(**P.detector_kwargs(self._param))
        except Exception as exc:  # noqa: BLE001 - any load failure is reported, the node lives on
            return self._fail(f"could not load the model: {exc}")
        self._slot = KeepLatest()
        self._worker = threading.Thread(target=self._work, name="mtl_grasp_worker", daemon=True)
        self._worker.start()
        qos_options = QoSOverridingOptions.with_default_policies()
        self._subs = [
            self.create_subscription(
                Image,
                TOPIC_RGB,
                lambda m: self._on_image(RGB, m),
                sensor_data_qos(),
                qos_overriding_options=qos_options,
            ),
            self.create_subscription(
                Image,
                TOPIC_DEPTH,
                lambda m: self._on_image(DEPTH, m),
                sensor_data_qos(),
                qos_overriding_options=qos_options,
            ),
            self.create_subscription(
                CameraInfo,
                TOPIC_CAMERA_INFO,
                self._on_camera_info,
                sensor_data_qos(),
                qos_overriding_options=qos_options,
            ),
        ]
        self._fatal = ""
        self._state = "active"
        self.get_logger().info(f"active on {self.provider}")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self._state = "inactive"
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._destroy_publishers()
        self._state = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self._destroy_publishers()
        self._state = "finalized"
        self.shutdown_requested.set()  # main() ends the process (exit code 0)
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self._destroy_publishers()
        self._state = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def _fail(self, reason: str) -> TransitionCallbackReturn:
        self._fatal = reason
        self._stats.record_error(reason, bad_frame=False)
        self.get_logger().error(reason, throttle_duration_sec=LOG_THROTTLE_S)
        return TransitionCallbackReturn.FAILURE

    def _stop_processing(self, join_timeout_s: float = WORKER_JOIN_S) -> bool:
        """Unsubscribe, close the mailbox and wait up to `join_timeout_s` for the worker's frame.

        Returns whether the worker has ended. A worker still inside an inference is left to finish
        on its own (it is a daemon thread; it publishes nothing once the publishers are gone) and
        drops the last reference to its detector when it ends.
        """
        for sub in self._subs:
            with contextlib.suppress(Exception):  # the context may already be shut down
                self.destroy_subscription(sub)
        self._subs = []
        self._slot.close()
        terminate = getattr(self._detector, "terminate", None)
        if terminate is not None and self._worker is not None and self._worker.is_alive():
            terminate()  # abort a running inference (onnxruntime RunOptions.terminate)
        ended = True
        if self._worker is not None:
            self._worker.join(timeout=join_timeout_s)
            ended = not self._worker.is_alive()
            if not ended:
                self._lingering.append(self._worker)
                self.get_logger().warning(
                    f"the inference worker is still busy after {join_timeout_s:.1f} s; not waiting for it"
                )
            self._worker = None
        self._detector = None  # frees the session and its device memory once the worker lets go
        return ended

    def totals(self) -> str:
        """One line of totals: received, paired, processed, dropped (printed at exit)."""
        sync = self._sync
        st = sync.stats if sync is not None else None
        received = ""
        if st is not None:
            received = f"received rgb {st.received_rgb}, depth {st.received_depth}, pairs {st.pairs}, "
        return (
            f"{received}processed {self._stats.frames}, bad {self._stats.bad_frames}, "
            f"dropped busy {self._slot.dropped}"
        )

    @property
    def worker_busy(self) -> bool:
        """Whether a stopped worker is still inside a frame (e.g. a long inference)."""
        self._lingering = [t for t in self._lingering if t.is_alive()]
        return bool(self._lingering)

    def _destroy_publishers(self) -> None:
        pubs, self._pubs = self._pubs, {}  # the worker sees no publishers from now on
        for pub in pubs.values():
            with contextlib.suppress(Exception):
                self.destroy_publisher(pub)
        self._sync = None

    def autostart(self, retry_period_s: float = 5.0) -> bool:
        """Configure and activate now; while that fails, retry every `retry_period_s` seconds.

        For running without a lifecycle manager (main()). Returns whether the node is active now.
        """
        if self._try_start():
            return True
        if self._retry_timer is None:
            self._retry_timer = self.create_timer(retry_period_s, self._retry_start)
        return False

    def _try_start(self) -> bool:
        if self._state == "unconfigured":
            self.trigger_configure()
        if self._state == "inactive":
            self.trigger_activate()
        return self._state == "active"

    def _retry_start(self) -> None:
        if self._try_start() and self._retry_timer is not None:
            self.destroy_timer(self._retry_timer)
            self._retry_timer = None

    # ---- input callbacks (executor thread: keep them short) -----------------------------------
    def _on_image(self, stream: str, msg: Image) -> None:
        sync = self._sync
        if sync is None:
            return
        try:
            pair = sync.add(stream, stamp_to_ns(msg.header.stamp), msg)
        except ValueError as exc:
            self._report(str(exc))
            return
        if pair is not None:
            # RuntimeError: the slot closed while deactivating; nobody needs the pair any more
            with contextlib.suppress(RuntimeError):
                self._slot.put(_Job(pair, time.perf_counter()))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    # ---- worker -------------------------------------------------------------------------------
    def _work(self) -> None:
        slot = self._slot
        while not slot.closed:
            job = slot.take(timeout=0.5)
            if job is not None:
                self.process(job.pair.rgb, job.pair.depth, job.ready_at)

    def process(self, rgb_msg: Image, depth_msg: Image, ready_at: float | None = None) -> bool:
        """Run the model on one RGB-depth pair and publish every output; False on a bad frame.

        Never raises for bad input: the error is logged (throttled), counted and reported as an
        ERROR diagnostic, and the node serves the next frame.
        """
        ready_at = time.perf_counter() if ready_at is None else ready_at
        det_model, pubs = self._detector, self._pubs
        if det_model is None or not pubs:
            return False
        try:
            if rgb_msg.header.frame_id != depth_msg.header.frame_id:
                self.get_logger().warning(
                    f"rgb frame_id {rgb_msg.header.frame_id!r} != depth frame_id "
                    f"{depth_msg.header.frame_id!r}; is depth registered to the RGB camera?",
                    throttle_duration_sec=LOG_THROTTLE_S,
                )
            pipeline = FramePipeline(det_model, self._param)
            frame = pipeline.run(rgb_msg, depth_msg, self._camera_info)
            self._publish(pipeline, frame, pubs)
        except Exception as exc:  # noqa: BLE001 - bad input must never kill the node
            if not self._slot.closed:  # else: stopping (e.g. the inference was terminated)
                self._report(f"frame {stamp_to_ns(rgb_msg.header.stamp)} skipped: {exc}")
            return False
        self._stats.record_frame(time.perf_counter() - ready_at, frame.inference_s)
        # age of the frame when its results went out, by this node's clock: large or negative
        # values point at unsynchronised clocks or a slow pipeline upstream
        self._last_age_ms = (self.get_clock().now().nanoseconds - stamp_to_ns(rgb_msg.header.stamp)) / 1e6
        return True

    def _publish(self, pipeline: FramePipeline, frame: Frame, pubs: dict[str, Any]) -> None:
        pubs["instances"].publish(pipeline.instances(frame))
        pubs["candidates"].publish(pipeline.candidates(frame))
        # Views for tools are only computed while someone listens.
        if self._param("publish_overlay") and pubs["overlay"].get_subscription_count():
            pubs["overlay"].publish(pipeline.overlay(frame))
        if self._param("publish_visible_labels") and pubs["visible_labels"].get_subscription_count():
            pubs["visible_labels"].publish(pipeline.visible_labels(frame))
        info = self._camera_info
        if self._param("publish_markers") and pubs["markers"].get_subscription_count():
            if frame.geometry.intrinsics is None or info is None:
                if info is not None:  # received, but unusable: say why (no markers)
                    self.get_logger().warning(
                        f"{frame.camera_info_problem}; no markers, no 3-D candidates",
                        throttle_duration_sec=LOG_THROTTLE_S,
                    )
                return
            f = frame
            occ = f.occlusion_threshold
            markers = instance_markers(f.det, f.n, f.depth, info.k, f.header, occ, boxes=f.boxes)
            markers.markers += candidate_markers(frame.geometry, frame.header)
            pubs["markers"].publish(markers)

    def _report(self, message: str) -> None:
        self._stats.record_error(message)
        self.get_logger().error(message, throttle_duration_sec=LOG_THROTTLE_S)

    # ---- diagnostics --------------------------------------------------------------------------
    @property
    def provider(self) -> str:
        det = self._detector
        return ",".join(getattr(det, "providers", []) or []) if det is not None else "none"

    @property
    def stats(self) -> NodeStats:
        return self._stats

    @property
    def dropped_busy(self) -> int:
        return self._slot.dropped

    @property
    def lifecycle_state(self) -> str:
        """'unconfigured', 'inactive', 'active' or 'finalized' (mirrors the lifecycle state)."""
        return self._state

    @property
    def failure_reason(self) -> str:
        """Why the last configure/activate failed ('' once it succeeded)."""
        return self._fatal

    @property
    def detector(self) -> Any:
        """The loaded detector while active, else None."""
        return self._detector

    def _check_streams(self) -> None:
        """Say which input stream starves, or that they never pair (errors and a WARN diagnostic)."""
        sync = self._sync
        if sync is None or self._state != "active":
            self._stream_warning = ""
            return
        s = sync.stats
        verdict = self._streams.update(
            time.monotonic(), s.received_rgb, s.received_depth, s.pairs, sync.slop_s
        )
        self._rates = verdict.rates_hz
        if verdict.error:
            self._report(verdict.error)
        self._stream_warning = verdict.warning
        if verdict.warning:
            self.get_logger().warning(verdict.warning, throttle_duration_sec=LOG_THROTTLE_S)

    def _publish_diagnostics(self) -> None:
        self._check_streams()
        sync = self._sync
        unsynced = sync.stats.dropped_rgb + sync.stats.dropped_depth if sync is not None else 0
        snap = self._stats.snapshot(dropped_busy=self._slot.dropped, dropped_unsynced=unsynced)
        if sync is not None:
            snap.extra.update(
                received_rgb=str(sync.stats.received_rgb),
                received_depth=str(sync.stats.received_depth),
                pairs=str(sync.stats.pairs),
                rgb_hz=f"{self._rates.get('rgb', 0.0):.1f}",
                depth_hz=f"{self._rates.get('depth', 0.0):.1f}",
                camera_info="yes" if self._camera_info is not None else "no",
                last_output_age_ms="n/a" if self._last_age_ms is None else f"{self._last_age_ms:.1f}",
            )
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        model = str(self._live.get("model_path", ""))
        msg.status = [
            diagnostic_status(
                snap,
                f"{self.get_fully_qualified_name()}: perception",
                model,
                self._state,
                model,
                self.provider,
                self._fatal,
                self._stream_warning,
            )
        ]
        self._diag_pub.publish(msg)


def _descriptor(spec: P.ParamSpec) -> ParameterDescriptor:
    d = ParameterDescriptor(name=spec.name, type=int(_TYPES[spec.type]), description=spec.description)
    if spec.configure_time:
        d.additional_constraints = "applied when the node is next activated (model load)"
    if spec.range is not None:
        lo, hi = spec.range
        if spec.type == "double":
            d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
        else:
            d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]
    return d


def ros_args_with_defaults(argv: Sequence[str]) -> list[str]:
    """argv with `--ros-args --params-file <config/perception.yaml>` placed before the user's own
    arguments, so the packaged defaults apply and any user file or -p overrides them."""
    argv = list(argv)
    prog, rest = (argv[0], argv[1:]) if argv else ("perception_node", [])
    return [prog, "--ros-args", "--params-file", str(P.default_params_file()), "--", *rest]


def usage() -> str:
    """`perception_node --help`: how to start it, and every parameter with its description."""
    from mtl_grasp.ros.parameters import PARAMETERS, default_params_file

    lines = [
        "usage: perception_node [--ros-args [-p NAME:=VALUE] [--params-file FILE] [-r FROM:=TO] ...]",
        "",
        "RGB-D amodal instance perception (ONNX Runtime). Subscribes rgb/image, depth/image and",
        "rgb/camera_info (relative names: remap them); publishes ~/instances (mtl_grasp_msgs/InstanceArray),",
        "~/overlay, ~/markers, ~/visible_labels and /diagnostics. See docs/ros.md.",
        "",
        f"parameters (defaults in {default_params_file()}):",
    ]
    for p in PARAMETERS:
        lines.append(f"  {p.name} ({p.type}): {p.description}")
    return "\n".join(lines)


class ShutdownGuard:
    """SIGINT/SIGTERM as a flag, and a watchdog that ends the process `deadline_s` after a request.

    rclpy's own handler raises KeyboardInterrupt in the main thread at whatever bytecode it is
    executing; inside a `with lock:` block that can leave a lock held forever and hang the join of the
    worker (seen under load). Here the handler only sets an event; the main loop notices it within
    one spin period and shuts down in order. The watchdog (a daemon timer started on the first
    request) flushes the standard streams and calls os._exit(0) if the orderly shutdown has not
    finished by the deadline (a worker stuck in a long inference, a blocked publish, CPU starvation).
    """

    def __init__(self, deadline_s: float = SHUTDOWN_DEADLINE_S) -> None:
        self.requested = threading.Event()
        self._deadline_s = deadline_s
        self._timer: threading.Timer | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.request()

    def request(self) -> None:
        """Ask for shutdown (idempotent) and arm the watchdog."""
        self.requested.set()
        if self._timer is None:
            self._timer = threading.Timer(self._deadline_s, _force_exit)
            self._timer.daemon = True
            self._timer.start()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def _force_exit() -> None:
    with contextlib.suppress(Exception):
        print("perception_node: shutdown deadline reached; exiting now", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(0)


def _spin_until_shutdown(
    executor: SingleThreadedExecutor, node: PerceptionNode, guard: ShutdownGuard, context: Any
) -> None:
    while not guard.requested.is_set() and context.ok():
        executor.spin_once(timeout_sec=0.1)
        if node.shutdown_requested.is_set():  # lifecycle shutdown transition
            guard.request()


def main(args: Sequence[str] | None = None) -> int:
    """Run the node until shutdown (`console_main` is the console entry; this returns instead of exiting).

    Exit codes: 0 after SIGINT, SIGTERM or the lifecycle shutdown transition (within
    SHUTDOWN_DEADLINE_S of the request); 2 for invalid parameters or a missing defaults file.
    """
    raw = list(sys.argv if args is None else args)
    own = raw[1 : raw.index("--ros-args")] if "--ros-args" in raw else raw[1:]
    if "-h" in own or "--help" in own:
        print(usage())
        return 0
    try:
        argv = ros_args_with_defaults(raw)
    except FileNotFoundError as exc:
        print(f"perception_node: {exc}", file=sys.stderr)
        return 2
    apply_default_profile()  # Fast DDS reads it when the first participant is created
    guard = ShutdownGuard()
    guard.install()
    context = rclpy.Context()
    rclpy.init(args=argv, context=context, signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    try:
        worker_done, code = _run(context, guard)
    finally:
        guard.uninstall()
    _finalize(context)
    if not worker_done:
        # a worker thread still inside onnxruntime must not race the interpreter's finalisation
        _force_exit()
    guard.disarm()
    return code


def _run(context: Any, guard: ShutdownGuard) -> tuple[bool, int]:
    """Spin the node until a shutdown request, then stop it in order; (worker ended, exit code).

    Every reference to the node and the executor is gone when this returns, so the context can be
    finalised."""
    node = executor = None
    worker_done, code = True, 0
    try:
        node = PerceptionNode(context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        node.autostart()
        _spin_until_shutdown(executor, node, guard, context)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ParameterException, InvalidParameterTypeException) as exc:
        print(f"perception_node: invalid parameter: {exc}", file=sys.stderr)
        code = 2
    finally:
        guard.request()  # from here on the watchdog bounds the time to exit
        if node is not None:
            print(f"perception_node: {node.totals()}", flush=True)
            worker_done = node._stop_processing() and not node.worker_busy
            with contextlib.suppress(Exception):
                node.destroy_node()
        if executor is not None:  # it caches entities of its last wait: shut it down
            with contextlib.suppress(Exception):
                executor.shutdown(timeout_sec=0.1)
        rclpy.try_shutdown(context=context)
    return worker_done, code


def _finalize(context: Any) -> None:
    """Finalise the rclpy context now: destroys the DDS participant, which removes its shared-memory
    segment from /dev/shm (a process that ends through os._exit without this leaves it behind).
    The context is only finalised once nothing refers to it: call this after the executor is shut
    down and every reference to it and to the node is dropped; the node's reference cycles are
    collected here."""
    import gc

    with contextlib.suppress(Exception):
        gc.collect()
        context.destroy()


def console_main() -> None:
    """Console entry `perception_node`: `main()`, then exit without the interpreter's finalisation.

    Everything that matters is cleaned up inside `main()` (worker, node, DDS participant); tearing
    down numpy, onnxruntime and rclpy module state at exit costs ~0.3 s idle and over a second on a
    loaded machine, which would eat most of the 2 s shutdown budget.
    """
    code = main()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    console_main()
