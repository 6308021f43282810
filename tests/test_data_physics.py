"""Physically simulated scenes (pybullet): labels agree with the simulation, files are deterministic.

Everything runs the real pybullet simulation and TinyRenderer at tiny sizes (48-64 px, few objects);
no part is mocked except where a test says so (pybullet absent, a pile that will not settle).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("pybullet")

from mtl_grasp.data import layout  # noqa: E402
from mtl_grasp.data.coco import build_coco  # noqa: E402
from mtl_grasp.data.physics import (  # noqa: E402
    SceneSettings,
    engine,
    generate_physics_dataset,
    pile,
    simulate_scene,
)
from mtl_grasp.data.physics.camera import Intrinsics, hemisphere_poses, look_at, project_points  # noqa: E402
from mtl_grasp.data.reader import discover_views, load_view  # noqa: E402

SETTINGS = SceneSettings(image_size=64, views=2, objects=(6, 12))


@pytest.fixture(scope="module")
def scenes():
    """Four scenes, two views each (top-down + oblique), every object rendered alone (surfaces kept)."""
    return [simulate_scene(i, 11, SETTINGS, keep_surfaces=True) for i in range(4)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("physics")
    generate_physics_dataset(root, 3, image_size=48, seed=4, views=2, objects=(4, 8), workers=1)
    return root


def _views(scenes):
    return [v for s in scenes for v in s.views]


def _digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_visible_is_subset_of_amodal_and_ids_are_consecutive(scenes):
    for v in _views(scenes):
        n = len(v.amodal)
        assert v.instances.max() <= n
        for k in range(n):
            assert not ((v.instances == k + 1) & ~v.amodal[k]).any()
        assert n == len(v.order) == len(v.scene["objects"])


def test_visible_object_is_the_nearest_surface(scenes):
    """At every labelled pixel the depth buffer equals that object's own surface and no other object's
    surface is nearer; on unlabelled pixels no object surface is nearer than what the camera sees."""
    for v in _views(scenes):
        surf, z, ids = v.surfaces_m, v.depth_true_m, v.instances
        nearest = surf.min(axis=0)
        on = ids > 0
        own = np.take_along_axis(surf, (ids.astype(np.int64) - 1).clip(0)[None], 0)[0]
        assert np.allclose(own[on], z[on], rtol=0, atol=1e-4)
        assert (nearest[on] >= z[on] - 1e-4).all()
        assert (nearest[~on] >= z[~on] - 1e-4).all()


def test_amodal_masks_equal_the_single_object_renders(scenes):
    for v in _views(scenes):
        assert np.array_equal(
            v.amodal,
            np.isfinite(v.surfaces_m) | (v.instances[None] == np.arange(1, len(v.amodal) + 1)[:, None, None]),
        )
        assert v.edge_fixes <= 4 * len(v.amodal)  # renderer ties on edges only


def test_skipping_unoccluded_objects_gives_the_same_masks():
    """The skip rule (no render for objects nothing can cover) changes no label."""
    forced = simulate_scene(5, 2, SETTINGS, keep_surfaces=True)
    skipped = simulate_scene(5, 2, SETTINGS)
    for a, b in zip(forced.views, skipped.views):
        assert np.array_equal(a.amodal, b.amodal)
        assert a.order == b.order
        assert b.renders <= a.renders


def test_occlusion_rate_and_occluders_come_from_the_masks(scenes):
    for v in _views(scenes):
        n = len(v.amodal)
        vis = np.bincount(v.instances.ravel(), minlength=n + 1)[1:]
        area = v.amodal.reshape(n, -1).sum(axis=1)
        for k in range(n):
            entry = v.order[str(k + 1)]
            if area[k]:
                assert entry["occlusion"] == pytest.approx(1 - vis[k] / area[k], abs=1e-6)
            seen = set(np.unique(v.instances[v.amodal[k]]).tolist()) - {0, k + 1}
            parents = {p["id"] for p in entry["parents"]} - {0}
            assert parents == seen
            for p in entry["parents"]:
                if p["id"]:
                    assert p["depth_diff"] > 0  # the occluder is nearer than the hidden surface
                    assert k + 1 in {c["id"] for c in v.order[str(p["id"])]["children"]}
            assert (entry["layer"] == 0) == (not parents)


def test_rests_on_relations_agree_with_heights(scenes):
    supported = total = 0
    for s in scenes:
        v = s.views[0]
        boxes = {o["id"]: np.asarray(o["aabb_cm"]) for o in v.scene["objects"]}
        for key, entry in v.order.items():
            k = int(key)
            total += 1
            supported += bool(entry["rests_on"])
            for r in entry["rests_on"]:
                assert r["normal_z"] >= 0.5 and r["points"] >= 1
                if r["id"] == 0:  # the bin: only its floor carries weight (the walls are vertical)
                    assert boxes[k][0, 2] < 1.0
                else:
                    j = r["id"]
                    assert boxes[k][0, 2] >= boxes[j][0, 2] - 0.5, (k, j)  # k lies higher than j
                    assert boxes[k][1, 2] > boxes[j][0, 2]
                    assert k in {x["id"] for x in v.order[str(j)]["supports"]}
    assert supported >= 0.9 * total  # settled objects rest on something


def test_every_object_lies_inside_the_bin(scenes):
    for s in scenes:
        v = s.views[0]
        b = v.scene["bin"]
        for o in v.scene["objects"]:
            lo, hi = np.asarray(o["aabb_cm"])
            tol = 1.2 if o["shape"] == "mesh" else 0.6
            assert (np.abs([lo[0], hi[0]]) <= b["inner_length_cm"] / 2 + tol).all(), o
            assert (np.abs([lo[1], hi[1]]) <= b["inner_width_cm"] / 2 + tol).all(), o
            assert lo[2] >= -2.0


def _object_points(o: dict) -> np.ndarray:
    """Points well inside the object's geometry, in its geometry frame (cm)."""
    d = np.asarray(o["dims_cm"])
    if o["shape"] == "box":
        return (
            np.array([[x, y, z] for x in (-0.3, 0, 0.3) for y in (-0.3, 0, 0.3) for z in (-0.3, 0, 0.3)]) * d
        )
    if o["shape"] in ("cylinder", "capsule"):
        return np.array(
            [[x, y, z] for x in (-0.5, 0, 0.5) for y in (-0.5, 0, 0.5) for z in (-0.4, 0, 0.4)]
        ) * [
            d[0],
            d[0],
            d[1],
        ]
    if o["shape"] == "sphere":
        return (
            np.array([[x, y, z] for x in (-0.5, 0, 0.5) for y in (-0.5, 0, 0.5) for z in (-0.5, 0, 0.5)])
            * d[0]
        )
    return pile.mesh_vertices(o["mesh"]) * o["mesh_scale"] * 100.0


