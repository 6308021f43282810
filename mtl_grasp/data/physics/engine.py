"""The pybullet import (an optional dependency: the ``data`` extra) and one simulation per scene.

``pybullet()`` returns the module or raises :class:`MissingPybullet` naming the extra to install, so
every entry point fails with one readable line when pybullet is absent.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

__all__ = ["MissingPybullet", "connect", "pybullet", "pybullet_data_path"]

INSTALL_HINT = (
    "the physics scene generator needs pybullet: install the data extra with "
    "`pip install -e '.[data]' -c constraints.txt` (or `make demo`/`make test`, which do), or use the "
    "analytic generator (`--engine analytic`)"
)


class MissingPybullet(ImportError):  # noqa: N818 - reads as the condition, like ModuleNotFoundError
    """pybullet is not installed; the message says how to install it (the CLI prints it as one line)."""

    install_hint = True


@functools.cache
def pybullet():
    """The ``pybullet`` module (imported once)."""
    try:
        import pybullet as pb
    except ImportError as exc:
        raise MissingPybullet(f"pybullet: not installed ({exc}); {INSTALL_HINT}") from exc
    return pb


@functools.cache
def pybullet_data_path() -> str:
    """The folder of the ``pybullet_data`` package (meshes, URDFs) that ships with pybullet."""
    pybullet()
    import pybullet_data

    return pybullet_data.getDataPath()


@contextlib.contextmanager
def connect(gravity: float = -9.81) -> Iterator[int]:
    """A fresh headless (DIRECT) pybullet simulation; disconnected on exit.

    One simulation per scene (~20 ms to open) is what makes a scene independent of the scenes made
    before it in the same process: no cached shapes, textures or body ids carry over.
    """
    pb = pybullet()
    client = pb.connect(pb.DIRECT)
    try:
        pb.setGravity(0, 0, gravity, physicsClientId=client)
        yield client
    finally:
        pb.disconnect(client)
