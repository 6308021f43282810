"""One physically simulated scene: settle a pile, place cameras, render, label, measure depth.

``simulate_scene(index, seed, settings)`` is a pure function of its arguments: it draws everything
from ``numpy.random.default_rng([seed, index, attempt])`` inside a fresh pybullet simulation, so a
scene does not depend on which scenes were made before it, in which process, or how many there are.
A pile that does not settle is drawn again with ``attempt + 1`` (the reason is logged and returned).
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtl_grasp.data import layout
from mtl_grasp.data.physics.articles import category_names
from mtl_grasp.data.physics.camera import Intrinsics, hemisphere_poses, invert_pose, project_points
from mtl_grasp.data.physics.engine import connect
from mtl_grasp.data.physics.labels import amodal_masks, instance_map, order_json
from mtl_grasp.data.physics.pile import (
    Pile,
    UnsettledPile,
    build_pile,
    geometry_points,
    pose_matrix,
    rests_on,
)
from mtl_grasp.data.physics.render import Light, render
from mtl_grasp.data.physics.sensor import SensorModel, measure_depth
from mtl_grasp.data.writer import ViewData

__all__ = ["SceneSettings", "SimScene", "SimView", "simulate_scene"]

log = logging.getLogger("mtl_grasp.data.physics")
MIN_IMAGE_SIZE = 32
FRAME_NOTE = (
    "world: origin at the centre of the bin floor's top surface, z up, x along the bin's length; "
    "camera: OpenCV optical frame (x right, y down, z forward); pose_relative_to_world = "
    "world_from_camera (maps camera coordinates to world coordinates); object poses map the object's "
    "geometry frame to world (pose_relative_to_world) or camera (pose_relative_to_camera) coordinates; "
    "translations in cm"
)


@dataclass(frozen=True)
class SceneSettings:
    """What a scene looks like: image size (px, square), viewpoints, article count range (inclusive),
    polar angle range of the views after the top-down view 0, vertical field of view range, the
    sensor model and the number of tries for a pile that does not settle."""

    image_size: int = 256
    views: int = 1
    objects: tuple[int, int] = (5, 40)
    polar_deg: tuple[float, float] = (15.0, 45.0)
    fov_deg: tuple[float, float] = (40.0, 50.0)
    sensor: SensorModel = field(default_factory=SensorModel)
    max_attempts: int = 5
    # Speed-ups of the amodal renders (the benchmark switches them off to measure them; labels are equal):
    amodal_skip_unoccluded: bool = True  # no single-object render for objects nothing can cover
    amodal_windows: bool = True  # render each object on a window around it, not the whole image

    def check(self) -> SceneSettings:
        """Raise ValueError naming the argument if a setting is impossible."""
        if self.image_size < MIN_IMAGE_SIZE:
            raise ValueError(f"image_size: expected >= {MIN_IMAGE_SIZE} pixels, found {self.image_size}")
        if self.views < 1:
            raise ValueError(f"views: expected at least 1 viewpoint, found {self.views}")
        lo, hi = self.objects
        if not 1 <= lo <= hi:
            raise ValueError(f"objects: expected a range 1 <= min <= max, found {lo}..{hi}")
        if hi > 80:
            raise ValueError(f"objects: at most 80 articles fit a bin, found max {hi}")
        if not 0 <= self.polar_deg[0] <= self.polar_deg[1] < 80:
            raise ValueError(f"polar_deg: expected 0 <= min <= max < 80 degrees, found {self.polar_deg}")
        return self


@dataclass
class SimView(ViewData):
    """A :class:`ViewData` plus what the tests check against: noise-free z-depth (m, inf = nothing)
    and with ``keep_surfaces`` every object's noise-free surface depth [N, H, W] (m, inf outside the
    object); the camera is in ``scene`` (pose) and ``camera`` (intrinsics)."""

    depth_true_m: np.ndarray | None = None
    surfaces_m: np.ndarray | None = None
    renders: int = 0
    edge_fixes: int = 0


@dataclass
class SimScene:
    """The views of one scene, the attempts it took, why earlier ones failed, and the time per stage."""

    views: list[SimView]
    attempts: int
    reasons: list[str]
    timings: dict[str, float]
    removed: int


def _camera_poses(
    rng: np.random.Generator, pile: Pile, intr: Intrinsics, views: int, polar
) -> list[np.ndarray]:
    """View 0 straight down; the others on the hemisphere; each as near as the whole bin allows."""
    b = pile.bin
    rim = np.array([[sx * (b.length / 2 + b.wall), sy * (b.width / 2 + b.wall), z]
                    for sx in (-1, 1) for sy in (-1, 1) for z in (0.0, b.height)])  # fmt: skip
    poses = []
    for v in range(views):
        pol = 0.0 if v == 0 else float(rng.uniform(*polar))
        az, roll = (0.0, 0.0) if v == 0 else (float(rng.uniform(0, 360)), float(rng.uniform(-8, 8)))
        target = np.array([*rng.uniform(-0.02, 0.02, 2), rng.uniform(0.0, 0.5) * b.height])
        lo, hi = 0.15, 5.0
        for _ in range(20):  # bisection: the nearest distance at which the rim fits with a 3 % margin
            mid = 0.5 * (lo + hi)
            uvz = project_points(rim, intr, hemisphere_poses(target, [mid], [pol], [az], [roll])[0])
            m = 0.03 * intr.width
            fits = (uvz[:, 2] > 0).all() and (uvz[:, :2] >= m).all() and (uvz[:, 0] <= intr.width - m).all() \
                and (uvz[:, 1] <= intr.height - m).all()  # fmt: skip
            lo, hi = (lo, mid) if fits else (mid, hi)
        poses.append(hemisphere_poses(target, [hi * rng.uniform(1.0, 1.12)], [pol], [az], [roll])[0])
    return poses


def _cm(pose: np.ndarray) -> list[list[float]]:
    out = np.array(pose, np.float64)
    out[:3, 3] *= 100.0
    return [[round(float(x), 6) for x in row] for row in out]


def _scene_json(pile: Pile, intr: Intrinsics, world_from_camera: np.ndarray, names: dict[int, str]) -> dict:
    """``<v>_scene.json``: camera pose + intrinsics, bin geometry, every object's geometry and pose."""
    from mtl_grasp.data.physics.engine import pybullet

    camera_from_world = invert_pose(world_from_camera)
    objects = []
    for k, it in enumerate(pile.items):
        com = pose_matrix(*pybullet().getBasePositionAndOrientation(it.body, physicsClientId=pile.client))
        world = com @ it.link_in_com
        pts = geometry_points(pile.client, it)
        objects.append({
            "id": k + 1, "category_id": it.category_id, "category": names[it.category_id],
            "shape": it.spec["shape"], "dims_cm": [round(100 * d, 4) for d in it.spec["dims"]],
            "mesh": it.spec["mesh"], "mesh_scale": round(it.scale, 6),
            "pose_relative_to_world": _cm(world), "pose_relative_to_camera": _cm(camera_from_world @ world),
            "aabb_cm": [[round(100 * float(x), 4) for x in pts.min(axis=0)],
                        [round(100 * float(x), 4) for x in pts.max(axis=0)]],
        })  # fmt: skip
    return {
        "format": layout.SCENE_FORMAT, "units": "cm", "frames": FRAME_NOTE,
        "camera": {"pose_relative_to_world": _cm(world_from_camera), "intrinsics": intr.as_dict()},
        "bin": {**pile.bin.as_dict(), "pose_relative_to_world": _cm(np.eye(4))},
        "objects": objects,
    }  # fmt: skip


