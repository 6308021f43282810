"""paste_masks (the one mask pasting of the project), selection, and execution-provider choice."""

from __future__ import annotations

import numpy as np
import pytest

from mtl_grasp.runtime import paste_masks, resolve_providers
from mtl_grasp.runtime.postprocess import boxes_to_image, select
from mtl_grasp.runtime.preprocess import resized_shape
from mtl_grasp.runtime.providers import CPU, CUDA, TENSORRT


def test_full_mask_fills_exactly_an_integer_box() -> None:
    masks = paste_masks(np.array([[10, 5, 30, 25]], float), np.ones((1, 28, 28)), 40, 50)
    expected = np.zeros((40, 50), bool)
    expected[5:25, 10:30] = True
    assert masks.shape == (1, 40, 50) and masks.dtype == bool
    np.testing.assert_array_equal(masks[0], expected)


def test_half_mask_and_fractional_box() -> None:
    roi = np.zeros((1, 28, 28), np.float32)
    roi[0, :, :14] = 1.0  # left half
    masks = paste_masks(np.array([[4.3, 2.7, 60.3, 30.7]]), roi, 32, 64)
    cols = np.nonzero(masks[0].any(axis=0))[0]
    rows = np.nonzero(masks[0].any(axis=1))[0]
    # box x: 4.3..60.3 -> left half ends at 32.3; pixel centres 4.5..31.5 are inside
    assert cols.min() == 4 and cols.max() == 31
    assert rows.min() == 3 and rows.max() == 30


def test_bilinear_threshold_follows_probabilities() -> None:
    roi = np.full((2, 28, 28), 0.6, np.float32)
    roi[1] = 0.4
    masks = paste_masks(np.array([[0, 0, 28, 28], [0, 0, 28, 28]], float), roi, 28, 28, threshold=0.5)
    assert masks[0].all() is np.True_ or masks[0][1:-1, 1:-1].all()
    assert not masks[1].any()
    # a lower threshold turns the 0.4 mask on
    assert paste_masks(np.array([[0, 0, 28, 28]], float), roi[1:], 28, 28, threshold=0.3)[0, 1:-1, 1:-1].all()


def test_boxes_outside_or_degenerate() -> None:
    boxes = np.array([[-10, -10, 10, 10], [50, 50, 80, 90], [5, 5, 5, 9], [np.nan, 0, 3, 3]], float)
    masks = paste_masks(boxes, np.ones((4, 28, 28)), 32, 32)
    assert masks[0, :10, :10].all() and not masks[0, 10:, :].any()  # clipped to the image
    assert not masks[1].any()  # entirely outside
    assert not masks[2].any() and not masks[3].any()  # zero width / NaN


def _reference_paste(box: np.ndarray, roi: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear sampling written from the definition: probability at every pixel centre."""
    m = roi.shape[0]
    padded = np.pad(roi, 1)  # zero outside the grid
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    u = (xs - box[0]) / (box[2] - box[0]) * m - 0.5 + 1  # +1: padding
    v = (ys - box[1]) / (box[3] - box[1]) * m - 0.5 + 1
    inside = (u >= 0) & (u <= m + 1) & (v >= 0) & (v <= m + 1)
    u, v = np.clip(u, 0, m + 1 - 1e-9), np.clip(v, 0, m + 1 - 1e-9)
    u0, v0 = np.floor(u).astype(int), np.floor(v).astype(int)
    u1, v1 = np.minimum(u0 + 1, m + 1), np.minimum(v0 + 1, m + 1)
    fu, fv = u - u0, v - v0
    prob = (
        padded[v0, u0] * (1 - fu) * (1 - fv)
        + padded[v0, u1] * fu * (1 - fv)
        + padded[v1, u0] * (1 - fu) * fv
        + padded[v1, u1] * fu * fv
    )
    return np.where(inside, prob, 0.0)


def test_paste_masks_matches_bilinear_definition() -> None:
    rng = np.random.default_rng(0)
    # smooth blobs (real mask heads are smooth) at random centres, in random boxes
    v, u = np.mgrid[0:28, 0:28] + 0.5
    centres = rng.uniform(8, 20, (6, 2, 1, 1))
    roi = np.exp(-((u - centres[:, 0]) ** 2 + (v - centres[:, 1]) ** 2) / 60.0).astype(np.float32)
    boxes = np.sort(rng.uniform(-5, 70, (6, 2, 2)), axis=1).reshape(6, 4)  # x1 y1 x2 y2
    masks = paste_masks(boxes, roi, 64, 72, threshold=0.5)
    for i in range(len(boxes)):
        prob = _reference_paste(boxes[i], roi[i], 64, 72)
        decided = np.abs(prob - 0.5) > 0.01  # cv2 interpolates in fixed point (1/32 pixel)
        np.testing.assert_array_equal(masks[i][decided], (prob >= 0.5)[decided])
        assert decided.mean() > 0.95


def test_paste_masks_bad_shapes() -> None:
    with pytest.raises(ValueError, match="boxes: expected shape"):
        paste_masks(np.zeros((2, 3)), np.zeros((2, 28, 28)), 10, 10)
    with pytest.raises(ValueError, match="roi_masks: expected shape"):
        paste_masks(np.zeros((2, 4)), np.zeros((3, 28, 28)), 10, 10)
    with pytest.raises(ValueError, match="height, width"):
        paste_masks(np.zeros((0, 4)), np.zeros((0, 28, 28)), 0, 10)
    assert paste_masks(np.zeros((0, 4)), np.zeros((0, 28, 28)), 5, 6).shape == (0, 5, 6)


def test_select_and_box_mapping() -> None:
    scores = np.array([0.2, 0.9, 0.6, 0.9, 0.55], np.float32)
    np.testing.assert_array_equal(select(scores, 0.5, 3), [1, 3, 2])
    np.testing.assert_array_equal(select(scores, 0.95, 3), [])
    boxes = boxes_to_image(np.array([[10, 20, 30, 40]], np.float32), scale_x=0.5, scale_y=0.25)
    np.testing.assert_allclose(boxes, [[20, 80, 60, 160]])
    assert resized_shape(480, 640, 512) == (384, 512)
    assert resized_shape(480, 640, None) == (480, 640)


def test_auto_providers_prefer_tensorrt_then_cuda(tmp_path) -> None:
    choice = resolve_providers(None, [CPU, CUDA, TENSORRT], fp16=True, trt_cache_dir=tmp_path)
    assert choice.names == [TENSORRT, CUDA, CPU] and choice.notes == []
    trt_options = choice.providers[0][1]
    assert trt_options["trt_fp16_enable"] is True
    assert trt_options["trt_engine_cache_enable"] is True
    assert trt_options["trt_engine_cache_path"] == str(tmp_path)


def test_auto_providers_explain_missing_ones() -> None:
    choice = resolve_providers("auto", ["AzureExecutionProvider", CPU])
    assert choice.names == [CPU]
    assert len(choice.notes) == 2 and "TensorrtExecutionProvider not available" in choice.notes[0]
    assert "onnxruntime-gpu" in choice.notes[1]


def test_explicit_providers() -> None:
    available = [CUDA, CPU]
    assert resolve_providers("cuda", available).names == [CUDA]
    assert resolve_providers(["CUDAExecutionProvider", "cpu"], available).names == [CUDA, CPU]
    pair = resolve_providers((CUDA, {"device_id": 0}), available)
    assert pair.providers == [(CUDA, {"device_id": 0})]
    with pytest.raises(ValueError, match=r"TensorrtExecutionProvider is not available .*available: \["):
        resolve_providers("tensorrt", available)