def test_poses_written_to_disk_project_onto_the_masks(dataset):
    """Camera pose (world_from_camera, OpenCV frame) + intrinsics + object poses, read back from the files,
    put each object's geometry onto its amodal mask: the convention documented in docs/data.md holds."""
    checked = 0
    for ref in discover_views(dataset):
        s = load_view(ref)
        objects = {o["id"]: o for o in json.loads(ref.scene_path.read_text())["objects"]}
        intr = Intrinsics(**{k: s.camera.__dict__[k] for k in ("fx", "fy", "cx", "cy", "width", "height")})
        cam = s.object_poses_in_camera
        for k, oid in enumerate(s.object_ids):
            if s.amodal_area[k] < 30:
                continue  # a few pixels: thin parts fall between pixel centres
            pts_m = _object_points(objects[int(oid)]) / 100.0
            world = pts_m @ s.object_poses[k][:3, :3].T + s.object_poses[k][:3, 3]
            uvz = project_points(world, intr, s.camera_pose)
            in_cam = pts_m @ cam[k][:3, :3].T + cam[k][:3, 3]
            assert np.allclose(in_cam[:, 2], uvz[:, 2], atol=1e-6)
            inside = (uvz[:, 0] >= 0) & (uvz[:, 0] < s.width) & (uvz[:, 1] >= 0) & (uvz[:, 1] < s.height)
            u, v = uvz[inside, 0].astype(int), uvz[inside, 1].astype(int)
            grown = (
                __import__("cv2").dilate(s.amodal_masks[k].astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
            )
            assert grown[v, u].mean() >= 0.97, (ref.name, int(oid), objects[int(oid)]["shape"])
            checked += 1
    assert checked > 10


def test_files_are_byte_identical_across_runs_workers_and_counts(dataset, tmp_path):
    generate_physics_dataset(tmp_path / "a", 3, image_size=48, seed=4, views=2, objects=(4, 8), workers=2)
    generate_physics_dataset(
        tmp_path / "b", 1, image_size=48, seed=4, views=2, objects=(4, 8), workers=1, first_scene=2
    )
    generate_physics_dataset(tmp_path / "c", 1, image_size=48, seed=5, views=2, objects=(4, 8), workers=1)
    ref, a, b, c = _digest(dataset), _digest(tmp_path / "a"), _digest(tmp_path / "b"), _digest(tmp_path / "c")
    assert a == ref
    assert {k: v for k, v in ref.items() if k.startswith("scene2/")} == {
        k: v for k, v in b.items() if k.startswith("scene2/")
    }
    assert c["scene0/0.npz"] != ref["scene0/0.npz"]
    assert {
        "splits.json",
        "categories.json",
        "scene0/0_scene.json",
        "scene0/1_camera_params.json",
    } <= ref.keys()


def test_reader_coco_pycocotools_round_trip_is_exact(dataset):
    from pycocotools import mask as mask_util
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = build_coco(dataset)
    coco.createIndex()
    for ref in discover_views(dataset):
        s = load_view(ref)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[ref.image_id]))
        kept = np.flatnonzero(s.visible_area >= 1)
        assert [a["object_id"] for a in anns] == s.object_ids[kept].tolist()
        for a, k in zip(anns, kept):
            assert np.array_equal(coco.annToMask(a).astype(bool), s.amodal_masks[k])
            vis = a["visible_mask"]
            assert np.array_equal(
                mask_util.decode({**vis, "counts": vis["counts"].encode()}).astype(bool), s.visible_masks[k]
            )
            assert a["bbox"] == mask_util.toBbox(coco.annToRLE(a)).tolist()
            assert a["occluded_rate"] == pytest.approx(float(s.occluded_rate[k]), abs=1e-6)


