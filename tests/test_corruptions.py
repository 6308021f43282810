"""Image and depth-sensor corruptions: determinism, the documented formulas, argument errors; the sweep's
summary and the report's robustness table on a hand-made result."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mtl_grasp.evaluation import corruptions as C
from mtl_grasp.evaluation.robustness import RobustnessResult, markdown_tables, summarize, write_robustness


def _frame(h: int = 64, w: int = 80) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    depth = np.full((h, w), 0.7, np.float32)
    depth[20:40, 30:60] = 0.6  # an object 10 cm in front of the bin floor
    depth[0, :5] = 0.0  # sensor holes
    return rgb, depth


@pytest.mark.parametrize("name", ["gaussian_noise", "impulse_noise", "frost", "fog", "jpeg_compression"])
def test_rgb_corruptions_are_deterministic_per_seed_and_image(name: str) -> None:
    rgb, depth = _frame()
    a = C.corrupt_frame(rgb, depth, name, 3, seed=0, image_id=1)
    b = C.corrupt_frame(rgb, depth, name, 3, seed=0, image_id=1)
    assert a[0].dtype == np.uint8 and a[0].shape == rgb.shape and a[1] is depth
    np.testing.assert_array_equal(a[0], b[0])
    state = np.random.get_state()[1].copy()
    C.corrupt_frame(rgb, depth, name, 3, seed=1, image_id=1)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # the global numpy state is restored


def test_random_corruptions_change_with_seed_and_image_and_grow_with_severity() -> None:
    rgb, depth = _frame()
    base = C.corrupt_frame(rgb, depth, "gaussian_noise", 2, seed=0, image_id=1)[0]
    assert not np.array_equal(base, C.corrupt_frame(rgb, depth, "gaussian_noise", 2, seed=1, image_id=1)[0])
    assert not np.array_equal(base, C.corrupt_frame(rgb, depth, "gaussian_noise", 2, seed=0, image_id=2)[0])
    change = [
        np.abs(C.corrupt_frame(rgb, depth, "gaussian_noise", s)[0].astype(int) - rgb).mean() for s in (1, 5)
    ]
    assert change[1] > 2 * change[0]


def test_depth_noise_grows_with_distance_squared() -> None:
    depth = np.concatenate(
        [np.full((200, 200), 0.5, np.float32), np.full((200, 200), 1.0, np.float32)], axis=1
    )
    noisy = C.corrupt_depth(depth, "depth_noise", 5, np.random.default_rng(0))
    near, far = (noisy - depth)[:, :200].std(), (noisy - depth)[:, 200:].std()
    assert near == pytest.approx(C.NOISE_A[4] * 0.25, rel=0.05)
    assert far == pytest.approx(C.NOISE_A[4] * 1.0, rel=0.05)


def test_depth_corruptions_keep_invalid_pixels_invalid_and_follow_their_formulas() -> None:
    _, depth = _frame()
    rng = lambda: np.random.default_rng(0)  # noqa: E731
    for name in C.DEPTH_CORRUPTIONS:
        for s in C.SEVERITIES:
            out = C.corrupt_depth(depth, name, s, rng())
            assert out.dtype == np.float32 and np.isfinite(out).all() and (out[depth == 0] == 0).all(), (
                name,
                s,
            )
    q = C.corrupt_depth(depth + 0.0037 * (depth > 0), "depth_quantization", 3, rng())
    valid = q > 0
    np.testing.assert_allclose(q[valid] / 0.01, np.round(q[valid] / 0.01), atol=1e-4)
    scaled = C.corrupt_depth(depth, "depth_scale", 5, rng())
    ratio = np.unique(np.round(scaled[depth > 0] / depth[depth > 0], 5))
    assert len(ratio) == 1 and abs(abs(ratio[0] - 1) - 0.10) < 1e-4
    holes = C.corrupt_depth(np.full((100, 100), 0.7, np.float32), "depth_missing_blobs", 4, rng())
    assert (holes == 0).mean() == pytest.approx(C.BLOB_FRACTION[3], abs=0.01)
    edges = C.corrupt_depth(depth, "depth_edge_dropout", 5, rng())  # p = 1: the whole band is dropped
    dropped = (edges == 0) & (depth > 0)
    assert dropped[20, 30:60].all() and dropped[19, 30:60].all() and not dropped[60:, :].any()


def test_names_and_severities_are_checked() -> None:
    assert C.parse_corruptions("depth") == list(C.DEPTH_CORRUPTIONS)
    assert len(C.parse_corruptions("all")) == 20 and len(C.RGB_CORRUPTIONS) == 15
    assert C.parse_corruptions("fog,rgb")[0] == "fog"
    with pytest.raises(ValueError, match="unknown corruption 'motionblur'; did you mean 'motion_blur'"):
        C.parse_corruptions("motionblur")
    with pytest.raises(ValueError, match="severity 6 is outside 1..5"):
        C.parse_severities("1,6")
    with pytest.raises(ValueError, match="expected integers in 1..5, got 'x'"):
        C.parse_severities("x")
    with pytest.raises(ValueError, match="severity: expected an int in 1..5"):
        C.corrupt_frame(*_frame(), "fog", 0)


def _result() -> RobustnessResult:
    keys = ("bbox/mAP", "bbox/mAR", "vmask/mAP", "vmask/mAR", "amask/mAP", "amask/mAR", "occ/accuracy")
    clean = {k: 0.5 for k in keys}
    conditions = []
    for name, drop in (("fog", 0.1), ("depth_noise", 0.2)):
        for s in (1, 3):
            metrics = {k: 0.5 - drop * s / 3 for k in keys}
            conditions.append(
                {"corruption": name, "modality": C.modality(name), "severity": s, "metrics": metrics}
            )
    return RobustnessResult(clean, conditions, seed=0, images=3)


def test_summary_means_and_relative_to_clean(tmp_path: Path) -> None:
    summary = summarize(_result())
    assert summary["per_corruption"]["fog"]["amask/mAP"] == pytest.approx(0.5 - 0.1 * 2 / 3)
    assert summary["mean_depth"]["bbox/mAP"] == pytest.approx(0.5 - 0.2 * 2 / 3)
    all_mean = (2 * 0.5 - 0.1 * 2 / 3 - 0.2 * 2 / 3) / 2
    assert summary["relative_all"]["occ/accuracy"] == pytest.approx(all_mean / 0.5)
    paths = write_robustness(_result(), tmp_path)
    back = RobustnessResult.from_dict(json.loads(paths["json"].read_text()))
    assert back.value("depth_noise", 3, "amask/mAP") == pytest.approx(0.3)
    assert "| **mean rgb** |" in "\n".join(markdown_tables(back))
    zero = _result()
    zero.clean["bbox/mAP"] = 0.0
    assert math.isnan(summarize(zero)["relative_all"]["bbox/mAP"])


def test_report_robustness_table_reads_each_runs_result(tmp_path: Path) -> None:
    from training.diagnostics.robustness import plot_heatmap, robustness_section

    for i in range(2):
        write_robustness(_result(), tmp_path / f"run{i}" / "robustness")
    runs = [SimpleNamespace(path=tmp_path / "run0"), SimpleNamespace(path=tmp_path / "run1")]
    groups = [
        SimpleNamespace(label="ew", runs=runs),
        SimpleNamespace(label="single-task", runs=[SimpleNamespace(path=tmp_path / "none")]),
    ]
    md, data = robustness_section(groups)
    assert data["ew"]["runs"] == 2 and data["ew"]["clean"]["amask/mAP"] == pytest.approx(0.5)
    assert "| single-task | 0 |" in md and "| ew | 2 |" in md
    assert plot_heatmap(_result(), tmp_path / "h.png").stat().st_size > 1000
