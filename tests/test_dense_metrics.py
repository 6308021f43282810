"""Dense metrics: hand-computed values, scikit-learn's confusion matrix, whole-set accumulation, Δm."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix

from mtl_grasp.evaluation.delta_m import delta_m, relative_differences, single_task_baselines
from mtl_grasp.evaluation.dense import (
    METRIC_DIRECTIONS,
    DenseEvaluator,
    DepthMeter,
    InstanceMeter,
    NormalMeter,
    SegmentationMeter,
)


def test_segmentation_hand_computed() -> None:
    target = np.array([[0, 0, 1], [1, 2, -1]])
    pred = np.array([[0, 1, 1], [1, 1, 2]])
    meter = SegmentationMeter(4)
    meter.update(pred, target)
    # rows = ground truth, columns = prediction; the -1 pixel is not counted
    expected = np.zeros((4, 4), int)
    expected[0, 0], expected[0, 1], expected[1, 1], expected[2, 1] = 1, 1, 2, 1
    np.testing.assert_array_equal(meter.confusion, expected)
    # IoU: class 0: 1 / (2 + 1 - 1) = 1/2; class 1: 2 / (2 + 4 - 2) = 1/2; class 2: 0 / (1 + 0 - 0) = 0;
    # class 3 occurs nowhere: no IoU, left out of the mean
    np.testing.assert_allclose(meter.iou()[:3], [0.5, 0.5, 0.0])
    assert np.isnan(meter.iou()[3])
    out = meter.compute()
    assert out["miou"] == pytest.approx(1 / 3)
    assert out["pixel_acc"] == pytest.approx(3 / 5)


def test_segmentation_matches_scikit_learn_over_several_batches() -> None:
    rng = np.random.default_rng(0)
    k = 7
    meter = SegmentationMeter(k)
    all_t, all_p = [], []
    for _ in range(4):
        target = rng.integers(-1, k, size=(2, 9, 11))
        pred = np.where(
            rng.random(target.shape) < 0.6, np.clip(target, 0, None), rng.integers(0, k, target.shape)
        )
        meter.update(pred, target)
        keep = target != -1
        all_t.append(target[keep])
        all_p.append(pred[keep])
    t, p = np.concatenate(all_t), np.concatenate(all_p)
    reference = confusion_matrix(t, p, labels=list(range(k)))
    np.testing.assert_array_equal(meter.confusion, reference)
    tp = np.diag(reference)
    iou = tp / (reference.sum(0) + reference.sum(1) - tp)
    out = meter.compute()
    assert out["miou"] == pytest.approx(iou.mean())
    assert out["pixel_acc"] == pytest.approx(tp.sum() / reference.sum())


def test_segmentation_rejects_classes_out_of_range() -> None:
    meter = SegmentationMeter(3)
    with pytest.raises(ValueError, match=r"prediction classes must lie in 0\.\.2, found 0\.\.3"):
        meter.update(np.array([0, 3]), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"target classes"):
        meter.update(np.array([0, 1]), np.array([0, 5]))
    with pytest.raises(ValueError, match=r"prediction shape"):
        meter.update(np.zeros((2, 2), int), np.zeros((2, 3), int))


def test_depth_errors_are_a_global_pixel_mean() -> None:
    meter = DepthMeter()
    meter.update(np.array([[[5.0, 1.5, 1.0, 4.0]]]), np.array([[[0.0, 1.0, 2.0, 4.0]]]))  # 3 valid
    out = meter.compute()
    assert out["abs_err"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert out["rel_err"] == pytest.approx((0.5 / 1 + 1.0 / 2 + 0.0) / 3)
    meter.update(np.array([[[3.0]]]), np.array([[[1.0]]]))  # one more valid pixel, error 2
    assert meter.compute()["abs_err"] == pytest.approx((1.5 + 2.0) / 4)  # not the mean of batch means (1.25)


def _rotated(angles_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predictions at the given angles from a target (0, 0, 1), as [1, 3, 1, N] arrays."""
    a = np.radians(angles_deg)
    pred = np.stack([np.sin(a), np.zeros_like(a), np.cos(a)])[None, :, None, :]
    target = np.zeros_like(pred)
    target[:, 2] = 1.0
    return pred, target


def test_normal_statistics_hand_computed() -> None:
    pred, target = _rotated(np.array([0.0, 10.0, 20.0, 45.0, 90.0, 150.0]))
    target[0, :, 0, 5] = 0.0  # the 150 degree pixel is invalid
    pred[0, :, 0, 1] *= 3.0  # an unnormalised prediction measures the same angle
    meter = NormalMeter()
    meter.update(pred, target)
    out = meter.compute()
    assert out["mean"] == pytest.approx((0 + 10 + 20 + 45 + 90) / 5, abs=1e-4)
    assert out["median"] == pytest.approx(20.0, abs=1e-4)
    assert out["within_11.25"] == pytest.approx(2 / 5)
    assert out["within_22.5"] == pytest.approx(3 / 5)
    assert out["within_30"] == pytest.approx(3 / 5)