def test_class_aware_coco_names_the_article_kinds(dataset):
    coco = build_coco(dataset, class_agnostic=False)
    names = json.loads((dataset / layout.CATEGORIES_FILE).read_text())
    assert coco["categories"] and all(c["name"] == names[str(c["id"])] for c in coco["categories"])


def test_sensor_depth_is_metric_noisy_quantised_and_has_holes(scenes):
    for v in _views(scenes):
        d, z = v.depth_cm, v.depth_true_m
        finite = np.isfinite(d)
        assert 0.02 < (~finite).mean() < 0.5  # shadows, edges, grazing walls, dark surfaces
        err = d[finite] - 100 * z[finite]
        sigma = 100 * 0.001 * z[finite] ** 2
        assert (np.abs(err) <= 6 * sigma + 0.006).all()
        assert np.allclose(d[finite] * 100, np.round(d[finite] * 100), atol=1e-3)  # 0.01 cm steps
        assert 30 < np.nanmedian(d) < 150


def test_sensor_projector_shadow_width_is_the_disparity_step():
    from mtl_grasp.data.physics.sensor import SensorModel, measure_depth

    intr = Intrinsics(200.0, 200.0, 32.0, 4.0, 64, 8)
    z = np.full((8, 64), 0.8)
    z[:, 40:] = 0.6  # a near surface on the right: the projector (to the right) shadows left of it
    model = SensorModel(edge_drop=0.0, dropout=0.0, noise_at_1m_m=0.0, grazing_deg=90.0)
    d = measure_depth(z, np.full((8, 64, 3), 128, np.uint8), intr, np.random.default_rng(0), model)
    width = 200.0 * 0.08 * (1 / 0.6 - 1 / 0.8)  # 6.67 px
    holes = np.flatnonzero(np.isnan(d[4]))
    assert holes.tolist() == list(range(math.ceil(40 - width), 40))  # centres within the step of the edge
    assert np.allclose(d[4, :30], 80.0) and np.allclose(d[4, 40:], 60.0)
    dark = measure_depth(z, np.zeros((8, 64, 3), np.uint8), intr, np.random.default_rng(0), model)
    assert np.isnan(dark).all()


def test_camera_conventions():
    pose = look_at((0.1, -0.2, 0.7), (0, 0, 0), up=(0, 1, 0))
    rot = pose[:3, :3]
    assert np.allclose(rot.T @ rot, np.eye(3)) and np.linalg.det(rot) == pytest.approx(1.0)
    assert np.allclose(rot[:, 2], -np.array([0.1, -0.2, 0.7]) / np.linalg.norm([0.1, -0.2, 0.7]))
    top = hemisphere_poses((0, 0, 0), [0.5], [0.0], [0.0], [0.0])[0]
    assert np.allclose(top[:3, :3], np.diag([1.0, -1.0, -1.0]))  # image right = world x, image down = -y
    intr = Intrinsics.from_fov(64, 48, 50.0)
    uvz = project_points(np.array([[0.0, 0.0, 0.0], [0.05, 0.05, 0.0]]), intr, top)
    assert uvz[0].tolist() == pytest.approx([32.0, 24.0, 0.5])
    assert uvz[1, 0] > 32 and uvz[1, 1] < 24  # +x right, +y up in a top-down image
    crop = intr.crop(10, 5, 30, 25)
    assert (crop.width, crop.height, crop.cx, crop.cy) == (20, 20, 22.0, 19.0)


def _covered(uv: np.ndarray, w: int, h: int, m: float) -> np.ndarray:
    """Pixels whose centres lie inside the projected rectangle grown by ``m`` px (ties within |m|)."""
    jj, ii = np.arange(w) + 0.5, np.arange(h) + 0.5
    cols = (jj >= uv[:, 0].min() - m) & (jj < uv[:, 0].max() + m)
    return cols[None] & ((ii >= uv[:, 1].min() - m) & (ii < uv[:, 1].max() + m))[:, None]


