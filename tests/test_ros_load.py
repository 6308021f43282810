"""Load test (slow): 30 Hz RGB-D input for 12 s through real DDS; bounded queues and memory.

Run with `pytest -m slow tests/test_ros_load.py -s` to see the printed dropped-frame count and
latency percentiles.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("mtl_grasp_msgs.msg")
pytest.importorskip("onnx")

from test_ros_node import Harness, ctx, domain, model_path  # noqa: E402,F401 - fixtures reused

from mtl_grasp.ros.images import array_to_image  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]
RATE_HZ = 30.0
DURATION_S = 12.0
H, W = 120, 160


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc for memory readings")
def test_30hz_for_12s_keeps_queues_memory_and_latency_bounded(ctx, model_path):  # noqa: F811
    h = Harness(ctx, model_path)
    try:
        h.start()
        rng = np.random.default_rng(0)
        rgb = array_to_image(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), "rgb8")
        depth = array_to_image(rng.uniform(0.5, 0.8, (H, W)).astype(np.float32), "32FC1")
        node = h.node
        rss, pending_max, sent, published = [], 0, 0, 0
        start = time.monotonic()
        next_at = start
        while time.monotonic() - start < DURATION_S:
            now = time.monotonic()
            if now >= next_at:
                h.send(rgb, depth)
                sent += 1
                next_at += 1.0 / RATE_HZ
            h.executor.spin_once(timeout_sec=max(0.0, min(0.005, next_at - time.monotonic())))
            pending_max = max(pending_max, node._slot.pending(), *node._sync.pending().values())
            if sent % 30 == 0:
                # the test's own copies of the outputs must not count as node memory
                published += len(h.received["instances"])
                for received in h.received.values():
                    received.clear()
                rss.append(_rss_mb())
        h.spin_until(lambda: False, timeout=1.0)  # drain
        stats, sync = node.stats, node._sync.stats
        snap = stats.snapshot()
        published += len(h.received["instances"])
        print(
            f"\nload: sent {sent} pairs at {RATE_HZ:.0f} Hz ({W}x{H}), node received "
            f"{sync.received_rgb} rgb / {sync.received_depth} depth, paired {sync.pairs}, "
            f"processed {stats.frames}, published {published}, "
            f"dropped busy {node.dropped_busy}, dropped unsynced {sync.dropped_rgb + sync.dropped_depth}, "
            f"latency p50 {snap.latency_p50_ms:.2f} ms p95 {snap.latency_p95_ms:.2f} ms, fps {snap.fps:.1f}, "
            f"RSS {rss[1]:.0f} -> {rss[-1]:.0f} MB, max pending {pending_max}"
        )
        assert sent >= RATE_HZ * DURATION_S * 0.8
        assert stats.bad_frames == 0
        # every pair is either processed or counted as dropped (plus at most one in flight)
        assert sync.pairs - (stats.frames + node.dropped_busy) in (0, 1)
        assert stats.frames >= 0.5 * sent  # the node keeps up with most frames on 2 shared cores
        assert pending_max <= 5  # keep-latest slot (1) and sync queues (sync_queue_size = 5)
        assert snap.latency_p95_ms < 500
        assert rss[-1] - rss[1] < 20, f"memory grew {rss[1]:.0f} -> {rss[-1]:.0f} MB"
        # a burst much faster than inference: the mailbox drops instead of queueing a backlog
        before = node.dropped_busy
        for _ in range(60):
            h.send(rgb, depth)
            h.executor.spin_once(timeout_sec=0.0)
        h.spin_until(lambda: False, timeout=1.0)
        print(f"burst of 60 pairs: dropped busy {node.dropped_busy - before}")
        assert node._slot.pending() == 0
        assert node.stats.frames + node.dropped_busy >= node._sync.stats.pairs - 1
    finally:
        h.close()