def test_normal_median_is_the_median_of_the_whole_set() -> None:
    meter = NormalMeter()
    batches = [np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0, 7.0]), np.array([80.0, 90.0])]
    for angles in batches:
        meter.update(*_rotated(angles))
    everything = np.concatenate(batches)
    assert meter.compute()["median"] == pytest.approx(np.median(everything), abs=1e-4) == 5.0
    assert np.mean([np.median(b) for b in batches]) == pytest.approx(30.83, abs=0.01)  # not that


def test_instance_l1_counts_both_components_of_instance_pixels() -> None:
    pred = np.array([[[[0.1, 0.5]], [[0.2, 9.0]]]])  # [1, 2, 1, 2]
    target = np.array([[[[0.0, 0.0]], [[0.0, 0.0]]]])
    mask = np.array([[[[True, False]]]])
    meter = InstanceMeter()
    meter.update(pred, target, mask)
    assert meter.compute()["l1"] == pytest.approx((0.1 + 0.2) / 2)


def test_evaluator_keys_and_directions() -> None:
    ev = DenseEvaluator(("segmentation", "depth", "normal", "instance"), num_classes=3)
    seg = np.array([[[0, 1], [2, 2]]])
    pred_n, target_n = _rotated(np.array([0.0, 30.0]))
    predictions = {"segmentation": seg, "depth": np.ones((1, 1, 2, 2)), "normal": pred_n,
                   "instance": np.zeros((1, 2, 1, 2))}  # fmt: skip
    targets = {"segmentation": seg, "depth": np.full((1, 1, 2, 2), 2.0), "normal": target_n,
               "instance": np.ones((1, 2, 1, 2)), "instance_mask": np.ones((1, 1, 1, 2), bool)}  # fmt: skip
    ev.update(predictions, targets)
    out = ev.compute()
    assert set(out) == set(METRIC_DIRECTIONS)
    assert out["segmentation/miou"] == 1.0 and out["depth/abs_err"] == 1.0 and out["depth/rel_err"] == 0.5
    assert out["normal/median"] == pytest.approx(15.0, abs=1e-4) and out["instance/l1"] == 1.0
    with pytest.raises(ValueError, match=r"no metrics for \['edges'\]"):
        DenseEvaluator(("edges",))


def test_delta_m_variants_by_hand() -> None:
    # LibMTL's count_improvement docstring example: task A (higher-better, lower-better), task B (higher)
    base = {"A/hi": 96.0, "A/lo": 98.0, "B/hi": 0.2}
    new = {"A/hi": 93.0, "A/lo": 99.0, "B/hi": 0.5}
    directions = {"A/hi": 1, "A/lo": -1, "B/hi": 1}
    rel = relative_differences(new, base, directions=directions)
    assert rel == pytest.approx({"A/hi": -3 / 96, "A/lo": -1 / 98, "B/hi": 1.5})
    per_task = 100 * ((-3 / 96 - 1 / 98) / 2 + 1.5) / 2  # 73.96 %, LibMTL's value x 100
    per_metric = 100 * (-3 / 96 - 1 / 98 + 1.5) / 3
    assert delta_m(new, base, averaging="task", sign="improvement", directions=directions) == pytest.approx(
        per_task
    )
    assert delta_m(new, base, averaging="metric", sign="improvement", directions=directions) == pytest.approx(
        per_metric
    )
    assert delta_m(new, base, averaging="metric", sign="degradation", directions=directions) == pytest.approx(
        -per_metric
    )


def test_delta_m_rejects_what_it_cannot_compare() -> None:
    base = {"depth/abs_err": 0.5, "segmentation/miou": 0.0}
    with pytest.raises(ValueError, match=r"'segmentation/miou' is 0"):
        delta_m(base, base, averaging="metric", sign="improvement")
    with pytest.raises(ValueError, match=r"results: missing or non-finite value for 'depth/abs_err'"):
        delta_m({}, {"depth/abs_err": 0.5}, averaging="metric", sign="improvement")
    with pytest.raises(ValueError, match=r"no direction .* 'depth/rmse'"):
        delta_m({"depth/rmse": 1.0}, {"depth/rmse": 1.0}, averaging="metric", sign="improvement")
    with pytest.raises(ValueError, match=r"averaging: expected one of"):
        delta_m(base, base, averaging="mean", sign="improvement")


def test_single_task_baselines_take_each_task_from_its_own_run() -> None:
    runs = {
        "depth": {"depth/abs_err": 0.4, "segmentation/miou": 0.01},
        "segmentation": {"segmentation/miou": 0.5, "segmentation/pixel_acc": 0.7, "depth/abs_err": 9.0},
    }
    assert single_task_baselines(runs) == {"depth/abs_err": 0.4, "segmentation/miou": 0.5,
                                           "segmentation/pixel_acc": 0.7}  # fmt: skip
