"""DDS-free tests: RGB-depth synchroniser, keep-latest mailbox, statistics, parameter table."""

from __future__ import annotations

import threading
import time

import pytest

from mtl_grasp.ros.diagnostics import ERROR, OK, WARN, NodeStats
from mtl_grasp.ros.keep_latest import KeepLatest
from mtl_grasp.ros.parameters import PARAMETERS, default_params_file, validate
from mtl_grasp.ros.sync import DEPTH, RGB, PairSynchronizer

MS = 1_000_000  # ns


def test_exact_match_pairs():
    s = PairSynchronizer(0.015)
    assert s.add(RGB, 100 * MS, "r1") is None
    pair = s.add(DEPTH, 100 * MS, "d1")
    assert (pair.rgb, pair.depth, pair.stamp_ns) == ("r1", "d1", 100 * MS)
    assert s.stats.pairs == 1 and s.pending() == {RGB: 0, DEPTH: 0}


def test_jitter_within_slop_pairs_and_slop_is_strict():
    s = PairSynchronizer(0.010)
    s.add(RGB, 100 * MS, "r1")
    assert s.add(DEPTH, 110 * MS, "d_at_slop") is None  # |diff| == slop: not a pair
    pair = s.add(RGB, 105 * MS, "r2")  # 5 ms from d_at_slop
    assert (pair.rgb, pair.depth, pair.depth_stamp_ns) == ("r2", "d_at_slop", 110 * MS)
    assert s.stats.dropped_rgb == 1  # r1 is older than the emitted pair: can never pair now


def test_zero_slop_means_exact_only():
    s = PairSynchronizer(0.0)
    s.add(RGB, 100 * MS, "r")
    assert s.add(DEPTH, 100 * MS + 1, "d") is None
    assert s.add(DEPTH, 100 * MS, "d2").depth == "d2"


def test_nearest_partner_is_chosen():
    s = PairSynchronizer(0.020)
    s.add(DEPTH, 90 * MS, "d90")
    s.add(DEPTH, 99 * MS, "d99")
    s.add(DEPTH, 115 * MS, "d115")
    pair = s.add(RGB, 100 * MS, "r100")
    assert pair.depth == "d99"
    assert s.stats.dropped_depth == 1  # d90 purged; d115 still waits
    assert s.pending() == {RGB: 0, DEPTH: 1}
    assert s.add(RGB, 116 * MS, "r116").depth == "d115"


def test_missing_partner_is_evicted_and_counted():
    s = PairSynchronizer(0.010, queue_size=3)
    for i in range(10):
        assert s.add(RGB, (i + 1) * 100 * MS, f"r{i}") is None
    assert s.pending()[RGB] == 3
    assert s.stats.dropped_rgb == 7 and s.stats.received_rgb == 10 and s.stats.pairs == 0


def test_output_is_monotonic_under_out_of_order_arrival():
    s = PairSynchronizer(0.005, queue_size=10)
    s.add(RGB, 200 * MS, "r200")
    s.add(RGB, 100 * MS, "r100")  # late arrival, older
    assert s.add(DEPTH, 200 * MS, "d200").rgb == "r200"
    assert s.stats.dropped_rgb == 1  # r100 purged: it is older than the emitted pair
    assert s.add(DEPTH, 100 * MS, "d100") is None  # late depth can never pair any more
    assert s.stats.dropped_depth == 1
    stamps = []
    for t in (300, 290, 310, 320):
        s.add(DEPTH, t * MS, f"d{t}")
        pair = s.add(RGB, t * MS, f"r{t}")
        if pair:
            stamps.append(pair.stamp_ns)
    assert stamps == sorted(stamps) and len(stamps) >= 3


def test_duplicate_stamp_newer_message_wins():
    s = PairSynchronizer(0.005)
    s.add(RGB, 100 * MS, "old")
    s.add(RGB, 100 * MS, "new")
    assert s.add(DEPTH, 100 * MS, "d").rgb == "new"
    assert s.stats.dropped_rgb == 1


def test_zero_stamp_and_bad_arguments_are_rejected():
    s = PairSynchronizer(0.01)
    with pytest.raises(ValueError, match="stamp is zero"):
        s.add(RGB, 0, "r")
    assert s.stats.rejected == 1
    with pytest.raises(ValueError, match="stream"):
        s.add("ir", 1, "x")
    with pytest.raises(ValueError, match="slop_s"):
        PairSynchronizer(-0.1)
    with pytest.raises(ValueError, match="slop_s"):
        PairSynchronizer(float("nan"))
    with pytest.raises(ValueError, match="queue_size"):
        PairSynchronizer(0.01, queue_size=0)


def test_reconfigure_shrinks_queues():
    s = PairSynchronizer(0.001, queue_size=5)
    for i in range(5):
        s.add(DEPTH, (i + 1) * 100 * MS, i)
    s.configure(0.02, 2)
    assert s.pending()[DEPTH] == 2 and s.stats.dropped_depth == 3 and s.slop_s == pytest.approx(0.02)


