"""A one-slot mailbox between the subscription callbacks and the inference worker.

Inference never queues a backlog: `put` replaces a pending item that the worker has not taken yet
and counts it as dropped, so the worker always processes the newest frame and latency stays bounded
by one inference whatever the input rate.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class KeepLatest(Generic[T]):
    """Thread-safe single-slot queue that keeps only the newest item."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._has_item = False
        self._closed = False
        self.put_count = 0
        self.dropped = 0  # items replaced before the worker took them

    def put(self, item: T) -> bool:
        """Offer an item; return True if it replaced (dropped) a pending one."""
        with self._cond:
            if self._closed:
                raise RuntimeError("KeepLatest.put: the slot is closed")
            replaced = self._has_item
            if replaced:
                self.dropped += 1
            self._item, self._has_item = item, True
            self.put_count += 1
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None) -> T | None:
        """Wait up to `timeout` seconds for an item and remove it; None on timeout or when closed."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._has_item or self._closed, timeout):
                return None
            if not self._has_item:
                return None
            item, self._item, self._has_item = self._item, None, False
            return item

    def pending(self) -> int:
        """0 or 1: whether an item waits."""
        with self._cond:
            return int(self._has_item)

    def close(self) -> None:
        """Wake every waiter; later `take` calls return None at once and `put` raises."""
        with self._cond:
            self._closed = True
            self._item, self._has_item = None, False
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
