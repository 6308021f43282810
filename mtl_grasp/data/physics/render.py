"""Render pybullet worlds with the CPU TinyRenderer: RGB, metric z-depth and a per-pixel body id.

Reusable for any pybullet scene (bins here; rooms or streets of primitives elsewhere)::

    from mtl_grasp.data.physics import camera, render
    intr = camera.Intrinsics.from_fov(256, 256, 50)
    pose = camera.look_at(eye=(0, -1, 1), target=(0, 0, 0), up=(0, 0, 1))
    img = render.render(client, intr, pose)           # img.rgb, img.depth_m, img.body_ids
    part = render.render(client, intr, pose, window=(10, 20, 74, 84))   # the same pixels, 64x64 block

Conventions are those of :mod:`.camera` (OpenCV optical frame, ``world_from_camera`` poses, metres,
pixel ``(i, j)`` centred at ``(j + 0.5, i + 0.5)``). TinyRenderer samples pixel ``(i, j)`` at
``(j, i + 1)`` instead of the centre (measured: its viewport maps NDC to ``[0, W]`` and rasterises at
integer coordinates with y up); :func:`render` shifts the principal point by ``(-0.5, +0.5)`` so that
the rendered pixel grid is the pinhole one of the intrinsics (tested against projected box corners).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtl_grasp.data.physics.camera import Intrinsics, opengl_projection, opengl_view
from mtl_grasp.data.physics.engine import pybullet

__all__ = ["DEFAULT_LIGHT", "Light", "Rendered", "depth_from_buffer", "render"]

#: where TinyRenderer samples pixel (i, j), relative to the pixel centre (j + 0.5, i + 0.5)
SAMPLE_OFFSET = (-0.5, 0.5)
BODY_ID_MASK = (1 << 24) - 1  # pybullet packs (link index + 1) << 24 into the segmentation value


@dataclass(frozen=True)
class Light:
    """TinyRenderer's one directional light (direction *towards* the light, world frame) and shading."""

    direction: tuple[float, float, float] = (0.3, -0.4, 1.0)
    colour: tuple[float, float, float] = (1.0, 1.0, 1.0)
    distance: float = 2.0
    ambient: float = 0.55
    diffuse: float = 0.5
    specular: float = 0.08
    shadow: bool = True


DEFAULT_LIGHT = Light()


@dataclass
class Rendered:
    """One render: ``rgb`` uint8 [H, W, 3]; ``depth_m`` float32 [H, W] z-distance along the optical axis
    in metres (``inf`` where nothing was hit); ``body_ids`` int32 [H, W] pybullet body unique id, -1 =
    nothing."""

    rgb: np.ndarray
    depth_m: np.ndarray
    body_ids: np.ndarray


def depth_from_buffer(buffer: np.ndarray, near: float, far: float) -> np.ndarray:
    """OpenGL depth buffer values in [0, 1] -> z-distance in metres (``inf`` at the far plane)."""
    buffer = np.asarray(buffer, np.float64)
    z = far * near / (far - (far - near) * buffer)
    return np.where(buffer >= 1.0, np.inf, z).astype(np.float32)


def render(
    client: int,
    intr: Intrinsics,
    world_from_camera: np.ndarray,
    window: tuple[int, int, int, int] | None = None,
    near: float = 0.05,
    far: float = 5.0,
    light: Light | None = DEFAULT_LIGHT,
    rgb: bool = True,
) -> Rendered:
    """Render pybullet client ``client`` seen by ``intr`` at ``world_from_camera``.

    ``window = (x0, y0, x1, y1)`` renders only that pixel block (exactly those pixels of the full
    image, much cheaper for a small block). ``light=None`` uses pybullet's default lighting;
    ``rgb=False`` still returns the RGB buffer (TinyRenderer always shades) but skips the shadow pass.
    """
    if window is not None:
        intr = intr.crop(*window)
    shifted = Intrinsics(
        intr.fx, intr.fy, intr.cx + SAMPLE_OFFSET[0], intr.cy + SAMPLE_OFFSET[1], intr.width, intr.height
    )
    kwargs = {}
    if light is not None:
        kwargs = dict(
            lightDirection=list(light.direction), lightColor=list(light.colour),
            lightDistance=light.distance, lightAmbientCoeff=light.ambient,
            lightDiffuseCoeff=light.diffuse, lightSpecularCoeff=light.specular,
            shadow=int(light.shadow and rgb),
        )  # fmt: skip
    w, h = intr.width, intr.height
    _, _, colour, depth, seg = pybullet().getCameraImage(
        w, h, opengl_view(world_from_camera), opengl_projection(shifted, near, far),
        renderer=pybullet().ER_TINY_RENDERER, physicsClientId=client, **kwargs,
    )  # fmt: skip
    colour = np.asarray(colour, np.uint8).reshape(h, w, 4)[:, :, :3]
    seg = np.asarray(seg, np.int64).reshape(h, w)
    ids = np.where(seg < 0, -1, seg & BODY_ID_MASK).astype(np.int32)
    return Rendered(
        np.ascontiguousarray(colour), depth_from_buffer(np.reshape(depth, (h, w)), near, far), ids
    )
