"""Synthetic generator: layout on disk, determinism, and physical consistency of depth and masks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mtl_grasp.data.synth import CATALOGUE, generate_dataset, render_scene


@pytest.fixture(scope="module")
def scenes():
    """Views of 24 scenes at 64 px with the noise-free per-object surfaces kept."""
    return [render_scene(i, image_size=64, seed=3, views=2, keep_surfaces=True) for i in range(24)]


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_writes_metagraspnet_sim_layout(tmp_path):
    dirs = generate_dataset(tmp_path, scenes=2, image_size=48, seed=0, views=2)
    assert [d.name for d in dirs] == ["scene0", "scene1"]
    names = sorted(p.name for p in dirs[0].iterdir())
    assert names == [
        "0.npz", "0_camera_params.json", "0_order.json", "0_rgb.png",
        "1.npz", "1_camera_params.json", "1_order.json", "1_rgb.png",
    ]  # fmt: skip
    with np.load(dirs[0] / "0.npz") as npz:
        assert set(npz.files) == {"depth", "instances_objects", "instances_semantic", "seg_masks_single"}
        depth, ids, amodal = npz["depth"], npz["instances_objects"], npz["seg_masks_single"]
    assert depth.dtype == np.float32 and depth.shape == (48, 48)
    assert np.isnan(depth).any(), "a real sensor leaves holes; so must the generator"
    finite = depth[np.isfinite(depth)]
    assert finite.min() > 40.0 and finite.max() < 80.0, "depth is in centimetres, bin ~50-80 cm away"
    assert amodal.shape == (ids.max(), 48, 48)
    camera = json.loads((dirs[0] / "0_camera_params.json").read_text())
    assert camera["width"] == camera["height"] == 48 and camera["fx"] > 0 and camera["cx"] == 24
    assert (tmp_path / "splits.json").is_file()


def test_same_seed_gives_byte_identical_files_and_other_seeds_differ(tmp_path):
    generate_dataset(tmp_path / "a", scenes=3, image_size=40, seed=7, views=2)
    generate_dataset(tmp_path / "b", scenes=3, image_size=40, seed=7, views=2)
    generate_dataset(tmp_path / "c", scenes=3, image_size=40, seed=8, views=2)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert a == b
    assert a.keys() == c.keys() and a["scene0/0.npz"] != c["scene0/0.npz"]
    # A scene does not depend on how many scenes are generated around it.
    generate_dataset(tmp_path / "d", scenes=1, image_size=40, seed=7, views=2, first_scene=2)
    d = _files(tmp_path / "d")
    assert d["scene2/1.npz"] == a["scene2/1.npz"] and d["scene2/0_rgb.png"] == a["scene2/0_rgb.png"]


def test_visible_object_is_the_nearest_and_depth_matches(scenes):
    for views in scenes:
        for v in views:
            surfaces = v.surfaces_cm  # inf outside each object
            nearest = surfaces.min(axis=0)
            on_object = np.isfinite(nearest)
            # the instance map holds the argmin of the object surfaces wherever an object is
            expected = np.where(on_object, surfaces.argmin(axis=0) + 1, 0)
            background_visible = v.instances_objects == 0
            # an object can be below the bin rim only where it is outside the floor (never happens)
            assert np.array_equal(v.instances_objects[on_object], expected[on_object])
            assert not (background_visible & on_object).any()
            # measured depth = nearest surface + sensor noise (holes excepted)
            ok = on_object & np.isfinite(v.depth_cm)
            assert np.abs(v.depth_cm[ok] - nearest[ok]).max() < 0.25


def test_visible_subset_of_amodal_and_ids_consecutive(scenes):
    for views in scenes:
        for v in views:
            n = v.amodal.shape[0]
            ids = v.instances_objects
            assert set(np.unique(ids)) <= set(range(n + 1))
            for k in range(n):
                assert not ((ids == k + 1) & ~v.amodal[k]).any()


def test_objects_rise_above_the_floor_and_differ_in_colour(scenes):
    for views in scenes:
        v = views[0]
        objects = v.instances_objects > 0
        depth = v.depth_cm
        floor = np.nanmax(depth[~objects])
        assert np.nanmax(depth[objects]) < floor - 0.5
        # objects stand out from the bin in RGB on average
        diff = np.abs(v.rgb[objects].mean(axis=0) - v.rgb[~objects].mean(axis=0)).max()
        assert diff > 5


def test_order_json_matches_masks_and_occlusion_relations(scenes):
    for views in scenes:
        for v in views:
            n = v.amodal.shape[0]
            vis = np.bincount(v.instances_objects.ravel(), minlength=n + 1)[1:]
            amodal_area = v.amodal.reshape(n, -1).sum(axis=1)
            for k in range(n):
                entry = v.order[str(k + 1)]
                assert entry["id"] == k + 1
                if amodal_area[k]:
                    assert entry["occlusion"] == pytest.approx(1 - vis[k] / amodal_area[k], abs=1e-6)
                parents = {p["id"] for p in entry["parents"]} - {0}
                # every object seen inside k's amodal mask lies over k
                seen = set(np.unique(v.instances_objects[v.amodal[k]]).tolist()) - {0, k + 1}
                assert seen <= parents
                assert (entry["layer"] == 0) == (not parents)
                for p in parents:
                    assert entry["layer"] > v.order[str(p)]["layer"]
                    assert k + 1 in {c["id"] for c in v.order[str(p)]["children"]}


def test_piles_have_occlusion_hidden_and_tiny_objects(scenes):
    rates, hidden, tiny, sizes, categories = [], 0, 0, [], set()
    for views in scenes:
        v = views[0]
        n = v.amodal.shape[0]
        vis = np.bincount(v.instances_objects.ravel(), minlength=n + 1)[1:]
        area = v.amodal.reshape(n, -1).sum(axis=1)
        rates += list(1 - vis / np.maximum(area, 1))
        hidden += int(((vis == 0) & (area > 0)).sum())
        tiny += int(((vis > 0) & (vis < 0.1 * area)).sum())
        ys, xs = np.nonzero(v.amodal.any(axis=0))
        sizes += [np.sqrt(a) for a in area if a]
        categories |= set(np.unique(v.instances_semantic).tolist()) - {0}
    occluded = np.mean(np.asarray(rates) >= 0.05)
    assert 0.2 < occluded < 0.9, occluded
    assert hidden >= 1 and tiny >= 1
    # at 64 px objects span ~4..30 px, i.e. 32..240 px at a 512 training size (anchors 16..256)
    assert 3 < np.median(sizes) < 25
    assert len(categories) >= len(CATALOGUE) // 2


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"scenes": 0}, "scenes"),
        ({"image_size": 8}, "image_size"),
        ({"views": 0}, "views"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments_name_the_argument(tmp_path, kwargs, name):
    args = {"scenes": 1, **kwargs}
    with pytest.raises(ValueError, match=name):
        generate_dataset(tmp_path, **args)
