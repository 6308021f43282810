"""The Fast DDS transport profile for large images across processes (config/fastdds_shm.xml).

Fast DDS gives every participant a 512 KB shared-memory segment by default; a 640x480 rgb8 (0.9 MB) or
32FC1 (1.2 MB) image does not fit, and best-effort samples are then mostly lost between processes
(measured numbers in docs/ros.md). The profile gives the shared-memory transport a 32 MiB segment and
keeps UDPv4 for discovery and other hosts. The *writer's* segment carries a sample, so the camera
driver's process needs the profile as much as the node's: Fast DDS reads it from the environment
variable FASTDDS_DEFAULT_PROFILES_FILE when the first participant is created.

`apply_default_profile()` sets that variable for the calling process (before rclpy.init) when it is
unset; `perception_node` and `mgn_replayer` call it. Opt out with MTL_GRASP_FASTDDS_PROFILE=none, or
point FASTDDS_DEFAULT_PROFILES_FILE at your own file (it is never overwritten).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

ENV_FASTDDS = "FASTDDS_DEFAULT_PROFILES_FILE"
ENV_OPT_OUT = "MTL_GRASP_FASTDDS_PROFILE"
PROFILE_NAME = "fastdds_shm.xml"


def profile_path() -> Path:
    """config/fastdds_shm.xml of the source tree, else of the installed package's share directory."""
    from mtl_grasp.ros.parameters import packaged_config

    return packaged_config(PROFILE_NAME)


def uses_fastdds(env: MutableMapping[str, str]) -> bool:
    """Whether the ROS middleware will be Fast DDS (the default RMW of Kilted)."""
    rmw = env.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    return rmw in ("", "rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp")


def apply_default_profile(env: MutableMapping[str, str] | None = None) -> str | None:
    """Set FASTDDS_DEFAULT_PROFILES_FILE to the packaged profile unless it is set, opted out of, or
    another middleware is selected. Call before rclpy.init. Returns the path in effect (None: none)."""
    env = os.environ if env is None else env
    if ENV_FASTDDS in env:
        return env[ENV_FASTDDS] or None
    if env.get(ENV_OPT_OUT, "").lower() in ("none", "off", "0") or not uses_fastdds(env):
        return None
    try:
        path = str(profile_path())
    except FileNotFoundError:
        return None
    env[ENV_FASTDDS] = path
    return path
