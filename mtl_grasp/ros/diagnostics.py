"""Runtime statistics of the node and their diagnostic_msgs view (no diagnostic_updater needed).

`NodeStats` is pure Python (thread-safe, bounded memory); `diagnostic_status` turns a snapshot into a
diagnostic_msgs/DiagnosticStatus with OK / WARN / ERROR decided here, in one place.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

OK, WARN, ERROR, STALE = 0, 1, 2, 3  # diagnostic_msgs/DiagnosticStatus levels


@dataclass
class StatsSnapshot:
    """One report's worth of numbers (latencies in milliseconds)."""

    frames: int
    fps: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    inference_p50_ms: float | None
    overhead_p50_ms: float | None
    dropped_busy: int
    dropped_unsynced: int
    bad_frames: int
    errors_since_last: int
    last_error: str
    last_error_age_s: float | None
    extra: dict[str, str] = field(default_factory=dict)


class NodeStats:
    """Counters and bounded windows of per-frame timings.

    Args:
        window: number of recent frames kept for percentiles.
        fps_window_s: frames completed in the last this-many seconds give the fps.
    """

    def __init__(self, window: int = 300, fps_window_s: float = 5.0, clock=time.monotonic) -> None:
        if window < 1 or fps_window_s <= 0:
            raise ValueError(f"window >= 1 and fps_window_s > 0 expected, got {window}, {fps_window_s}")
        self._lock = threading.Lock()
        self._clock = clock
        self._latency: deque[float] = deque(maxlen=window)
        self._inference: deque[float] = deque(maxlen=window)
        self._done_at: deque[float] = deque(maxlen=window)
        self._fps_window_s = fps_window_s
        self.frames = 0
        self.bad_frames = 0
        self._errors_since_last = 0
        self.last_error = ""
        self._last_error_at: float | None = None

    def record_frame(self, latency_s: float, inference_s: float) -> None:
        """One frame published: `latency_s` from pair ready to published, `inference_s` inside it."""
        with self._lock:
            self.frames += 1
            self._latency.append(latency_s)
            self._inference.append(inference_s)
            self._done_at.append(self._clock())

    def record_error(self, message: str, bad_frame: bool = True) -> None:
        """An input or processing error (counted as a bad frame unless `bad_frame` is False)."""
        with self._lock:
            if bad_frame:
                self.bad_frames += 1
            self._errors_since_last += 1
            self.last_error = message
            self._last_error_at = self._clock()

    @property
    def last_inference_s(self) -> float | None:
        """Detector time of the most recent frame, seconds (None before the first)."""
        with self._lock:
            return self._inference[-1] if self._inference else None

    def latencies_ms(self) -> np.ndarray:
        with self._lock:
            return np.asarray(self._latency, dtype=np.float64) * 1e3

    def snapshot(
        self, dropped_busy: int = 0, dropped_unsynced: int = 0, reset_errors: bool = True
    ) -> StatsSnapshot:
        """Current numbers; `reset_errors` starts a new error window (one per diagnostics period)."""
        with self._lock:
            now = self._clock()
            recent = [t for t in self._done_at if now - t <= self._fps_window_s]
            # n frames completed over the span between the first and now: n - 1 intervals
            span = now - recent[0] if recent else 0.0
            fps = (len(recent) - 1) / span if span > 0 and len(recent) > 1 else 0.0
            lat = np.asarray(self._latency, dtype=np.float64) * 1e3
            inf = np.asarray(self._inference, dtype=np.float64) * 1e3

            def pct(a: np.ndarray, q: float) -> float | None:
                return float(np.percentile(a, q)) if a.size else None

            errors = self._errors_since_last
            if reset_errors:
                self._errors_since_last = 0
            return StatsSnapshot(
                frames=self.frames,
                fps=fps,
                latency_p50_ms=pct(lat, 50),
                latency_p95_ms=pct(lat, 95),
                inference_p50_ms=pct(inf, 50),
                overhead_p50_ms=pct(lat - inf, 50),
                dropped_busy=dropped_busy,
                dropped_unsynced=dropped_unsynced,
                bad_frames=self.bad_frames,
                errors_since_last=errors,
                last_error=self.last_error,
                last_error_age_s=None if self._last_error_at is None else now - self._last_error_at,
            )


def _fmt(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def diagnostic_status(
    snap: StatsSnapshot,
    name: str,
    hardware_id: str,
    state: str,
    model: str,
    provider: str,
    fatal: str = "",
    warning: str = "",
) -> Any:
    """A DiagnosticStatus for one period.

    Level: ERROR when `fatal` is set (e.g. the model could not be loaded) or errors happened in this
    period; WARN when `warning` is set (e.g. one input stream starves) or when active but no frame
    was processed; OK otherwise.
    """
    from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

    if fatal:
        level, message = ERROR, fatal
    elif snap.errors_since_last:
        level, message = ERROR, f"{snap.errors_since_last} error(s): {snap.last_error}"
    elif state != "active":
        level, message = WARN, f"node is {state}"
    elif warning:
        level, message = WARN, warning
    elif snap.fps == 0.0:
        level, message = WARN, "active, no frame processed recently (inputs? rgb/depth pairing?)"
    else:
        level, message = OK, f"{snap.fps:.1f} fps"
    status = DiagnosticStatus()
    status.level = bytes([level])
    status.name = name
    status.hardware_id = hardware_id
    status.message = message[:500]
    values = {
        "state": state,
        "model": model,
        "provider": provider,
        "fps": f"{snap.fps:.2f}",
        "frames": str(snap.frames),
        "latency_p50_ms": _fmt(snap.latency_p50_ms),
        "latency_p95_ms": _fmt(snap.latency_p95_ms),
        "inference_p50_ms": _fmt(snap.inference_p50_ms),
        "node_overhead_p50_ms": _fmt(snap.overhead_p50_ms),
        "dropped_frames_busy": str(snap.dropped_busy),
        "dropped_frames_unsynced": str(snap.dropped_unsynced),
        "bad_frames": str(snap.bad_frames),
        "last_error": snap.last_error,
        "last_error_age_s": _fmt(snap.last_error_age_s, 1),
        **snap.extra,
    }
    status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
    return status
