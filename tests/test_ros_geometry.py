"""3-D pick candidates as pure functions against analytic geometry (mtl_grasp.geometry).

Depth images are rendered exactly from planes and spheres with a pinhole camera; tolerances:
positions on the analytic surface within 1e-6 m for planes (exact up to float32 depth) and 0.5 mm for
spheres of 3-5 cm radius (the plane fitted to a 5-px neighbourhood of a curved surface sits within
its sagitta); normals within 0.5 degree (planes) and 3 degrees (spheres).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mtl_grasp.geometry import (
    Intrinsics,
    SurfacePoint,
    approach_quaternion,
    fit_plane,
    pick_order,
    surface_point,
)

H, W = 120, 160
K = Intrinsics(fx=200.0, fy=210.0, cx=79.5, cy=59.5, width=W, height=H)


def _rays() -> np.ndarray:
    v, u = np.mgrid[0:H, 0:W]
    return K.rays(u, v)  # [H, W, 3]


def render_plane(normal, point) -> np.ndarray:
    """Depth (z, metres) of the plane through `point` with `normal` at every pixel (0 where behind)."""
    n = np.asarray(normal, float) / np.linalg.norm(normal)
    t = (n @ np.asarray(point, float)) / (_rays() @ n)
    return np.where(t > 0, t, 0).astype(np.float32)


def render_sphere(centre, radius) -> tuple[np.ndarray, np.ndarray]:
    """Depth of the visible (near) side of a sphere and its mask."""
    r = _rays()
    c = np.asarray(centre, float)
    a = (r * r).sum(-1)
    b = -2 * (r @ c)
    disc = b * b - 4 * a * (c @ c - radius**2)
    hit = disc >= 0
    t = (-b - np.sqrt(np.where(hit, disc, 0))) / (2 * a)
    return np.where(hit, t, 0).astype(np.float32), hit


def _angle_deg(a, b) -> float:
    return math.degrees(math.acos(np.clip(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b), -1, 1)))


@pytest.mark.parametrize("tilt_deg", [0.0, 20.0, 45.0])
def test_plane_at_known_depth_and_tilt(tilt_deg):
    t = math.radians(tilt_deg)
    normal = np.array([0.0, math.sin(t), -math.cos(t)])  # towards the camera, tilted about x
    point = np.array([0.02, -0.01, 0.6])
    depth = render_plane(normal, point)
    mask = np.zeros((H, W), bool)
    mask[30:90, 40:120] = True
    sp = surface_point(depth, mask, K)
    assert sp.valid and sp.valid_fraction == 1.0
    assert abs(normal @ sp.position - normal @ point) < 1e-6  # on the plane
    assert _angle_deg(sp.normal, normal) < 0.5
    u, v = K.project(sp.position[None])[0]
    assert 40 <= u < 120 and 30 <= v < 90  # inside the visible region, near its middle
    assert abs(u - 79.5) <= 2 and abs(v - 59.5) <= 2


def test_sphere_point_lies_on_the_visible_surface_with_the_radial_normal():
    centre, radius = np.array([0.03, 0.02, 0.7]), 0.05
    depth, mask = render_sphere(centre, radius)
    sp = surface_point(depth, mask, K)
    assert sp.valid
    assert abs(np.linalg.norm(sp.position - centre) - radius) < 5e-4
    assert sp.position[2] < centre[2]  # the near (visible) side
    assert _angle_deg(sp.normal, sp.position - centre) < 3.0
    # the per-axis median of the visible points would lie ~0.3 r inside the sphere: not used
    v, u = np.nonzero(mask)
    pts = K.rays(u, v) * depth[v, u][:, None]
    assert np.linalg.norm(np.median(pts, axis=0) - centre) < radius - 0.005


def test_depth_holes_and_flying_pixels_are_ignored():
    normal, point = np.array([0.0, 0.0, -1.0]), np.array([0.0, 0.0, 0.5])
    depth = render_plane(normal, point)
    mask = np.zeros((H, W), bool)
    mask[20:100, 30:130] = True
    rng = np.random.default_rng(0)
    holes = rng.random((H, W)) < 0.3
    depth[holes] = 0.0
    depth[rng.random((H, W)) < 0.02] = np.nan  # non-finite also counts as invalid
    flying = (rng.random((H, W)) < 0.05) & ~holes
    depth[flying] = 3.0  # background seen through the mask edge
    sp = surface_point(depth, mask, K)
    expected_fraction = float(np.isfinite(depth[mask]).sum() - (depth[mask] == 0).sum()) / mask.sum()
    assert sp.valid_fraction == pytest.approx(expected_fraction)
    assert 0.6 < sp.valid_fraction < 0.75
    assert sp.position[2] == pytest.approx(0.5, abs=1e-6)
    assert _angle_deg(sp.normal, normal) < 0.5


def test_no_valid_depth_or_empty_mask_is_invalid_never_guessed():
    depth = np.zeros((H, W), np.float32)
    mask = np.zeros((H, W), bool)
    assert surface_point(depth, mask, K) == SurfacePoint(None, None, 0.0, None)
    mask[10:20, 10:20] = True
    sp = surface_point(depth, mask, K)
    assert not sp.valid and sp.normal is None and sp.valid_fraction == 0.0


def test_too_few_points_for_a_plane_give_a_position_without_normal():
    depth = np.full((H, W), 0.8, np.float32)
    mask = np.zeros((H, W), bool)
    mask[50, 60:63] = True  # 3 pixels in a line: no plane
    sp = surface_point(depth, mask, K)
    assert sp.valid and sp.normal is None and sp.position[2] == pytest.approx(0.8)
    assert fit_plane(np.zeros((3, 3))) is None


def test_box_restriction_gives_the_same_result():
    depth, mask = render_sphere(np.array([-0.05, 0.0, 0.6]), 0.04)
    v, u = np.nonzero(mask)
    box = (int(u.min()), int(v.min()), int(u.max()) + 1, int(v.max()) + 1)
    a, b = surface_point(depth, mask, K), surface_point(depth, mask, K, box=box)
    np.testing.assert_allclose(a.position, b.position)
    np.testing.assert_allclose(a.normal, b.normal)
    assert a.pixel == b.pixel


def test_distortion_is_undone_for_the_pick_pixel():
    """A plumb_bob camera: rays come from cv2.undistortPoints, so a point projected with the
    distortion model is recovered at its true position."""
    cv2 = pytest.importorskip("cv2")
    d = (-0.2, 0.05, 0.001, -0.001, 0.0)
    cam = Intrinsics(K.fx, K.fy, K.cx, K.cy, W, H, d)
    kmat = np.array([[K.fx, 0, K.cx], [0, K.fy, K.cy], [0, 0, 1]])
    point = np.array([[0.1, 0.05, 0.5]])
    uv, _ = cv2.projectPoints(point, np.zeros(3), np.zeros(3), kmat, np.array(d))
    ray = cam.rays(np.array([uv[0, 0, 0]]), np.array([uv[0, 0, 1]]))[0]
    np.testing.assert_allclose(ray * 0.5, point[0], atol=1e-5)


def test_pick_order_unoccluded_first_then_nearest():
    def at(z):
        return SurfacePoint(np.array([0.0, 0.0, z]), None, 1.0, (0, 0))

    points = [at(0.9), at(0.5), SurfacePoint(None, None, 0.0, None), at(0.4), at(0.7)]
    occluded = [False, True, False, True, False]
    assert pick_order(points, occluded) == [4, 0, 3, 1]
    with pytest.raises(ValueError, match="occluded"):
        pick_order(points, occluded[:2])


@pytest.mark.parametrize("normal", [(0, 0, -1), (0.3, -0.2, -0.9), (1, 0, 0), (0, 0, 1)])
def test_approach_quaternion_maps_z_onto_minus_normal(normal):
    x, y, z, w = approach_quaternion(np.array(normal, float))
    assert x * x + y * y + z * z + w * w == pytest.approx(1.0)
    # rotate +z by the quaternion
    rz = np.array([2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)])
    n = np.asarray(normal, float) / np.linalg.norm(normal)
    np.testing.assert_allclose(rz, -n, atol=1e-9)
    assert approach_quaternion(None) == (0.0, 0.0, 0.0, 1.0)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="fx, fy"):
        Intrinsics(0.0, 1.0, 0, 0, 10, 10)
    with pytest.raises(ValueError, match="distortion"):
        Intrinsics(1.0, 1.0, 0, 0, 10, 10, (0.1,))
    with pytest.raises(ValueError, match="intrinsics"):
        surface_point(np.zeros((10, 10), np.float32), np.zeros((10, 10), bool), K)
    with pytest.raises(ValueError, match="radius_px"):
        surface_point(np.zeros((H, W), np.float32), np.zeros((H, W), bool), K, radius_px=0)
