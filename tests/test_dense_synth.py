"""The ray caster and the synthetic scenes: targets agree with each other and with hand geometry."""

from __future__ import annotations

import numpy as np
import pytest

from mtl_grasp.data.dense import scenes
from mtl_grasp.data.dense.raycast import Box, Cylinder, GroundPlane, PinholeCamera, RoomShell, Sphere, cast
from mtl_grasp.data.dense.synth import nyu_targets, render, street_maps


def _camera(**pose) -> PinholeCamera:
    return PinholeCamera(64, 48, 50.0, 50.0, 32.0, 24.0, **pose)


def _normals_from_depth(depth: np.ndarray, cam: PinholeCamera) -> np.ndarray:
    """Camera-frame normals from back-projected neighbours (central differences), towards the camera."""
    v, u = np.mgrid[0 : cam.height, 0 : cam.width].astype(np.float64)
    pts = np.stack([(u + 0.5 - cam.cx) / cam.fx * depth, (v + 0.5 - cam.cy) / cam.fy * depth, depth], -1)
    du = pts[1:-1, 2:] - pts[1:-1, :-2]
    dv = pts[2:, 1:-1] - pts[:-2, 1:-1]
    n = np.cross(du, dv)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    flip = (n * pts[1:-1, 1:-1]).sum(-1) > 0
    return np.where(flip[..., None], -n, n)


def test_box_face_depth_and_normal_match_hand_geometry() -> None:
    cam = _camera(position=(0.0, 1.0, 0.0))
    hits = cast(cam, [Box((0.0, 1.0, 5.0), (1.0, 1.0, 0.5), label=3)])
    # the centre pixels look at the front face z = 4.5, whose normal points at the camera (-z)
    assert hits.depth[24, 32] == pytest.approx(4.5)
    np.testing.assert_allclose(hits.normal[24, 32], [0.0, 0.0, -1.0], atol=1e-12)
    assert hits.primitive[24, 32] == 0 and hits.primitive[0, 0] == -1 and np.isinf(hits.depth[0, 0])
    # the face spans |x| <= 1 at z = 4.5: columns whose ray x/z is inside hit, the others miss
    u = np.arange(64) + 0.5
    inside = np.abs((u - 32.0) / 50.0 * 4.5) <= 1.0
    np.testing.assert_array_equal(hits.primitive[24] == 0, inside)


@pytest.mark.parametrize("pitch", [0.0, 0.3])
def test_ground_plane_depth_is_the_plane_intersection(pitch: float) -> None:
    cam = _camera(position=(0.0, 1.5, 0.0), pitch=pitch)
    hits = cast(cam, [GroundPlane(0.0, label=7)])
    below = hits.primitive == 0
    assert below[-1].all() and not below[0].any() if pitch == 0.0 else below[-1].all()
    # every hit lies on y = 0 in the world and has the world up normal
    np.testing.assert_allclose(hits.point[below][:, 1], 0.0, atol=1e-9)
    up_in_camera = cam.rotation.T @ np.array([0.0, 1.0, 0.0])
    np.testing.assert_allclose(
        hits.normal[below], np.broadcast_to(up_in_camera, hits.normal[below].shape), atol=1e-12
    )


def test_sphere_and_cylinder_hits_are_on_their_surfaces() -> None:
    cam = _camera(position=(0.0, 1.0, 0.0))
    sphere, cyl = Sphere((-0.6, 1.0, 4.0), 0.5), Cylinder((0.7, 0.5, 4.0), 0.4, 1.0)
    hits = cast(cam, [sphere, cyl])
    on_s, on_c = hits.primitive == 0, hits.primitive == 1
    assert on_s.sum() > 20 and on_c.sum() > 20
    np.testing.assert_allclose(np.linalg.norm(hits.point[on_s] - sphere.center, axis=1), 0.5, atol=1e-9)
    p = hits.point[on_c] - np.array(cyl.base)
    radial = np.hypot(p[:, 0], p[:, 2])
    on_side = np.abs(radial - 0.4) < 1e-9
    on_cap = np.isclose(p[:, 1], 0.0) | np.isclose(p[:, 1], 1.0)
    assert (on_side | (on_cap & (radial <= 0.4 + 1e-9))).all()


