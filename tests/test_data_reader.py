"""Reader: generated scenes read back exactly; real layout; every bad-input case gives a DataError."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from mtl_grasp.data import DataError
from mtl_grasp.data.reader import discover_views, load_view, select_split
from mtl_grasp.data.synth import generate_dataset, render_scene

SIZE = 48


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, scenes=12, image_size=SIZE, seed=5, views=2)
    return root


@pytest.fixture
def scene(dataset, tmp_path):
    """A private copy of scene3 to damage."""
    root = tmp_path / "data"
    shutil.copytree(dataset / "scene3", root / "scene3")
    return root, root / "scene3"


def _npz(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def test_discovery_is_sorted_naturally_and_ids_are_positions(dataset):
    views = discover_views(dataset)
    assert [v.name for v in views[:4]] == ["scene0/0", "scene0/1", "scene1/0", "scene1/1"]
    assert views[-1].scene == "scene11"  # natural order: scene2 < scene10
    assert [v.image_id for v in views] == list(range(1, len(views) + 1))


def test_reads_back_exactly_what_was_generated(dataset):
    for ref in discover_views(dataset)[:6]:
        index = int(ref.scene.removeprefix("scene"))
        truth = render_scene(index, image_size=SIZE, seed=5, views=2)[ref.view]
        s = load_view(ref)
        assert s.rgb.dtype == np.uint8 and np.array_equal(s.rgb, truth.rgb)
        assert s.depth.dtype == np.float32
        holes = np.isnan(truth.depth_cm)
        assert np.all(s.depth[holes] == 0)
        assert np.allclose(s.depth[~holes], truth.depth_cm[~holes] / 100, rtol=0, atol=1e-6)
        kept = truth.amodal.reshape(len(truth.amodal), -1).any(axis=1)
        assert np.array_equal(s.object_ids, np.flatnonzero(kept) + 1)
        assert np.array_equal(s.amodal_masks, truth.amodal[kept])
        for k, oid in enumerate(s.object_ids):
            assert np.array_equal(s.visible_masks[k], truth.instances_objects == oid)
            assert s.category_ids[k] == truth.order[str(oid)]["category_id"]
        assert not (s.visible_masks & ~s.amodal_masks).any()
        expected_rate = 1 - s.visible_area / s.amodal_area
        assert np.allclose(s.occluded_rate, expected_rate, atol=1e-6)
        assert s.order_mismatches(tolerance=1e-5) == []
        assert np.allclose(s.order_occlusion, s.occluded_rate, atol=1e-5)
        assert s.camera is not None and s.camera.width == SIZE


def test_real_layout_amodal_file_and_missing_amodal(scene):
    root, d = scene
    arrays = _npz(d / "0.npz")
    amodal = arrays.pop("seg_masks_single")
    ids = arrays["instances_objects"]
    visible = np.stack([ids == k + 1 for k in range(len(amodal))])
    np.savez(d / "0.npz", **arrays)
    np.savez(d / "0_amodal.npz", amodal_bitmaps_full_size_instances=np.stack([visible, amodal & ~visible], 1))
    np.savez(d / "1.npz", **{k: v for k, v in _npz(d / "1.npz").items() if k != "seg_masks_single"})
    views = discover_views(root)
    assert [v.view for v in views] == [0, 1]
    s = load_view(views[0])
    assert views[0].amodal_path is not None
    keep = amodal.reshape(len(amodal), -1).any(axis=1)
    assert np.array_equal(s.amodal_masks, amodal[keep])
    with pytest.raises(DataError, match=r"1\.npz.*no amodal masks"):
        load_view(views[1])
    assert [v.view for v in discover_views(root, require_amodal=True)] == [0]


def test_nan_inf_and_negative_depth_become_invalid(scene):
    root, d = scene
    arrays = _npz(d / "0.npz")
    arrays["depth"][0, :3] = [np.inf, -np.inf, -5.0]
    arrays["depth"][1, 0] = np.nan
    np.savez(d / "0.npz", **arrays)
    s = load_view(discover_views(root)[0])
    assert s.depth[0, 0] == s.depth[0, 1] == s.depth[0, 2] == s.depth[1, 0] == 0
    assert np.isfinite(s.depth).all()


def test_scene_without_objects_gives_an_empty_sample(scene):
    root, d = scene
    arrays = _npz(d / "0.npz")
    arrays["instances_objects"][:] = 0
    arrays["seg_masks_single"] = np.zeros((0, SIZE, SIZE), bool)
    np.savez(d / "0.npz", **arrays)
    s = load_view(discover_views(root)[0])
    assert s.visible_masks.shape == (0, SIZE, SIZE) and len(s.object_ids) == 0


def _corrupt(d, name):
    (d / name).write_bytes(b"\x89PNG\r\n\x1a\n garbage")


@pytest.mark.parametrize(
    "damage, pattern",
    [
        (lambda d: (d / "0_rgb.png").unlink(), r"0_rgb\.png: RGB image missing"),
        (lambda d: _corrupt(d, "0_rgb.png"), r"0_rgb\.png: not a decodable image"),
        (lambda d: (d / "0.npz").write_bytes(b"PK\x03\x04 broken"), r"0\.npz: corrupt or unreadable npz"),
        (lambda d: (d / "0_order.json").write_text("{not json"), r"0_order\.json: not readable JSON"),
        (lambda d: (d / "0_camera_params.json").write_text('{"fy": 1}'), r"0_camera_params\.json: expected"),
        (
            lambda d: cv2.imwrite(str(d / "0_rgb.png"), np.zeros((SIZE, SIZE + 2, 3), np.uint8)),
            r"0\.npz: depth has shape \(48, 48\), expected \(48, 50\)",
        ),
    ],
    ids=["missing-rgb", "corrupt-png", "corrupt-npz", "corrupt-order", "bad-camera", "rgb-depth-mismatch"],
)
def test_damaged_files_raise_data_error_naming_the_file(scene, damage, pattern):
    root, d = scene
    damage(d)
    with pytest.raises(DataError, match=pattern):
        load_view(discover_views(root)[0])


@pytest.mark.parametrize(
    "edit, pattern",
    [
        (lambda a: a.pop("depth"), r"missing keys \['depth'\]"),
        (lambda a: a.pop("instances_objects"), r"missing keys \['instances_objects'\]"),
        (lambda a: a.update(seg_masks_single=a["seg_masks_single"][:, :-1]), r"amodal masks has shape"),
        (
            lambda a: a.update(instances_semantic=a["instances_semantic"][:-1]),
            r"instances_semantic has shape",
        ),
        (lambda a: a.update(seg_masks_single=a["seg_masks_single"][:-1]), r"there are only \d+ amodal masks"),
        (lambda a: a.update(seg_masks_single=a["seg_masks_single"][::-1]), r"mapping does not hold"),
        (lambda a: a.update(depth=a["depth"].astype(str)), r"expected numeric depth"),
    ],
    ids=[
        "no-depth",
        "no-instances",
        "mask-shape",
        "semantic-shape",
        "too-few-masks",
        "permuted",
        "str-depth",
    ],
)
def test_bad_npz_content_raises_data_error(scene, edit, pattern):
    root, d = scene
    arrays = _npz(d / "0.npz")
    # make sure the permutation case really permutes distinct, visible objects
    assert len(arrays["seg_masks_single"]) >= 3
    edit(arrays)
    np.savez(d / "0.npz", **arrays)
    with pytest.raises(DataError, match=pattern) as info:
        load_view(discover_views(root)[0])
    assert "0.npz" in str(info.value)


def test_small_misalignment_is_tolerated_and_absorbed(scene):
    root, d = scene
    arrays = _npz(d / "0.npz")
    ids, amodal = arrays["instances_objects"], arrays["seg_masks_single"]
    k = int(np.argmax(np.bincount(ids.ravel())[1:]))  # the largest visible object
    ys, xs = np.nonzero(ids == k + 1)
    amodal[k, ys[:2], xs[:2]] = False  # two visible pixels fall outside the amodal mask
    np.savez(d / "0.npz", **arrays)
    s = load_view(discover_views(root)[0])
    assert not (s.visible_masks & ~s.amodal_masks).any()


def test_order_mismatch_is_reported_and_strict_mode_raises(scene):
    root, d = scene
    order = json.loads((d / "0_order.json").read_text())
    order["1"]["occlusion"] = order["1"]["occlusion"] + 0.5
    (d / "0_order.json").write_text(json.dumps(order))
    ref = discover_views(root)[0]
    assert load_view(ref).order_mismatches() == [1]
    with pytest.raises(DataError, match="0_order.json: occlusion of objects \\[1\\]"):
        load_view(ref, strict_order=True)


def test_missing_root_and_unknown_split(dataset, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        discover_views(tmp_path / "nope")
    views = discover_views(dataset)
    with pytest.raises(
        DataError, match=r"unknown split 'validation'; known splits are \['test', 'train', 'val'\]"
    ):
        select_split(views, "validation")
    chosen = {v.scene for v in select_split(views, "val")}
    train = {v.scene for v in select_split(views, "train")}
    assert chosen and train and not chosen & train