def _render_view(pile, intr, pose, light, rng, settings, keep_surfaces, timings, support, names) -> SimView:
    t0 = time.perf_counter()
    img = render(pile.client, intr, pose, light=light)
    t1 = time.perf_counter()
    instances = instance_map(img.body_ids, pile)
    force = keep_surfaces or not settings.amodal_skip_unoccluded
    windows = settings.amodal_windows
    amodal = amodal_masks(pile, intr, pose, instances, img.depth_m, force_all=force, windows=windows)
    t2 = time.perf_counter()
    noise = rng.normal(0.0, 2.0, img.rgb.shape)
    rgb = np.clip(np.round(img.rgb + noise), 0, 255).astype(np.uint8)
    depth_cm = measure_depth(img.depth_m, img.rgb, intr, rng, settings.sensor)
    semantic = np.array([0] + [it.category_id for it in pile.items], np.uint16)[instances]
    view = SimView(
        rgb=rgb, depth_cm=depth_cm, instances=instances, semantic=semantic, amodal=amodal.masks,
        order=order_json(pile, amodal, instances, img.depth_m, support, names), camera=intr.as_dict(),
        scene=_scene_json(pile, intr, pose, names), depth_true_m=img.depth_m, renders=amodal.renders,
        edge_fixes=amodal.edge_fixes,
    )  # fmt: skip
    if keep_surfaces:
        n, (h, w) = len(pile.items), instances.shape
        view.surfaces_m = np.full((n, h, w), np.inf, np.float32)
        for k, ((x0, y0, x1, y1), patch) in amodal.patches.items():
            view.surfaces_m[k, y0:y1, x0:x1] = patch
    timings["render"] += t1 - t0
    timings["amodal"] += t2 - t1
    timings["labels"] += time.perf_counter() - t2
    return view


