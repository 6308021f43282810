"""3-D pick points on the physics scenes' known geometry (mtl_grasp.data.physics, pybullet).

For every object of a few simulated bin views whose visible region is large enough to pick from,
`mtl_grasp.geometry.surface_point` is computed from the ground-truth visible mask, the simulated
sensor's depth (noise, holes, mixed pixels: mtl_grasp/data/physics/sensor.py) and the view's
intrinsics; the point is moved into the object's geometry frame with the scene's camera_from_object
pose and its distance to the object's exact surface (box, cylinder, capsule, sphere) is measured.

Tolerance: median distance <= 1 mm and 95th percentile <= 3 mm over all such objects (the sensor
noise is ~0.6 mm at 0.75 m, depth is quantised to 0.1 mm, one pixel covers ~0.8 mm of the floor);
each normal within 25 degrees of the surface's normal at the nearest surface point for 90 % of the
objects (edges and corners of boxes have no single normal). Meshes are skipped (no analytic surface).
Skipped until the physics generator (issue of the `physics` branch) and pybullet are installed.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

physics = pytest.importorskip("mtl_grasp.data.physics")
pytest.importorskip("pybullet")

from mtl_grasp.data.reader import discover_views, load_view  # noqa: E402
from mtl_grasp.geometry import Intrinsics, surface_point  # noqa: E402

MIN_VISIBLE_PX = 150
MIN_VALID_FRACTION = 0.5


def _box(p: np.ndarray, half: np.ndarray) -> tuple[float, np.ndarray]:
    """|signed distance| of p to a box centred at 0 with half extents `half`, and the surface normal."""
    q = np.abs(p) - half
    outside = np.linalg.norm(np.maximum(q, 0))
    dist = outside + min(q.max(), 0.0)
    axis = int(np.argmax(q))
    normal = np.zeros(3)
    normal[axis] = np.sign(p[axis]) or 1.0
    return abs(dist), normal


def _cylinder(p: np.ndarray, r: float, half_len: float) -> tuple[float, np.ndarray]:
    radial = math.hypot(p[0], p[1])
    d_side, d_cap = radial - r, abs(p[2]) - half_len
    outside = math.hypot(max(d_side, 0), max(d_cap, 0))
    dist = outside + min(max(d_side, d_cap), 0.0)
    if d_side > d_cap:
        normal = np.array([p[0], p[1], 0.0]) / max(radial, 1e-12)
    else:
        normal = np.array([0.0, 0.0, np.sign(p[2]) or 1.0])
    return abs(dist), normal


def _capsule(p: np.ndarray, r: float, half_len: float) -> tuple[float, np.ndarray]:
    axis_point = np.array([0.0, 0.0, np.clip(p[2], -half_len, half_len)])
    v = p - axis_point
    n = np.linalg.norm(v)
    return abs(n - r), v / max(n, 1e-12)


def _sphere(p: np.ndarray, r: float) -> tuple[float, np.ndarray]:
    n = np.linalg.norm(p)
    return abs(n - r), p / max(n, 1e-12)


def surface_distance(obj: dict, p_obj_m: np.ndarray) -> tuple[float, np.ndarray] | None:
    """(distance in metres, outward normal in the object frame) of a point to a primitive's surface."""
    dims = np.asarray(obj["dims_cm"], float) / 100.0
    shape = obj["shape"]
    if shape == "box":
        return _box(p_obj_m, dims / 2)
    if shape == "cylinder":
        return _cylinder(p_obj_m, dims[0], dims[1] / 2)
    if shape == "capsule":
        return _capsule(p_obj_m, dims[0], dims[1] / 2)
    if shape == "sphere":
        return _sphere(p_obj_m, dims[0])
    return None  # mesh


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("physics")
    physics.generate_physics_dataset(root, scenes=2, image_size=256, seed=11, views=2, workers=1)
    return root


def test_pick_points_lie_on_the_simulated_objects_surfaces(scenes):
    errors, angles = [], []
    for ref in discover_views(scenes):
        sample = load_view(ref)
        scene = json.loads(ref.scene_path.read_text())
        cam = scene["camera"]["intrinsics"]
        h, w = sample.depth.shape
        intr = Intrinsics(cam["fx"], cam["fy"], cam["cx"], cam["cy"], w, h)
        by_id = {o["id"]: o for o in scene["objects"]}
        for k, oid in enumerate(sample.object_ids):
            obj = by_id[int(oid)]
            mask = sample.visible_masks[k].astype(bool)
            if mask.sum() < MIN_VISIBLE_PX or obj["shape"] == "mesh":
                continue
            sp = surface_point(sample.depth, mask, intr)
            if not sp.valid or sp.valid_fraction < MIN_VALID_FRACTION:
                continue
            t_co = np.asarray(obj["pose_relative_to_camera"], float).reshape(4, 4)
            t_co[:3, 3] /= 100.0  # cm -> m
            t_oc = np.linalg.inv(t_co)
            p_obj = t_oc[:3, :3] @ sp.position + t_oc[:3, 3]
            result = surface_distance(obj, p_obj)
            if result is None:
                continue
            dist, normal_obj = result
            errors.append(dist)
            if sp.normal is not None:
                n_obj = t_oc[:3, :3] @ sp.normal
                angles.append(math.degrees(math.acos(np.clip(n_obj @ normal_obj, -1, 1))))
    assert len(errors) >= 10, f"too few pickable primitive objects in the scenes ({len(errors)})"
    errors_mm = np.asarray(errors) * 1e3
    print(f"\n{len(errors)} objects: distance to the surface median {np.median(errors_mm):.2f} mm, "
          f"p95 {np.percentile(errors_mm, 95):.2f} mm, max {errors_mm.max():.2f} mm; normal error "
          f"median {np.median(angles):.1f} deg, p90 {np.percentile(angles, 90):.1f} deg")
    assert np.median(errors_mm) <= 1.0 and np.percentile(errors_mm, 95) <= 3.0
    assert np.percentile(angles, 90) <= 25.0
