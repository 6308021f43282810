"""Which input stream starves (mtl_grasp.ros.streams) and the transport profile switch
(mtl_grasp.ros.transport): pure functions, no DDS."""

from __future__ import annotations

from mtl_grasp.ros.streams import StreamMonitor
from mtl_grasp.ros.transport import ENV_FASTDDS, ENV_OPT_OUT, apply_default_profile, profile_path


def _feed(monitor: StreamMonitor, seconds: int, rgb_hz: int, depth_hz: int, pair_hz: int):
    verdict = None
    for t in range(1, seconds + 1):
        verdict = monitor.update(float(t), rgb_hz * t, depth_hz * t, pair_hz * t, 0.015)
    return verdict


def test_balanced_streams_are_fine():
    v = _feed(StreamMonitor(0.0), 5, 30, 30, 30)
    assert not v.error and not v.warning and v.rates_hz == {"rgb": 30.0, "depth": 30.0}


def test_a_starving_stream_is_named_with_rates():
    v = _feed(StreamMonitor(0.0), 5, 4, 30, 4)
    assert not v.error and v.warning.startswith("rgb starves: 4.0 Hz against depth 30.0 Hz")
    assert "fastdds_shm.xml" in v.warning
    v = _feed(StreamMonitor(0.0), 5, 30, 10, 10)
    assert v.warning.startswith("depth starves")


def test_one_stream_only_or_never_paired_are_errors():
    v = _feed(StreamMonitor(0.0), 2, 0, 30, 0)
    assert v.error.startswith("unpaired streams: only depth arrives, rgb starves")
    v = _feed(StreamMonitor(0.0), 2, 30, 30, 0)
    assert "never pair within slop 0.015 s" in v.error
    # the first period counts from the synchroniser's creation (counters were zero then)
    assert "only rgb arrives" in StreamMonitor(0.0).update(1.0, 3, 0, 0, 0.015).error


def test_profile_is_applied_only_when_unset_and_not_opted_out():
    env: dict[str, str] = {}
    assert apply_default_profile(env) == str(profile_path()) == env[ENV_FASTDDS]
    mine = {ENV_FASTDDS: "/etc/my_profile.xml"}
    assert apply_default_profile(mine) == "/etc/my_profile.xml" and mine[ENV_FASTDDS] == "/etc/my_profile.xml"
    off = {ENV_OPT_OUT: "none"}
    assert apply_default_profile(off) is None and ENV_FASTDDS not in off
    cyclone = {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}
    assert apply_default_profile(cyclone) is None and ENV_FASTDDS not in cyclone
