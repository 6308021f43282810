"""Which input stream starves: per-stream arrival rates over a sliding window (pure Python).

A camera in another process publishing large best-effort images over Fast DDS's default 512 KB
shared-memory segment loses most RGB frames while the (smaller) depth frames arrive, or the other way
round; the node then pairs rarely. `StreamMonitor.update` is called once per diagnostics period with
the synchroniser's monotonic counters and says, in words, what is wrong:
- error: only one stream arrives, or both arrive but never pair (slop, clocks);
- warning: one stream arrives at less than `STARVING_RATIO` of the other's rate (over the window).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

STARVING_RATIO = 0.5
WINDOW_S = 3.0
HINT = (
    "check its remap and QoS; for large images from another process use the Fast DDS shared-memory "
    "profile config/fastdds_shm.xml in both processes (docs/ros.md)"
)


@dataclass
class StreamVerdict:
    error: str = ""
    warning: str = ""
    rates_hz: dict[str, float] = field(default_factory=dict)


class StreamMonitor:
    """Arrival rates of rgb and depth and a verdict per period."""

    def __init__(self, start_s: float, window_s: float = WINDOW_S) -> None:
        """`start_s`: when the counters were zero (the synchroniser's creation), monotonic seconds."""
        self._window_s = window_s
        self._samples: deque[tuple[float, int, int, int]] = deque([(start_s, 0, 0, 0)])

    def update(
        self, now_s: float, received_rgb: int, received_depth: int, pairs: int, slop_s: float
    ) -> StreamVerdict:
        """Record the counters at `now_s` (seconds, monotonic) and judge the last period and window."""
        prev = self._samples[-1]
        self._samples.append((now_s, received_rgb, received_depth, pairs))
        while len(self._samples) > 2 and now_s - self._samples[0][0] > self._window_s:
            self._samples.popleft()
        got_rgb, got_depth, paired = received_rgb - prev[1], received_depth - prev[2], pairs - prev[3]
        first = self._samples[0]
        span = now_s - first[0]
        rates = {
            "rgb": (received_rgb - first[1]) / span if span > 0 else 0.0,
            "depth": (received_depth - first[2]) / span if span > 0 else 0.0,
        }
        verdict = StreamVerdict(rates_hz=rates)
        if paired == 0 and (got_rgb or got_depth):
            if got_rgb and got_depth:
                why = f"rgb and depth arrive but never pair within slop {slop_s:.3f} s"
            else:
                starving = "depth" if got_rgb else "rgb"
                why = f"only {'rgb' if got_rgb else 'depth'} arrives, {starving} starves; {HINT}"
            verdict.error = f"unpaired streams: {why} ({got_rgb} rgb, {got_depth} depth in the last period)"
            return verdict
        fast, slow = sorted(rates, key=lambda k: rates[k], reverse=True)
        if rates[slow] < STARVING_RATIO * rates[fast] and rates[fast] > 0:
            verdict.warning = (
                f"{slow} starves: {rates[slow]:.1f} Hz against {fast} {rates[fast]:.1f} Hz over the last "
                f"{span:.0f} s; {HINT}"
            )
        return verdict
