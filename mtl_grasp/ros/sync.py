"""Pairing of RGB and depth messages by timestamp (the PyPI ROS wheels have no message_filters).

Greedy, monotonic, bounded: when a message arrives, the nearest waiting message of the other stream
with ``|stamp difference| < slop`` (strict, like message_filters) forms a pair; everything at or
before the paired stamps is then discarded in both queues, so emitted pairs never go back in time.
Unpaired messages are evicted once a queue exceeds ``queue_size``. Every message that will never be
part of a pair is counted, so the node can report dropped / unsynchronised frames.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

RGB = "rgb"
DEPTH = "depth"
_STREAMS = (RGB, DEPTH)


def stamp_to_ns(stamp: Any) -> int:
    """A builtin_interfaces/Time (or anything with sec/nanosec) as integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


@dataclass(frozen=True)
class Pair(Generic[T]):
    """One synchronised RGB-depth pair; `stamp_ns` is the RGB stamp."""

    rgb: T
    depth: T
    stamp_ns: int
    depth_stamp_ns: int


@dataclass
class SyncStats:
    """Counters of a PairSynchronizer (monotonic; never reset while it lives)."""

    received_rgb: int = 0
    received_depth: int = 0
    pairs: int = 0
    dropped_rgb: int = 0  # evicted, superseded, late or duplicate: will never be paired
    dropped_depth: int = 0
    rejected: int = 0  # invalid stamps (zero)


class PairSynchronizer(Generic[T]):
    """Approximate-time synchroniser for exactly two streams, RGB and depth.

    Args:
        slop_s: maximum stamp difference of a pair, seconds, >= 0. Strict like message_filters (a
            difference equal to slop is not a pair), except that identical stamps always pair, so
            0 means exact matching.
        queue_size: unpaired messages kept per stream (>= 1).
    """

    def __init__(self, slop_s: float, queue_size: int = 5) -> None:
        self._lock = threading.Lock()
        self.stats = SyncStats()
        self._queues: dict[str, list[tuple[int, T]]] = {RGB: [], DEPTH: []}
        self._last_ns = {RGB: -1, DEPTH: -1}  # newest stamp of each stream that was paired
        self.configure(slop_s, queue_size)

    def configure(self, slop_s: float, queue_size: int) -> None:
        """Change slop and queue size (validated); shrinking a queue evicts its oldest entries."""
        if not (slop_s >= 0.0):  # also rejects NaN
            raise ValueError(f"slop_s: expected a non-negative number of seconds, got {slop_s!r}")
        if int(queue_size) != queue_size or queue_size < 1:
            raise ValueError(f"queue_size: expected an integer >= 1, got {queue_size!r}")
        with self._lock:
            self._slop_ns = int(round(slop_s * 1e9))
            self._queue_size = int(queue_size)
            for stream in _STREAMS:
                self._evict(stream)

    @property
    def slop_s(self) -> float:
        return self._slop_ns / 1e9

    def pending(self) -> dict[str, int]:
        """How many unpaired messages each queue holds."""
        with self._lock:
            return {s: len(q) for s, q in self._queues.items()}

    def add(self, stream: str, stamp_ns: int, msg: T) -> Pair[T] | None:
        """Offer one message; return the pair it completes, if any.

        Raises ValueError for an unknown stream or a zero stamp (a driver that does not stamp its
        images cannot be synchronised; the message is counted as rejected).
        """
        if stream not in _STREAMS:
            raise ValueError(f"stream: expected one of {_STREAMS}, got {stream!r}")
        other = DEPTH if stream == RGB else RGB
        with self._lock:
            self._count(stream, "received")
            if stamp_ns <= 0:
                self.stats.rejected += 1
                raise ValueError(
                    f"{stream}: header.stamp is zero; the camera driver must stamp its images to be "
                    "synchronised"
                )
            if stamp_ns <= self._last_ns[stream]:
                self._count(stream, "dropped")  # older than an emitted pair: would break monotonicity
                return None
            match = self._nearest(other, stamp_ns)
            if match is None:
                self._insert(stream, stamp_ns, msg)
                return None
            other_ns, other_msg = self._queues[other][match]
            # Everything up to the matched partner can no longer be paired monotonically.
            self._purge(other, other_ns, consumed=1)
            self._purge(stream, stamp_ns, consumed=0)
            self._last_ns[stream], self._last_ns[other] = stamp_ns, other_ns
            self.stats.pairs += 1
            if stream == RGB:
                return Pair(rgb=msg, depth=other_msg, stamp_ns=stamp_ns, depth_stamp_ns=other_ns)
            return Pair(rgb=other_msg, depth=msg, stamp_ns=other_ns, depth_stamp_ns=stamp_ns)

    # ---- internals (called with the lock held) ------------------------------------------------
    def _count(self, stream: str, what: str, n: int = 1) -> None:
        key = f"{what}_{stream}"
        setattr(self.stats, key, getattr(self.stats, key) + n)

    def _nearest(self, stream: str, stamp_ns: int) -> int | None:
        queue = self._queues[stream]
        best, best_diff = None, None
        i = bisect.bisect_left(queue, stamp_ns, key=lambda e: e[0])
        for j in (i - 1, i):
            if 0 <= j < len(queue):
                diff = abs(queue[j][0] - stamp_ns)
                if (diff < self._slop_ns or diff == 0) and (best_diff is None or diff < best_diff):
                    best, best_diff = j, diff
        return best

    def _insert(self, stream: str, stamp_ns: int, msg: T) -> None:
        queue = self._queues[stream]
        i = bisect.bisect_left(queue, stamp_ns, key=lambda e: e[0])
        if i < len(queue) and queue[i][0] == stamp_ns:
            queue[i] = (stamp_ns, msg)  # duplicate stamp: the newer message wins
            self._count(stream, "dropped")
        else:
            queue.insert(i, (stamp_ns, msg))
        self._evict(stream)

    def _evict(self, stream: str) -> None:
        queue = self._queues[stream]
        excess = len(queue) - self._queue_size
        if excess > 0:
            del queue[:excess]
            self._count(stream, "dropped", excess)

    def _purge(self, stream: str, stamp_ns: int, consumed: int) -> None:
        """Remove entries stamped at or before `stamp_ns`; all but `consumed` of them count as dropped."""
        queue = self._queues[stream]
        n = bisect.bisect_right(queue, stamp_ns, key=lambda e: e[0])
        del queue[:n]
        self._count(stream, "dropped", n - consumed)