# ---- keep-latest ------------------------------------------------------------------------------
def test_keep_latest_replaces_and_counts():
    slot: KeepLatest[int] = KeepLatest()
    assert slot.put(1) is False
    assert slot.put(2) is True and slot.put(3) is True
    assert slot.dropped == 2 and slot.pending() == 1
    assert slot.take(0) == 3
    assert slot.take(0.01) is None


def test_keep_latest_wakes_worker_and_closes():
    slot: KeepLatest[str] = KeepLatest()
    got = []
    worker = threading.Thread(target=lambda: got.append(slot.take(5.0)))
    worker.start()
    time.sleep(0.05)
    slot.put("x")
    worker.join(2)
    assert got == ["x"]
    worker = threading.Thread(target=lambda: got.append(slot.take(5.0)))
    worker.start()
    slot.close()
    worker.join(2)
    assert not worker.is_alive() and got[-1] is None
    with pytest.raises(RuntimeError, match="closed"):
        slot.put("y")


# ---- statistics ------------------------------------------------------------------------------
def test_stats_percentiles_fps_and_error_window():
    now = [0.0]
    stats = NodeStats(window=100, fps_window_s=5.0, clock=lambda: now[0])
    for i in range(50):
        now[0] = i * 0.1
        stats.record_frame(latency_s=0.010 + (0.1 if i >= 45 else 0.0), inference_s=0.008)
    snap = stats.snapshot(dropped_busy=3, dropped_unsynced=4)
    assert snap.frames == 50
    assert snap.fps == pytest.approx(10.0, rel=0.05)
    assert snap.latency_p50_ms == pytest.approx(10.0)
    assert snap.latency_p95_ms == pytest.approx(110.0)
    assert snap.overhead_p50_ms == pytest.approx(2.0)
    assert (snap.dropped_busy, snap.dropped_unsynced, snap.errors_since_last) == (3, 4, 0)
    stats.record_error("boom")
    assert stats.snapshot().errors_since_last == 1
    assert stats.snapshot().errors_since_last == 0  # new window
    assert stats.bad_frames == 1 and stats.last_error == "boom"
    for _ in range(1000):
        stats.record_frame(0.01, 0.01)
    assert stats.latencies_ms().size == 100  # bounded memory


def test_diagnostic_levels():
    pytest.importorskip("diagnostic_msgs.msg")
    from mtl_grasp.ros.diagnostics import diagnostic_status

    now = [0.0]
    stats = NodeStats(clock=lambda: now[0])
    snap = stats.snapshot()
    assert diagnostic_status(snap, "n", "h", "active", "m", "cpu").level == bytes([WARN])
    assert diagnostic_status(snap, "n", "h", "unconfigured", "m", "cpu", fatal="no model").level == bytes(
        [ERROR]
    )
    for i in range(3):
        now[0] = i * 0.1
        stats.record_frame(0.01, 0.005)
    status = diagnostic_status(stats.snapshot(), "n", "h", "active", "m.onnx", "CPUExecutionProvider")
    assert status.level == bytes([OK])
    values = {kv.key: kv.value for kv in status.values}
    assert values["provider"] == "CPUExecutionProvider" and values["model"] == "m.onnx"
    for key in ("fps", "latency_p50_ms", "latency_p95_ms", "dropped_frames_busy", "last_error"):
        assert key in values
    stats.record_error("bad encoding")
    status = diagnostic_status(stats.snapshot(), "n", "h", "active", "m", "cpu")
    assert status.level == bytes([ERROR]) and "bad encoding" in status.message


# ---- parameters ------------------------------------------------------------------------------
def test_every_parameter_has_a_default_in_the_yaml_and_nothing_else():
    import yaml

    doc = yaml.safe_load(default_params_file().read_text())
    assert list(doc) == ["/**"]  # wildcard: matches the node in any namespace
    params = doc["/**"]["ros__parameters"]
    assert set(params) == {p.name for p in PARAMETERS}
    for spec in PARAMETERS:
        assert validate(spec.name, params[spec.name]) is None, spec.name
        if spec.range is not None:
            assert spec.range[0] <= params[spec.name] <= spec.range[1], spec.name


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("depth_unit", "cm", "depth_unit: expected one of"),
        ("providers", [], "non-empty"),
        ("providers", ["FooExecutionProvider"], "unknown execution provider"),
        ("model_path", " ", "model_path"),
        ("slop", float("nan"), "finite"),
    ],
)
def test_parameter_validation_names_the_problem(name, value, match):
    err = validate(name, value)
    assert err is not None and match in err


def test_parameter_validation_accepts_aliases_and_foreign_names():
    assert validate("providers", ["cpu"]) is None
    assert validate("providers", ["CUDAExecutionProvider", "CPUExecutionProvider"]) is None
    assert validate("qos_overrides./rgb/image.subscription.depth", 1) is None