def _attempt(
    index: int, seed: int, attempt: int, settings: SceneSettings, keep_surfaces: bool, timings
) -> tuple:
    rng = np.random.default_rng([seed, index, attempt])
    n = int(rng.integers(settings.objects[0], settings.objects[1] + 1))
    names = category_names()
    with connect() as client, tempfile.TemporaryDirectory(prefix="mtl_grasp-textures-") as folder:
        t0 = time.perf_counter()
        pile = build_pile(client, rng, n, Path(folder))
        support = rests_on(pile)
        timings["settle"] += time.perf_counter() - t0
        size = settings.image_size
        intr = Intrinsics.from_fov(size, size, float(rng.uniform(*settings.fov_deg)))
        d = rng.normal(size=3)
        light = Light(
            direction=(float(d[0]), float(d[1]), 2.0 + abs(float(d[2]))),
            ambient=float(rng.uniform(0.45, 0.65)),
            diffuse=float(rng.uniform(0.4, 0.6)),
        )
        poses = _camera_poses(rng, pile, intr, settings.views, settings.polar_deg)
        views = [_render_view(pile, intr, pose, light, rng, settings, keep_surfaces, timings, support, names)
                 for pose in poses]  # fmt: skip
        return views, pile.removed


def simulate_scene(index: int, seed: int, settings: SceneSettings, keep_surfaces: bool = False) -> SimScene:
    """Scene ``index`` of ``seed`` (see the module docstring); raises UnsettledPile after
    ``settings.max_attempts`` failed piles."""
    timings = {"settle": 0.0, "render": 0.0, "amodal": 0.0, "labels": 0.0}
    reasons: list[str] = []
    for attempt in range(settings.max_attempts):
        try:
            views, removed = _attempt(index, seed, attempt, settings, keep_surfaces, timings)
        except UnsettledPile as exc:
            reason = f"scene {index} (seed {seed}) attempt {attempt}: {exc}; drawing it again"
            log.warning(reason)
            reasons.append(reason)
            continue
        return SimScene(views, attempt + 1, reasons, timings, removed)
    raise UnsettledPile(
        f"scene {index} (seed {seed}): no settled pile in {settings.max_attempts} attempts: "
        + " | ".join(reasons)
    )
