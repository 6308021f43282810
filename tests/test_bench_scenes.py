"""Benchmark scenes: the trained-RPN emulation gives the ROI sampler its full foreground quota."""

from __future__ import annotations

import pytest
import torch
from test_model_helpers import images, scene_targets, tiny_model

from training.bench.scenes import plant_trained_proposals


def _foreground_rois(model) -> int:
    counts: list[int] = []
    hook = model.roi_heads.box_code.register_forward_hook(lambda m, i, o: counts.append(o.shape[0]))
    try:
        rgb, depth = images()
        torch.manual_seed(1)
        losses = model(rgb, depth, scene_targets())
    finally:
        hook.remove()
    assert all(torch.isfinite(v) for v in losses.values())
    return counts[0]


def test_planted_proposals_fill_the_samplers_foreground_quota() -> None:
    quota = 32 // 4  # roi_batch_size_per_image=32, positive fraction 0.25 -> at most 8 per image
    untrained = _foreground_rois(tiny_model(roi_batch_size_per_image=32))
    model = tiny_model(roi_batch_size_per_image=32)
    plant_trained_proposals(model, 20)
    assert _foreground_rois(model) == 2 * quota > untrained


def test_planting_leaves_inference_and_zero_alone() -> None:
    model = tiny_model()
    reference = tiny_model()
    plant_trained_proposals(model, 0)
    assert "forward" not in vars(model.rpn)  # nothing patched
    plant_trained_proposals(model, 5)
    model.eval(), reference.eval()
    rgb, depth = images()
    with torch.no_grad():
        ours, theirs = model(rgb, depth), reference(rgb, depth)
    for a, b in zip(ours, theirs):
        assert torch.equal(a["boxes"], b["boxes"])  # no targets at inference: proposals untouched
    with pytest.raises(ValueError, match="per_image"):
        plant_trained_proposals(model, -1)


@pytest.mark.parametrize("bench", ["methods", "diagnostics", "model"])
def test_benches_reject_a_negative_fg_rois_before_building_anything(bench: str, capsys) -> None:
    from training.cli import main

    assert main(["bench", bench, "--device", "cpu", "--fg-rois", "-1"]) == 2
    assert "--fg-rois: expected an integer >= 0, got -1" in capsys.readouterr().err