def test_room_faces_get_their_own_labels() -> None:
    faces = [(11, (0.5,) * 3, "plain"), (12, (0.5,) * 3, "plain"), (4, (0.5,) * 3, "plain"),
             (2, (0.5,) * 3, "plain"), (13, (0.5,) * 3, "plain"), (14, (0.5,) * 3, "plain")]  # fmt: skip
    room = RoomShell((-2.0, 0.0, 0.0), (2.0, 2.5, 5.0), faces)
    cam = _camera(position=(0.0, 1.2, 0.5))
    hits = cast(cam, [room])
    look = room.look_index(hits.world_normal.reshape(-1, 3)).reshape(hits.depth.shape)
    assert look[0, 32] == 3 and look[-1, 32] == 2 and look[24, 32] == 5  # ceiling, floor, far wall
    assert look[24, 0] == 0 and look[24, -1] == 1  # left (x-) and right (x+) walls
    np.testing.assert_allclose(hits.depth[24, 32], 4.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nyu_room_normals_agree_with_the_depth_map(seed: int) -> None:
    rng = np.random.default_rng(seed)
    layout = scenes.nyu_room(rng, 96, 72)
    hits = cast(layout.camera, layout.primitives)
    from_depth = _normals_from_depth(hits.depth, layout.camera)
    # pixels whose 3x3 neighbourhood lies on one planar face: the same box or room shell and the very
    # same normal vector (a face of a box or of the room shell)
    prim, normal = hits.primitive, hits.normal
    centre = (slice(1, -1), slice(1, -1))
    same = np.ones(prim[centre].shape, bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            window = (slice(1 + dy, prim.shape[0] - 1 + dy), slice(1 + dx, prim.shape[1] - 1 + dx))
            same &= (prim[window] == prim[centre]) & (normal[window] == normal[centre]).all(-1)
    planar_ids = [i for i, p in enumerate(layout.primitives) if isinstance(p, (Box, RoomShell))]
    interior = same & np.isin(prim[centre], planar_ids)
    cos = (from_depth[interior] * normal[centre][interior]).sum(-1)
    assert interior.sum() > 1000
    np.testing.assert_array_less(np.cos(np.radians(0.01)), cos)  # agree within 0.01 degrees


def test_nyu_targets_mark_invalid_pixels_consistently() -> None:
    rng = np.random.default_rng(5)
    view = render(scenes.nyu_room(rng, 64, 48), rng)
    t = nyu_targets(view, np.random.default_rng(6))
    invalid = t["depth"][..., 0] == 0
    np.testing.assert_array_equal(invalid, ~np.any(t["normal"] != 0, axis=-1))
    valid_labels = t["label"] >= 0
    np.testing.assert_array_equal(t["label"][valid_labels], view.labels[valid_labels])
    assert view.image.dtype == np.uint8 and t["image"].max() <= 1.0


def test_street_maps_encode_labels_instances_and_disparity_like_cityscapes() -> None:
    rng = np.random.default_rng(3)
    layout = scenes.cityscapes_street(rng, 128, 64)
    view = render(layout, rng, haze_m=300.0)
    maps = street_maps(view, np.random.default_rng(4))
    label_ids, ids, disp = maps["labelIds"], maps["instanceIds"], maps["disparity"]
    things = ids >= 1000
    np.testing.assert_array_equal(ids[things] // 1000, label_ids[things])  # instance id encodes its label
    stuff = ~things & (ids != scenes.PERSON)
    np.testing.assert_array_equal(ids[stuff], label_ids[stuff])  # stuff pixels carry their label id
    sky = label_ids == scenes.SKY
    assert sky.any() and (disp[sky] == 0).all()
    hit = (disp > 0) & np.isfinite(view.depth)
    expected = scenes.CITYSCAPES_BASELINE_M * view.fx / view.depth[hit]
    np.testing.assert_allclose((disp[hit].astype(np.float64) - 1) / 256, expected, atol=1 / 512 + 1e-9)
