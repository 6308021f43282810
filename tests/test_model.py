"""AmodalRCNN on tiny inputs (2 x 64x64): losses, gradients, empty targets, golden values, inference."""

from __future__ import annotations

import math

import pytest
import torch
from test_model_helpers import SIZE, empty_target, images, scene_targets, target, tiny_model

from training.model import LOSS_NAMES
from training.model.task_heads import TASK_HEADS, occlusion_loss


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def _losses(model, targets=None, seed: int = 1):
    model.train()
    rgb, depth = images()
    torch.manual_seed(seed)  # torchvision's fg/bg samplers draw from the global RNG
    return model(rgb, depth, scene_targets() if targets is None else targets)


def test_loss_names_are_the_seven_tasks_in_order():
    assert LOSS_NAMES == (
        "rpn_objectness", "rpn_box", "roi_cls", "roi_box", "visible_mask", "amodal_mask", "occlusion",
    )  # fmt: skip
    assert tuple(TASK_HEADS) == LOSS_NAMES[4:]  # the task-head registry yields the last three losses


def test_training_forward_gives_seven_finite_scalar_losses(model):
    losses = _losses(model)
    assert tuple(losses) == LOSS_NAMES
    for name, value in losses.items():
        assert value.ndim == 0 and value.dtype == torch.float32, name
        assert torch.isfinite(value), name
        assert value.item() > 0.0, name  # every task has foreground samples in this scene


