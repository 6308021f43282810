"""mtl_grasp.runtime on a hand-built contract-conforming ONNX graph (see test_runtime_toy.py):
loading, metadata checks, pre-processing units, resizing, selection, and every bad-input case."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from test_runtime_toy import TOY_REL_BOXES, TOY_SCORES, build_toy_model

from mtl_grasp import contract
from mtl_grasp.evaluation.predictions import PREDICTION_FIELDS
from mtl_grasp.runtime import Detections, Detector, read_metadata
from mtl_grasp.runtime.preprocess import resized_shape

H, W = 48, 64


@pytest.fixture(scope="module")
def toy_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_toy_model(tmp_path_factory.mktemp("toy") / "toy.onnx")


@pytest.fixture(scope="module")
def detector(toy_path: Path) -> Detector:
    return Detector(toy_path, providers="cpu", warmup=False)


def frame(h: int = H, w: int = W, value: int = 255, depth_m: float = 0.65) -> tuple[np.ndarray, np.ndarray]:
    return np.full((h, w, 3), value, np.uint8), np.full((h, w), depth_m, np.float32)


def toy_boxes(h: int, w: int) -> np.ndarray:
    return TOY_REL_BOXES * np.array([w, h, w, h], np.float32)


# ---- happy path ---------------------------------------------------------------------------------


def test_detect_filters_by_score_and_maps_outputs(detector: Detector) -> None:
    det = detector(*frame())
    assert isinstance(det, Detections)
    # scores = TOY_SCORES * max(rgb) = TOY_SCORES for a white image; 0.3 < 0.5 is dropped
    np.testing.assert_allclose(det.scores, TOY_SCORES[:2], rtol=1e-6)
    np.testing.assert_allclose(det.boxes, toy_boxes(H, W)[:2], rtol=1e-6)
    assert det.boxes.dtype == np.float32 and det.labels.dtype == np.int64
    assert det.visible_masks.shape == det.amodal_masks.shape == (2, H, W)
    assert det.visible_masks.dtype == bool and det.amodal_masks.dtype == bool
    assert det.label_names == ["object", "object"] and det.class_names == ["object"]
    assert set(det.to_prediction()) == set(PREDICTION_FIELDS)  # what mtl_grasp.evaluation reads
    assert det.timings.total_ms > 0 and det.timings.infer_ms > 0


def test_masks_are_pasted_into_their_boxes(detector: Detector) -> None:
    det = detector(*frame())
    x1, y1, x2, y2 = det.boxes[0]  # 6.4, 9.6, 32, 28.8: amodal = the whole box (up to rounding)
    ys, xs = np.nonzero(det.amodal_masks[0])
    assert abs(xs.min() - x1) <= 1 and abs(xs.max() + 1 - x2) <= 1
    assert abs(ys.min() - y1) <= 1 and abs(ys.max() + 1 - y2) <= 1
    # visible = left half of the box and inside the amodal mask
    vx = np.nonzero(det.visible_masks[0])[1]
    assert abs(vx.max() + 1 - (x1 + x2) / 2) <= 1
    assert not (det.visible_masks & ~det.amodal_masks).any()


def test_rgb_is_scaled_to_unit_range(detector: Detector) -> None:
    det = detector(*frame(value=127))  # scores = TOY_SCORES * 127/255: only 0.9*0.498 < 0.5 -> none
    assert len(det) == 0 and det.visible_masks.shape == (0, H, W)
    low = Detector(detector.model_path, providers="cpu", score_threshold=0.2, warmup=False)
    np.testing.assert_allclose(low(*frame(value=127)).scores, TOY_SCORES[:2] * 127 / 255, rtol=1e-5)


def test_uint16_depth_is_millimetres(detector: Detector) -> None:
    rgb, _ = frame()
    depth = np.full((H, W), 650, np.uint16)
    depth[0, 0] = 0  # invalid stays 0
    np.testing.assert_allclose(detector(rgb, depth).occlusion, 0.65, rtol=1e-6)


def test_float_depth_nan_inf_negative_become_invalid(detector: Detector) -> None:
    rgb, depth = frame(depth_m=0.8)
    depth[0, :4] = [np.nan, np.inf, -np.inf, -1.0]
    # occlusion = max(depth) in the toy: inf would win if it were passed through
    np.testing.assert_allclose(detector(rgb, depth).occlusion, 0.8, rtol=1e-6)
    # float64 and H x W x 1 are accepted too
    np.testing.assert_allclose(detector(rgb, depth.astype(np.float64)[:, :, None]).occlusion, 0.8, rtol=1e-6)


def test_all_invalid_depth_is_an_error_unless_allowed(toy_path: Path, detector: Detector) -> None:
    rgb, _ = frame()
    nan_depth = np.full((H, W), np.nan, np.float32)
    with pytest.raises(ValueError, match="depth: no valid pixel"):
        detector(rgb, nan_depth)
    with pytest.raises(ValueError, match="depth: no valid pixel"):
        detector(rgb, np.zeros((H, W), np.uint16))
    lenient = Detector(toy_path, providers="cpu", allow_all_invalid_depth=True, warmup=False)
    np.testing.assert_allclose(lenient(rgb, nan_depth).occlusion, 0.0)


def test_inference_size_keeps_aspect_and_maps_back(toy_path: Path, detector: Detector) -> None:
    h, w = 120, 160
    native = detector(*frame(h, w))
    small = Detector(toy_path, providers="cpu", inference_size=80, warmup=False)  # runs at 60 x 80
    det = small(*frame(h, w))
    np.testing.assert_allclose(det.boxes, native.boxes, atol=1e-3)
    assert det.amodal_masks.shape == (2, h, w)
    inter = (det.amodal_masks & native.amodal_masks).sum()
    union = (det.amodal_masks | native.amodal_masks).sum()
    assert inter / union > 0.99
    # "train": the metadata's training size (64 for the toy) -> runs at 48 x 64
    trained = Detector(toy_path, providers="cpu", inference_size="train", warmup=False)
    assert trained.inference_size == 64
    np.testing.assert_allclose(trained(*frame(h, w)).boxes, native.boxes, atol=1e-3)
    # keep_aspect=False: squashed to 64 x 64 like the training loader, still mapped back exactly
    squashed = Detector(toy_path, providers="cpu", inference_size=64, keep_aspect=False, warmup=False)
    np.testing.assert_allclose(squashed(*frame(h, w)).boxes, native.boxes, atol=1e-3)
    assert resized_shape(h, w, 64, keep_aspect=False) == (64, 64)


def test_max_instances_and_thresholds(toy_path: Path) -> None:
    det = Detector(toy_path, providers="cpu", score_threshold=0.0, max_instances=2, warmup=False)(*frame())
    np.testing.assert_allclose(det.scores, TOY_SCORES[:2], rtol=1e-6)
    det = Detector(toy_path, providers="cpu", score_threshold=0.0, warmup=False)(*frame())
    assert len(det) == 3 and np.all(np.diff(det.scores) <= 0)


def test_warmup_and_metadata_round_trip(toy_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="mtl_grasp.runtime"):
        det = Detector(toy_path)  # auto providers, warm-up at the training size
    assert "CPUExecutionProvider" in det.providers
    assert "CUDAExecutionProvider not available" in caplog.text  # why the preferred one was skipped
    assert "runs on" in caplog.text
    meta = read_metadata(toy_path)
    assert meta == contract.ModelMetadata(class_names=("object",), train_image_size=64)
    assert det.metadata == meta


# ---- bad input ----------------------------------------------------------------------------------


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="model_path: no such file"):
        Detector(tmp_path / "nope.onnx")


def test_corrupt_model_file(tmp_path: Path, toy_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf" * 10)
    with pytest.raises(ValueError, match="not a loadable ONNX model"):
        Detector(bad)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(toy_path.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a loadable ONNX model"):
        Detector(truncated)
    with pytest.raises(ValueError, match="is not a file"):
        Detector(tmp_path)


def _props(**override: str) -> dict[str, str]:
    props = contract.ModelMetadata(train_image_size=64).to_dict()
    props.update(override)
    return props


@pytest.mark.parametrize(
    ("props", "message"),
    [
        (_props(**{contract.META_CONTRACT_VERSION: "0"}), "contract version '0'"),
        ({k: v for k, v in _props().items() if k != contract.META_CLASS_NAMES}, "metadata lacks"),
        ({}, "metadata lacks"),
        (_props(**{contract.META_CLASS_NAMES: "not json"}), "malformed"),
        (_props(**{contract.META_CLASS_NAMES: "[]"}), "class_names is empty"),
        (
            _props(
                **{
                    contract.META_NORMALIZATION: json.dumps(
                        {**contract.normalization_dict(), "depth_std_m": 1}
                    )
                }
            ),
            "normalisation",
        ),
    ],
)
def test_bad_metadata(tmp_path: Path, props: dict[str, str], message: str) -> None:
    path = build_toy_model(tmp_path / "m.onnx", metadata=props)
    with pytest.raises(ValueError, match=message):
        Detector(path, warmup=False)
    with pytest.raises(ValueError, match=message):
        read_metadata(path)


def test_wrong_input_names(tmp_path: Path) -> None:
    path = build_toy_model(tmp_path / "m.onnx", input_names=("image", "depth"))
    with pytest.raises(ValueError, match=r"inputs \['depth', 'image'\] but the contract expects"):
        Detector(path, warmup=False)


@pytest.mark.parametrize(
    ("rgb", "depth", "message"),
    [
        (np.zeros((H, W, 3), np.float32), np.ones((H, W), np.float32), "rgb: expected dtype uint8"),
        (np.zeros((H, W), np.uint8), np.ones((H, W), np.float32), "rgb: expected shape H x W x 3"),
        (np.zeros((H, W, 4), np.uint8), np.ones((H, W), np.float32), "rgb: expected shape H x W x 3"),
        ([[0]], np.ones((H, W), np.float32), "rgb: expected a numpy uint8 array"),
        (np.zeros((0, W, 3), np.uint8), np.ones((0, W), np.float32), "rgb: empty image"),
        (np.zeros((H, W, 3), np.uint8), np.ones((H, W), np.int32), "depth: expected dtype uint16"),
        (np.zeros((H, W, 3), np.uint8), np.ones((H, W, 2), np.float32), "depth: expected shape H x W"),
        (np.zeros((H, W, 3), np.uint8), np.ones((H, W - 1), np.float32), "differs from rgb size"),
        (np.zeros((H, W, 3), np.uint8), None, "depth: expected a numpy array"),
        (np.zeros((16, 16, 3), np.uint8), np.ones((16, 16), np.float32), "smaller than 32 pixels"),
    ],
)
def test_bad_frames(detector: Detector, rgb: object, depth: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        detector(rgb, depth)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"score_threshold": 1.5}, "score_threshold"),
        ({"mask_threshold": 0.0}, "mask_threshold"),
        ({"max_instances": 0}, "max_instances"),
        ({"inference_size": 8}, "inference_size"),
        ({"inference_size": "native"}, "inference_size: expected None, 'train' or an int"),
        ({"num_threads": 0}, "num_threads"),
        ({"warmup": (64,)}, "warmup: expected a bool or"),
        ({"providers": "cuda"}, "CUDAExecutionProvider is not available"),
        ({"providers": []}, "providers: expected"),
        ({"providers": [42]}, "providers: expected names"),
    ],
)
def test_bad_detector_arguments(toy_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Detector(toy_path, **{"warmup": False, **kwargs})


def test_label_outside_class_names_is_reported(tmp_path: Path) -> None:
    path = build_toy_model(tmp_path / "m.onnx", label=2)  # metadata has one class
    with pytest.raises(RuntimeError, match=r"labels 2..2 outside 1..1"):
        Detector(path, providers="cpu", warmup=False)(*frame())


def test_empty_detections_have_consistent_shapes() -> None:
    empty = Detections.empty(4, 5, ["object"])
    assert len(empty) == 0 and empty.boxes.shape == (0, 4) and empty.amodal_masks.shape == (0, 4, 5)
    assert empty.label_names == [] and empty.occluded().shape == (0,)
    assert set(empty.to_prediction()) == set(PREDICTION_FIELDS)