def test_rendered_pixel_grid_is_the_pinhole_grid():
    """Boxes seen from above cover exactly the pixels whose centres fall inside their projection."""
    from mtl_grasp.data.physics.render import render

    pb = engine.pybullet()
    with engine.connect() as client:
        intr = Intrinsics(150.3, 150.3, 83.3, 57.9, 160, 120)
        pose = hemisphere_poses((0, 0, 0), [0.7], [0.0], [0.0], [0.0])[0]
        rng = np.random.default_rng(0)
        for k in range(8):
            c = np.array([-0.18 + 0.12 * (k % 4), -0.06 + 0.12 * (k // 4)]) + rng.uniform(-0.01, 0.01, 2)
            h = rng.uniform(0.01, 0.03, 2)
            vis = pb.createVisualShape(pb.GEOM_BOX, halfExtents=(*h, 0.001), physicsClientId=client)
            body = pb.createMultiBody(0, -1, vis, (*c, 0.01 * k), physicsClientId=client)
            corners = np.array(
                [[c[0] + sx * h[0], c[1] + sy * h[1], 0.01 * k + 0.001] for sx in (-1, 1) for sy in (-1, 1)]
            )
            uv = project_points(corners, intr, pose)
            got = render(client, intr, pose, light=None).body_ids == body
            inner, outer = _covered(uv, 160, 120, -0.05), _covered(uv, 160, 120, 0.05)
            assert not (inner & ~got).any() and not (got & ~outer).any(), k


def test_unsettled_pile_is_drawn_again_with_a_logged_reason(monkeypatch, caplog):
    real = pile._settle
    calls = []

    def stubborn(client, bodies, budget):
        calls.append(1)
        if len(calls) == 1:
            raise pile.UnsettledPile("the pile was still moving after 1 simulation steps")
        return real(client, bodies, budget)

    monkeypatch.setattr(pile, "_settle", stubborn)
    with caplog.at_level(logging.WARNING, logger="mtl_grasp.data.physics"):
        result = simulate_scene(0, 0, SceneSettings(image_size=48, objects=(3, 4)))
    assert result.attempts == 2 and "still moving" in result.reasons[0]
    assert "drawing it again" in caplog.text
    monkeypatch.setattr(
        pile, "_settle", lambda *a: (_ for _ in ()).throw(pile.UnsettledPile("never at rest"))
    )
    with pytest.raises(pile.UnsettledPile, match="scene 0 .*no settled pile in 2 attempts"):
        simulate_scene(0, 0, SceneSettings(image_size=48, objects=(3, 4), max_attempts=2))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"objects": (0, 3)}, "objects"),
        ({"objects": (5, 2)}, "objects"),
        ({"image_size": 16}, "image_size"),
        ({"views": 0}, "views"),
        ({"scenes": 0}, "scenes"),
        ({"workers": 0}, "workers"),
    ],
)
def test_impossible_arguments_name_the_argument(tmp_path, kwargs, name):
    args = {"scenes": 1, **kwargs}
    with pytest.raises(ValueError, match=name):
        generate_physics_dataset(tmp_path, **args)


def test_missing_pybullet_names_the_extra(monkeypatch, tmp_path, capsys):
    engine.pybullet.cache_clear()
    monkeypatch.setitem(sys.modules, "pybullet", None)
    try:
        with pytest.raises(engine.MissingPybullet, match=r"\[data\]"):
            generate_physics_dataset(tmp_path, 1)
        from training.cli import main as cli

        assert cli(["synth", "--out", str(tmp_path / "x"), "--scenes", "1"]) == 2
        assert "install the data extra" in capsys.readouterr().err
    finally:
        engine.pybullet.cache_clear()


def test_cli_synth_physics_and_preview(tmp_path, capsys):
    from training.cli import main as cli

    png = tmp_path / "sheet.png"
    out = tmp_path / "d"
    assert cli(["synth", "--out", str(out), "--scenes", "2", "--image-size", "48", "--objects", "3", "5",
                "--workers", "1", "--views", "2", "--no-progress", "--preview", str(png)]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "scenes/s per core" in text and "settle" in text and "amodal" in text
    sheet = cv2.imread(str(png))
    assert sheet is not None and sheet.shape[1] == 4 * 256 and sheet.shape[0] > 4 * 256
    assert (out / layout.CATEGORIES_FILE).is_file()
    assert cli(["synth", "--out", str(out), "--scenes", "1", "--objects", "0", "3"]) == 2
    assert "objects" in capsys.readouterr().err