def test_every_parameter_receives_a_gradient(model):
    model.zero_grad(set_to_none=True)
    sum(_losses(model).values()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert missing == []
    model.zero_grad(set_to_none=True)


def test_shared_and_task_parameters_are_disjoint_and_complete(model):
    shared = {id(p) for p in model.shared_parameters()}
    task = {id(p) for p in model.task_parameters()}
    every = {id(p) for p in model.parameters() if p.requires_grad}
    assert shared and task and not shared & task
    assert shared | task == every
    groups = model.parameter_groups()
    assert list(groups) == ["shared", "rpn", "box", *TASK_HEADS]
    ids = [id(p) for params in groups.values() for p in params]
    assert len(ids) == len(set(ids)) and set(ids) == every


def test_empty_targets_give_finite_losses_connected_to_the_graph(model):
    model.train()
    rgb, depth = images()
    torch.manual_seed(1)
    Z = model.features(rgb, depth)
    losses = model.heads(Z, (SIZE, SIZE), [empty_target(), empty_target()])
    assert tuple(losses) == LOSS_NAMES
    for name in ("rpn_box", "roi_box", "visible_mask", "amodal_mask", "occlusion"):
        assert losses[name].item() == 0.0, name  # no foreground anywhere
    for name, value in losses.items():
        assert torch.isfinite(value) and value.requires_grad, name
        # differentiable w.r.t. Z: per-task feature gradients (FD, feature-level MTL) must not fail
        grads = torch.autograd.grad(value, Z[:4], retain_graph=True)
        assert all(torch.isfinite(g).all() for g in grads), name


def test_one_empty_image_in_a_batch(model):
    losses = _losses(model, [scene_targets()[0], empty_target()])
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["visible_mask"].item() > 0


GOLDEN = {  # torch.manual_seed(0) model, images(seed=0), sampler seed 1; CPU float32
    "rpn_objectness": 0.69451,
    "rpn_box": 0.02298,
    "roi_cls": 0.67395,
    "roi_box": 0.0442,
    "visible_mask": 1.04724,
    "amodal_mask": 2.27118,
    "occlusion": 0.55235,
}


def test_seeded_losses_match_golden_values():
    losses = _losses(tiny_model(seed=0))
    got = {k: round(v.item(), 5) for k, v in losses.items()}
    for name, expected in GOLDEN.items():
        assert got[name] == pytest.approx(expected, rel=1e-3, abs=1e-5), (name, got)


def test_features_then_heads_equals_forward(model):
    model.train()
    rgb, depth = images()
    torch.manual_seed(7)
    full = model(rgb, depth, scene_targets())
    torch.manual_seed(7)
    split = model.heads(model.features(rgb, depth), (SIZE, SIZE), scene_targets())
    for name in LOSS_NAMES:
        assert torch.equal(full[name], split[name]), name


def test_inference_returns_well_formed_instances(model):
    model.eval()
    rgb, depth = images(height=SIZE, width=96)
    with torch.no_grad():
        detections = model(rgb, depth)
    assert len(detections) == 2
    for det in detections:
        n = det["boxes"].shape[0]
        assert 0 < n <= model.config.detections_per_image
        assert det["boxes"].shape == (n, 4) and det["boxes"].dtype == torch.float32
        assert det["labels"].dtype == torch.int64 and bool((det["labels"] == 1).all())
        scores = det["scores"]
        assert scores.shape == (n,) and bool((scores[:-1] >= scores[1:]).all())
        assert bool(((scores > model.config.score_thresh) & (scores <= 1)).all())
        boxes = det["boxes"]
        assert bool((boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 96).all() and (boxes[:, 3] <= SIZE).all())
        assert bool((boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all())
        for key in ("visible_masks", "amodal_masks"):
            assert det[key].shape == (n, 28, 28)
            assert bool(((det[key] >= 0) & (det[key] <= 1)).all())
        assert det["occlusion"].shape == (n,) and bool(
            ((det["occlusion"] >= 0) & (det["occlusion"] <= 1)).all()
        )
    model.train()


def test_forward_export_matches_eval_forward(model):
    from mtl_grasp.contract import OUTPUT_NAMES

    model.eval()
    rgb, depth = images(batch=1)
    with torch.no_grad():
        exported = model.forward_export(rgb, depth)
        detections = model(rgb, depth)[0]
    assert len(exported) == len(OUTPUT_NAMES)
    for name, tensor in zip(OUTPUT_NAMES, exported):
        assert torch.equal(tensor, detections[name]), name
    with pytest.raises(ValueError, match="batch size 1"):
        model.forward_export(*images(batch=2))
    model.train()
    with pytest.raises(RuntimeError, match="eval"):
        model.forward_export(rgb, depth)


def test_channels_last_and_cpu_bf16_autocast_give_finite_losses(model):
    rgb, depth = images()
    model.to(memory_format=torch.channels_last)
    try:
        torch.manual_seed(1)
        cl = model(rgb.to(memory_format=torch.channels_last), depth.to(memory_format=torch.channels_last),
                   scene_targets())  # fmt: skip
        assert all(torch.isfinite(v) for v in cl.values())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.manual_seed(1)
            amp = model(rgb, depth, scene_targets())
        assert all(torch.isfinite(v) and v.dtype == torch.float32 for v in amp.values())
        sum(amp.values()).backward()
        assert all(p.grad is not None for p in model.shared_parameters())
    finally:
        model.to(memory_format=torch.contiguous_format)
        model.zero_grad(set_to_none=True)


def test_add_fusion_has_no_fusion_parameters():
    conv, add = tiny_model(), tiny_model(fusion="add")
    assert sum(p.numel() for p in conv.encoder.fusion.parameters()) == sum(
        2 * c * c + c for c in (64, 128, 256, 512)
    )
    assert sum(p.numel() for p in add.encoder.fusion.parameters()) == 0
    losses = _losses(add)
    assert all(torch.isfinite(v) for v in losses.values())


# ---- occlusion loss weighting --------------------------------------------------------------------


def test_occlusion_loss_weights_rare_occluded_class():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, -0.5]])
    target = torch.tensor([0, 1, 0, 0])
    # UOAIS weights [1, n_not_occluded / n_occluded] = [1, 3]
    per_sample = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    weights = torch.tensor([1.0, 3.0, 1.0, 1.0])
    expected = (per_sample * weights).sum() / weights.sum()
    assert occlusion_loss(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("label", [0, 1])
def test_occlusion_loss_with_a_single_class_is_plain_cross_entropy(label):
    logits = torch.tensor([[0.3, -0.2], [1.0, 0.5]], requires_grad=True)
    target = torch.full((2,), label)
    loss = occlusion_loss(logits, target)
    assert math.isfinite(loss.item())
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, target).item(), rel=1e-6)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_occlusion_target_uses_the_rate_threshold(model):
    # all objects below 0.05 -> every foreground ROI is "not occluded"; the loss stays finite
    targets = scene_targets()
    for t in targets:
        t["occluded_rate"] = torch.full_like(t["occluded_rate"], 0.049)
    assert torch.isfinite(_losses(model, targets)["occlusion"])
    from training.model.targets import prepare_targets

    prepared = prepare_targets(scene_targets(), (SIZE, SIZE), 2, 1, 0.05)
    assert prepared[0]["occluded"].tolist() == [0, 1, 0]


