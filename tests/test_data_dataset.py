"""Torch dataset: shapes, dtypes, targets consistent with masks, nearest-resized depth, augmentation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mtl_grasp.data import DataError
from mtl_grasp.data.coco import build_coco
from mtl_grasp.data.reader import load_view
from mtl_grasp.data.synth import generate_dataset
from training.data import AugmentConfig, MetaGraspNetDataset, collate_batch, masks_to_boxes

SRC = 48


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, scenes=8, image_size=SRC, seed=4, views=1)
    return root


def test_items_follow_the_architecture_contract(root):
    ds = MetaGraspNetDataset(root, image_size=64)
    coco_ids = {img["id"]: img for img in build_coco(root)["images"]}
    for i in range(len(ds)):
        rgb, depth, t = ds[i]
        assert rgb.shape == (3, 64, 64) and rgb.dtype == torch.float32
        assert rgb.min() >= 0.0 and rgb.max() <= 1.0
        assert depth.shape == (1, 64, 64) and depth.dtype == torch.float32
        n = len(t["labels"])
        assert n > 0
        assert t["boxes"].shape == (n, 4) and t["boxes"].dtype == torch.float32
        assert t["labels"].dtype == torch.int64 and bool((t["labels"] == 1).all())
        for key in ("visible_masks", "amodal_masks"):
            assert t[key].shape == (n, 64, 64) and t[key].dtype == torch.uint8
        assert t["occluded"].dtype == torch.int64 and t["occluded_rate"].dtype == torch.float32
        assert torch.equal(t["occluded"], (t["occluded_rate"] >= 0.05).long())
        vis, amo = t["visible_masks"].bool(), t["amodal_masks"].bool()
        assert not (vis & ~amo).any() and vis.flatten(1).any(1).all()
        assert torch.equal(t["boxes"], masks_to_boxes(amo))
        assert t["image_id"] in coco_ids and t["orig_size"] == (SRC, SRC)


def test_boxes_are_tight_and_exclusive():
    m = torch.zeros(1, 10, 10, dtype=torch.bool)
    m[0, 2:5, 3:9] = True
    assert masks_to_boxes(m).tolist() == [[3.0, 2.0, 9.0, 5.0]]
    assert masks_to_boxes(torch.zeros(0, 4, 4, dtype=torch.bool)).shape == (0, 4)


def test_rgb_resize_and_nearest_depth(root):
    ds = MetaGraspNetDataset(root, image_size=96)
    sample = load_view(ds.views[0])
    rgb, depth, _ = ds[0]
    expected = cv2.resize(sample.rgb, (96, 96), interpolation=cv2.INTER_LINEAR)
    assert torch.allclose(rgb, torch.from_numpy(expected).permute(2, 0, 1).float() / 255)
    # nearest: every value is an original value (holes stay 0, nothing blurred across edges)
    assert set(np.unique(depth.numpy())) <= set(np.unique(sample.depth))
    assert (depth == 0).any() and 0.4 < depth.max() < 0.8  # metres


def test_objects_invisible_after_shrinking_are_dropped(root):
    small = MetaGraspNetDataset(root, image_size=12)
    full = MetaGraspNetDataset(root, image_size=SRC)
    n_small = sum(len(small[i][2]["labels"]) for i in range(len(small)))
    n_full = sum(len(full[i][2]["labels"]) for i in range(len(full)))
    assert n_small < n_full
    for i in range(len(small)):
        assert small[i][2]["visible_masks"].flatten(1).any(1).all()


def test_flip_moves_image_depth_masks_and_boxes_together(root):
    plain = MetaGraspNetDataset(root, image_size=64)
    flip_only = AugmentConfig(flip_probability=1.0, brightness=0, contrast=0, saturation=0)
    flipped = MetaGraspNetDataset(root, image_size=64, augment=True, augment_config=flip_only)
    rgb, depth, t = plain[2]
    frgb, fdepth, ft = flipped[2]
    assert torch.allclose(frgb, rgb.flip(-1)) and torch.equal(fdepth, depth.flip(-1))
    for key in ("visible_masks", "amodal_masks"):
        assert torch.equal(ft[key], t[key].flip(-1))
    assert torch.equal(ft["boxes"], masks_to_boxes(ft["amodal_masks"].bool()))
    assert not torch.equal(ft["boxes"], t["boxes"])
    for key in ("labels", "occluded", "occluded_rate"):
        assert torch.equal(ft[key], t[key])


def test_colour_jitter_touches_only_rgb_and_is_reproducible(root):
    cfg = AugmentConfig(flip_probability=0.0)
    plain = MetaGraspNetDataset(root, image_size=64)
    a = MetaGraspNetDataset(root, image_size=64, augment=True, augment_config=cfg, seed=1)
    b = MetaGraspNetDataset(root, image_size=64, augment=True, augment_config=cfg, seed=1)
    rgb, depth, t = plain[0]
    argb, adepth, at = a[0]
    assert torch.equal(adepth, depth) and torch.equal(at["amodal_masks"], t["amodal_masks"])
    assert not torch.allclose(argb, rgb) and argb.min() >= 0 and argb.max() <= 1
    assert torch.equal(b[0][0], argb)  # same seed, epoch, index -> same draw
    b.set_epoch(1)
    assert not torch.equal(b[0][0], argb)


def test_random_flips_are_seeded(root):
    a = MetaGraspNetDataset(root, image_size=32, augment=True, seed=9)
    b = MetaGraspNetDataset(root, image_size=32, augment=True, seed=9)
    boxes_a = [a[i][2]["boxes"] for i in range(len(a))]
    boxes_b = [b[i][2]["boxes"] for i in range(len(b))]
    plain = MetaGraspNetDataset(root, image_size=32)
    flipped = [not torch.equal(x, plain[i][2]["boxes"]) for i, x in enumerate(boxes_a)]
    assert all(torch.equal(x, y) for x, y in zip(boxes_a, boxes_b))
    assert any(flipped) and not all(flipped)  # p = 0.5 over 8 items with this seed


def test_class_aware_labels_are_category_ids(root):
    ds = MetaGraspNetDataset(root, image_size=SRC, class_agnostic=False)
    _, _, t = ds[0]
    sample = load_view(ds.views[0])
    visible = sample.visible_area > 0
    assert t["labels"].tolist() == sample.category_ids[visible].tolist()


def test_split_and_collate_through_a_dataloader(root):
    ds = MetaGraspNetDataset(root, split="train", image_size=32)
    val = MetaGraspNetDataset(root, split="val", image_size=32)
    assert {v.scene for v in ds.views}.isdisjoint({v.scene for v in val.views})
    loader = DataLoader(ds, batch_size=3, collate_fn=collate_batch)
    rgb, depth, targets = next(iter(loader))
    assert rgb.shape == (3, 3, 32, 32) and depth.shape == (3, 1, 32, 32) and len(targets) == 3
    with pytest.raises(ValueError, match="same shape"):
        collate_batch([ds[0], MetaGraspNetDataset(root, image_size=16)[0]])
    with pytest.raises(ValueError, match="empty batch"):
        collate_batch([])


def test_bad_arguments(root, tmp_path):
    with pytest.raises(ValueError, match="image_size"):
        MetaGraspNetDataset(root, image_size=0)
    with pytest.raises(DataError, match="unknown split 'dev'"):
        MetaGraspNetDataset(root, split="dev")
    with pytest.raises(DataError, match="no views found"):
        MetaGraspNetDataset(tmp_path)
