"""Bad inputs, targets and configurations raise clear errors; the in-model normalisation is exact."""

from __future__ import annotations

import pytest
import torch
from test_model_helpers import SIZE, images, scene_targets, tiny_model

from mtl_grasp import contract
from training.model import ModelConfig
from training.model.normalization import normalize_depth, normalize_rgb


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.mark.parametrize(
    ("rgb_shape", "depth_shape", "message"),
    [
        ((2, 3, SIZE, SIZE), (2, 1, SIZE, 48), "rgb/depth: batch and size must match"),
        ((2, 3, SIZE, SIZE), (1, 1, SIZE, SIZE), "rgb/depth: batch and size must match"),
        ((2, 4, SIZE, SIZE), (2, 1, SIZE, SIZE), r"rgb: expected shape \[B, 3, H, W\]"),
        ((2, 3, SIZE, SIZE), (2, 3, SIZE, SIZE), r"depth: expected shape \[B, 1, H, W\]"),
        ((3, SIZE, SIZE), (1, SIZE, SIZE), r"rgb: expected shape \[B, 3, H, W\], got \[3, 64, 64\]"),
    ],
)
def test_bad_image_shapes_raise(model, rgb_shape, depth_shape, message):
    with pytest.raises(ValueError, match=message):
        model.features(torch.rand(rgb_shape), torch.rand(depth_shape))


def test_integer_images_raise(model):
    with pytest.raises(ValueError, match="rgb: expected a floating-point tensor, got torch.uint8"):
        model.features(torch.zeros(1, 3, SIZE, SIZE, dtype=torch.uint8), torch.zeros(1, 1, SIZE, SIZE))


def _bad(mutate):
    targets = scene_targets()
    mutate(targets[0])
    return targets


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t.update(boxes=t["boxes"] + torch.tensor([0.0, 0.0, 10.0, 0.0])),
         r"targets\[0\]\['boxes'\]\[1\] = .* lies outside the 64x64 image"),
        (lambda t: t["boxes"].__setitem__((0, 0), -5.0), r"targets\[0\]\['boxes'\]\[0\] .* outside"),
        (lambda t: t["boxes"].__setitem__((0, 2), 2.0), r"expected x2 > x1 and y2 > y1"),
        (lambda t: t.update(boxes=t["boxes"][:, :3]), r"targets\[0\]\['boxes'\]: expected float \[N, 4\]"),
        (lambda t: t.update(visible_masks=t["visible_masks"][:, :32]),
         r"targets\[0\]\['visible_masks'\]: expected \[N, H, W\] = \[3, 64, 64\].*got \[3, 32, 64\]"),
        (lambda t: t.update(amodal_masks=t["amodal_masks"][:2]), r"'amodal_masks'\]: expected \[N, H, W\]"),
        (lambda t: t.update(labels=torch.zeros(3, dtype=torch.int64)),
         r"'labels'\]: expected values in 1..1"),
        (lambda t: t.update(labels=torch.ones(3)), r"'labels'\]: expected int64 \[3\]"),
        (lambda t: t.update(masks=t.pop("amodal_masks")), r"targets\[0\]: missing keys \['amodal_masks'\]"),
        (lambda t: t.pop("occluded_rate"), r"missing keys \['occluded_rate or occluded'\]"),
        (lambda t: t.update(occluded_rate=torch.zeros(2)), r"'occluded_rate'\]: expected \[3\]"),
    ],
)  # fmt: skip
def test_bad_targets_raise(model, mutate, message):
    model.train()
    rgb, depth = images()
    with pytest.raises(ValueError, match=message):
        model(rgb, depth, _bad(mutate))


def test_targets_count_and_presence_are_checked(model):
    model.train()
    rgb, depth = images()
    with pytest.raises(ValueError, match="targets: expected a list of 2 dicts"):
        model(rgb, depth, scene_targets()[:1])
    with pytest.raises(ValueError, match="targets: required in training mode"):
        model(rgb, depth)


def test_occluded_flag_is_accepted_without_rate(model):
    model.train()
    targets = scene_targets()
    for t in targets:
        t["occluded"] = (t.pop("occluded_rate") >= 0.05).long()
    rgb, depth = images()
    assert torch.isfinite(model(rgb, depth, targets)["occlusion"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"fusion": "sum"}, r"ModelConfig.fusion: expected one of \('conv', 'add'\), got 'sum'"),
        ({"fpn_channels": 0}, "ModelConfig.fpn_channels: expected a positive int, got 0"),
        ({"anchor_sizes": (16, 32)}, "ModelConfig.anchor_sizes: expected 5 positive sizes"),
        ({"occlusion_threshold": 1.5}, r"ModelConfig.occlusion_threshold: expected a value in \[0, 1\]"),
        ({"mask_head_convs": 1}, "ModelConfig.mask_head_convs: expected an int >= 2"),
        ({"backbone_norm": "gn"}, "ModelConfig.backbone_norm"),
    ],
)
def test_bad_config_raises(overrides, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**overrides)


def test_config_round_trips_through_a_dict():
    config = ModelConfig(anchor_sizes=[8, 16, 32, 64, 128], fpn_channels=64)
    assert config.anchor_sizes == (8, 16, 32, 64, 128)
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"ModelConfig: unknown keys \['fpn_channel'\]"):
        ModelConfig.from_dict({"fpn_channel": 64})


def test_depth_normalisation_clips_standardises_and_zeroes_invalid():
    depth = torch.tensor([0.0, float("nan"), 0.05, contract.DEPTH_MEAN_M, 5.0]).view(1, 1, 1, 5)
    out = normalize_depth(depth).flatten().tolist()
    low = (contract.DEPTH_MIN_M - contract.DEPTH_MEAN_M) / contract.DEPTH_STD_M
    high = (contract.DEPTH_MAX_M - contract.DEPTH_MEAN_M) / contract.DEPTH_STD_M
    assert out == pytest.approx([0.0, 0.0, low, 0.0, high])


def test_rgb_normalisation_uses_contract_statistics():
    rgb = torch.tensor(contract.RGB_MEAN).view(1, 3, 1, 1) + torch.tensor(contract.RGB_STD).view(1, 3, 1, 1)
    assert normalize_rgb(rgb).flatten().tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_heads_reject_an_image_size_that_did_not_produce_z(model):
    model.train()
    rgb, depth = images(height=SIZE, width=96)
    Z = model.features(rgb, depth)
    with pytest.raises(ValueError, match=r"image_size: \(96, 64\) does not match Z.*padded to \(64, 96\)"):
        model.heads(Z, (96, 64), scene_targets())
    with pytest.raises(ValueError, match=r"Z: expected 5 FPN levels"):
        model.heads(Z[:4], (SIZE, 96), scene_targets())