def test_uoais_box_head_without_fc_trains():
    model = tiny_model(box_fc_dim=0)
    assert model.roi_heads.box_predictor.cls_score.in_features == 16 * 7 * 7  # head_channels x 7 x 7
    losses = _losses(model)
    assert all(torch.isfinite(v) for v in losses.values())


def test_a_registered_head_sees_all_earlier_heads(monkeypatch):
    from training.model.task_heads import HeadSpec, MaskHead

    spec = HeadSpec(lambda i, c, n: MaskHead(i, c, n, "amodal_masks"), "extra_masks")
    monkeypatch.setitem(TASK_HEADS, "extra", spec)
    model = tiny_model().eval()
    # input = ROI features (32) + box code (16) + visible, amodal, occlusion features (3 x 16)
    assert model.roi_heads.task_heads["extra"].convs[0][0].in_channels == 32 + 16 + 3 * 16
    with torch.no_grad():
        det = model(*images(batch=1))[0]
    assert det["extra_masks"].shape == det["amodal_masks"].shape


def test_small_unaligned_input_pools_at_the_right_scale(model):
    # 40x72 pads to 64x96: P2 is 16x24; the ROI poolers must still use 1/4 for P2
    model.train()
    rgb, depth = images(height=40, width=72)
    targets = [target([[10, 10, 40, 30]], [0.0], 40, 72), target([[30, 5, 70, 38]], [0.3], 40, 72)]
    torch.manual_seed(1)
    losses = model(rgb, depth, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    assert model.roi_heads.box_roi_pool.scales == [0.25, 0.125, 0.0625, 0.03125]


def test_inference_with_no_detection_returns_empty_tensors():
    model = tiny_model(score_thresh=1.0).eval()  # softmax scores never exceed 1.0
    with torch.no_grad():
        outputs = model.forward_export(*images(batch=1))
    shapes = [tuple(t.shape) for t in outputs]
    assert shapes == [(0, 4), (0,), (0,), (0, 28, 28), (0, 28, 28), (0,)]


def test_multi_class_model_trains_and_predicts_labels_in_range():
    model = tiny_model(num_classes=3)
    targets = scene_targets()
    targets[0]["labels"] = torch.tensor([1, 3, 2])
    losses = _losses(model, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    assert model.roi_heads.box_predictor.cls_score.out_features == 4  # 3 classes + background
    model.eval()
    with torch.no_grad():
        labels = torch.cat([d["labels"] for d in model(*images())])
    assert labels.numel() > 0 and bool(((labels >= 1) & (labels <= 3)).all())


def test_box_code_of_foreground_rois_equals_their_rows_of_the_box_head(model):
    """The task heads' box code runs the box head's first conv again on the foreground ROIs alone
    (so a task loss's backward visits only them): same values as those ROIs' rows of the box branch."""
    outputs = []
    first_conv = model.roi_heads.box_head[0]
    hook = first_conv.register_forward_hook(lambda m, i, o: outputs.append(o.detach().clone()))
    try:
        _losses(model)
    finally:
        hook.remove()
    assert len(outputs) == 2  # all sampled ROIs (box branch), then the foreground ones (box code)
    every, foreground = outputs
    assert 0 < foreground.shape[0] < every.shape[0]
    exact = "donot_use_mm_for_euclid_dist"  # the mm shortcut cancels catastrophically
    distance = torch.cdist(foreground.flatten(1), every.flatten(1), compute_mode=exact).min(dim=1).values
    scale = every.flatten(1).norm(dim=1).max()
    assert float(distance.max()) <= 1e-6 * float(scale)  # each row is one of the box branch's rows
