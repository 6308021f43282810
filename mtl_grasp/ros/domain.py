"""Pick a free ROS_DOMAIN_ID for isolated runs (tests, benchmarks, demos) on one machine.

Same scheme as ament_cmake_ros' domain_coordinator: holding a bound TCP socket on port 32768 + id
reserves the id for as long as the context manager is open, so parallel processes never share one.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
from collections.abc import Iterator

BASE_PORT = 32768
DOMAIN_IDS = range(1, 101)  # ROS_DOMAIN_ID 0..101 is safe on every platform; 0 is the default: avoid


@contextlib.contextmanager
def reserved_domain_id(exclude: tuple[int, ...] = ()) -> Iterator[int]:
    """Yield a domain id in 1..100 that no other user of this scheme holds; release it on exit."""
    ids = [i for i in DOMAIN_IDS if i not in exclude]
    random.Random(os.getpid()).shuffle(ids)  # spread concurrent processes over the range
    for domain_id in ids:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", BASE_PORT + domain_id))
        except OSError:
            sock.close()
            continue
        try:
            yield domain_id
        finally:
            sock.close()
        return
    raise RuntimeError(f"no free ROS domain id in {DOMAIN_IDS.start}..{DOMAIN_IDS.stop - 1}")


def localhost_only() -> None:
    """Restrict DDS discovery to this machine (set before the first rclpy.init)."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
