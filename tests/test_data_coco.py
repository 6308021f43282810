"""Generator -> reader -> COCO JSON -> pycocotools round trip, split selection and the two CLI commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_util
from pycocotools.coco import COCO

from mtl_grasp.data import DataError
from mtl_grasp.data.coco import build_coco, mask_bbox, write_coco
from mtl_grasp.data.reader import discover_views, load_view
from mtl_grasp.data.splits import load_splits
from mtl_grasp.data.synth import generate_dataset
from training.cli import main as cli

SIZE = 56
# pycocotools' decode trips a numpy-2 DeprecationWarning inside the library itself (not our call).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, scenes=10, image_size=SIZE, seed=11, views=2)
    return root


@pytest.fixture(scope="module")
def coco_file(dataset, tmp_path_factory):
    return write_coco(build_coco(dataset), tmp_path_factory.mktemp("coco") / "all.json")


def test_pycocotools_round_trip_is_exact(dataset, coco_file):
    gt = COCO(str(coco_file))
    data = json.loads(coco_file.read_text())
    assert data["categories"] == [{"id": 1, "name": "object", "supercategory": "object"}]
    views = discover_views(dataset)
    assert sorted(gt.getImgIds()) == [v.image_id for v in views]
    n_checked = n_hidden = 0
    for ref in views:
        s = load_view(ref)
        img = gt.loadImgs(ref.image_id)[0]
        assert img["file_name"] == f"{ref.scene}/{ref.view}_rgb.png"
        assert img["depth_file_name"] == f"{ref.scene}/{ref.view}.npz"
        assert (img["height"], img["width"]) == (SIZE, SIZE)
        anns = {a["object_id"]: a for a in gt.loadAnns(gt.getAnnIds(imgIds=ref.image_id))}
        for k, oid in enumerate(s.object_ids):
            if s.visible_area[k] == 0:
                assert oid not in anns, "fully hidden objects are not annotated"
                n_hidden += 1
                continue
            a = anns[oid]
            amodal, visible = s.amodal_masks[k], s.visible_masks[k]
            assert np.array_equal(gt.annToMask(a).astype(bool), amodal)
            assert np.array_equal(mask_util.decode(_bytes(a["visible_mask"])).astype(bool), visible)
            occluded = mask_util.decode(_bytes(a["occluded_mask"])).astype(bool)
            assert np.array_equal(occluded, amodal & ~visible)
            assert a["area"] == amodal.sum() and a["iscrowd"] == 0 and a["category_id"] == 1
            assert a["bbox"] == mask_util.toBbox(_bytes(a["segmentation"])).tolist()
            assert a["visible_bbox"] == mask_util.toBbox(_bytes(a["visible_mask"])).tolist()
            x, y, w, h = map(int, a["bbox"])  # the box is tight around the amodal mask
            assert amodal[y : y + h, x : x + w].sum() == amodal.sum()
            assert amodal[y, x : x + w].any() and amodal[y + h - 1, x : x + w].any()
            assert amodal[y : y + h, x].any() and amodal[y : y + h, x + w - 1].any()
            assert a["occluded_rate"] == pytest.approx(occluded.sum() / amodal.sum(), abs=1e-6)
            n_checked += 1
        assert len(anns) == int((s.visible_area > 0).sum())
    assert n_checked > 50 and n_hidden >= 1


def _bytes(rle):
    return {"size": rle["size"], "counts": rle["counts"].encode()}


def test_mask_bbox_is_pixel_inclusive():
    m = np.zeros((10, 12), bool)
    m[2:5, 3:9] = True
    assert mask_bbox(m) == [3.0, 2.0, 6.0, 3.0]
    assert mask_bbox(np.zeros((4, 4), bool)) == [0.0, 0.0, 0.0, 0.0]


def test_splits_partition_scenes_and_keep_image_ids(dataset):
    everything = build_coco(dataset)
    by_id = {img["id"]: img for img in everything["images"]}
    scenes = {}
    for split in ("train", "val", "test"):
        part = build_coco(dataset, split=split)
        assert part["info"]["split"] == split
        scenes[split] = {img["scene"] for img in part["images"]}
        for img in part["images"]:
            assert by_id[img["id"]] == img  # same ids as the full conversion (and the torch dataset)
        ids = {img["id"] for img in part["images"]}
        assert all(a["image_id"] in ids for a in part["annotations"])
    assert not scenes["train"] & scenes["val"] and not scenes["train"] & scenes["test"]
    assert not scenes["val"] & scenes["test"]
    assert set().union(*scenes.values()) == {img["scene"] for img in everything["images"]}
    with pytest.raises(DataError, match=r"unknown split 'dev'"):
        build_coco(dataset, split="dev")


def test_class_aware_and_min_visible_area(dataset):
    aware = build_coco(dataset, class_agnostic=False)
    cats = {c["id"] for c in aware["categories"]}
    assert len(cats) > 3 and {a["category_id"] for a in aware["annotations"]} == cats
    strict = build_coco(dataset, min_visible_area=20)
    loose = build_coco(dataset, min_visible_area=0)
    assert len(strict["annotations"]) < len(build_coco(dataset)["annotations"]) < len(loose["annotations"])
    with pytest.raises(ValueError, match="min_visible_area"):
        build_coco(dataset, min_visible_area=-1)


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no views found"):
        build_coco(tmp_path)


def test_cli_synth_coco_and_make_splits(tmp_path, capsys):
    out = tmp_path / "synth"
    assert cli(["synth", "--out", str(out), "--scenes", "4", "--image-size", "40", "--seed", "2"]) == 0
    assert "wrote 4 scenes" in capsys.readouterr().out
    coco = tmp_path / "val.json"
    splits = tmp_path / "my_splits.json"
    args = ["coco", "--root", str(out), "--out", str(coco), "--split", "val", "--make-splits", str(splits)]
    assert cli([*args, "--fractions", "train=0.5,val=0.5"]) == 0
    made = load_splits(splits)
    assert made.names == ("train", "val") and len(made.scenes("val")) == 2
    data = json.loads(coco.read_text())
    assert {img["scene"] for img in data["images"]} == set(made.scenes("val"))
    # bad input: one error line naming the problem, exit code 2, no traceback
    assert cli(["coco", "--root", str(out), "--out", str(coco), "--split", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown split 'nope'" in err and "Traceback" not in err
    assert cli(["synth", "--out", str(out), "--scenes", "0"]) == 2
    assert "scenes: expected an integer >= 1" in capsys.readouterr().err
