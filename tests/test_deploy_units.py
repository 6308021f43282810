"""Small parts of the deployment path: the one decoding, session options, test-time budgets, the
quantised parity thresholds, and the function-size rule of the deployment modules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mtl_grasp import contract
from mtl_grasp.runtime.detections import Detections
from mtl_grasp.runtime.postprocess import decode
from mtl_grasp.runtime.session import SessionConfig

REPO = Path(__file__).resolve().parents[1]


def _outputs(scores: list[float], labels: list[int] | None = None) -> dict[str, np.ndarray]:
    n = len(scores)
    boxes = np.array([[2.0 + i, 2.0, 20.0 + i, 18.0] for i in range(n)], np.float32).reshape(n, 4)
    return {
        contract.OUTPUT_BOXES: boxes,
        contract.OUTPUT_SCORES: np.array(scores, np.float32),
        contract.OUTPUT_LABELS: np.array(labels or [1] * n, np.int64),
        contract.OUTPUT_VISIBLE_MASKS: np.full((n, 28, 28), 0.9, np.float32),
        contract.OUTPUT_AMODAL_MASKS: np.full((n, 28, 28), 0.9, np.float32),
        contract.OUTPUT_OCCLUSION: np.linspace(0, 1, n, dtype=np.float32),
    }


def test_decode_filters_sorts_scales_and_pastes() -> None:
    det = decode(_outputs([0.3, 0.9, 0.6]), 40, 60, ["object"], scale_x=2.0, scale_y=0.5,
                 score_threshold=0.5, max_instances=5)  # fmt: skip
    np.testing.assert_allclose(det.scores, [0.9, 0.6])
    np.testing.assert_allclose(det.boxes[0], [3.0 / 2, 2.0 / 0.5, 21.0 / 2, 18.0 / 0.5])
    assert det.visible_masks.shape == (2, 40, 60) and det.visible_masks[0, 10, 5]
    assert decode(_outputs([0.3, 0.9, 0.6]), 40, 60, None, max_instances=1).scores.tolist() == [
        pytest.approx(0.9)
    ]
    with pytest.raises(RuntimeError, match=r"labels 1..2 outside 1..1"):
        decode(_outputs([0.9, 0.8], [1, 2]), 40, 60, ["object"])
    bad = _outputs([0.9])
    bad[contract.OUTPUT_OCCLUSION] = np.zeros(2, np.float32)
    with pytest.raises(RuntimeError, match="disagree on the number of detections"):
        decode(bad, 40, 60, ["object"])


def test_session_config_values_and_errors() -> None:
    opts = SessionConfig.from_value(
        {"intra_op_threads": 2, "memory_arena": False, "graph_optimization": "basic"}
    )
    ort_opts = opts.to_ort()
    assert ort_opts.intra_op_num_threads == 2 and ort_opts.enable_cpu_mem_arena is False
    with pytest.raises(ValueError, match="unknown option 'intra_threads'; did you mean 'intra_op_threads'"):
        SessionConfig.from_value({"intra_threads": 2})
    with pytest.raises(
        ValueError, match="graph_optimization: expected one of .* got 'al'; did you mean 'all'"
    ):
        SessionConfig(graph_optimization="al")
    with pytest.raises(ValueError, match="intra_op_threads: expected None or an int >= 1, got 0"):
        SessionConfig(intra_op_threads=0)


def test_budgets_parse_and_apply() -> None:
    import warnings

    from training.export.budget import apply_budget, named_budgets, parse_budget
    from training.model import AmodalRCNN, ModelConfig

    assert set(named_budgets()) >= {"paper", "fast", "fastest"}
    assert parse_budget("paper").proposals == ModelConfig().rpn_post_nms_top_n_test
    budget = parse_budget("proposals=7,detections=3,min_score=0.2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AmodalRCNN(
            ModelConfig(image_size=64, fpn_channels=16, head_channels=16, box_fc_dim=32)
        ).eval()
    apply_budget(model, budget)
    assert model.rpn.post_nms_top_n() == 7 and model.roi_heads.detections_per_img == 3
    assert model.config.score_thresh == 0.2
    import torch

    out = model(torch.rand(1, 3, 64, 64), torch.full((1, 1, 64, 64), 0.7))[0]
    assert len(out["scores"]) <= 3
    with pytest.raises(ValueError, match="unknown field 'proposal'; did you mean 'proposals'"):
        parse_budget("proposal=3")
    with pytest.raises(ValueError, match="budget.detections: expected a positive int, got 0"):
        parse_budget("detections=0")


def _dets(boxes, scores, occ, fill: bool = True) -> Detections:
    n = len(scores)
    masks = np.zeros((n, 32, 32), bool)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        masks[i, int(y1) : int(y2), int(x1) : int(x2)] = fill
    box_array, score_array = np.array(boxes, np.float32).reshape(n, 4), np.array(scores, np.float32)
    return Detections(box_array, score_array, np.ones(n, np.int64), ["object"], masks, masks.copy(),
                      np.array(occ, np.float32))  # fmt: skip


def test_quantised_parity_thresholds() -> None:
    from training.export.quantized_parity import QuantizedReport, QuantizedTolerances, compare_frame, judge

    tol = QuantizedTolerances()
    ref = _dets([[0, 0, 10, 10], [15, 15, 30, 30]], [0.9, 0.8], [0.9, 0.1])
    same = judge(compare_frame(ref, ref, tol, QuantizedReport()) or QuantizedReport(), tol)
    report = QuantizedReport()
    compare_frame(ref, _dets([[0, 0, 10, 10], [15, 15, 30, 30]], [0.88, 0.78], [0.8, 0.2]), tol, report)
    assert judge(report, tol).failures == [] and report.matched == 2
    # a lost detection, an invented one and a flipped occlusion decision are all reported
    bad = QuantizedReport()
    compare_frame(ref, _dets([[0, 0, 10, 10], [2, 20, 12, 30]], [0.9, 0.9], [0.1, 0.5]), tol, bad)
    failures = " ".join(judge(bad, tol).failures)
    assert "matched float detections 0.500" in failures and "extra INT8 detections 0.500" in failures
    assert "occlusion agreement 0.000" in failures
    assert same.failures[0].startswith("nothing to compare")  # the empty report


def test_evaluation_has_no_import_cycle() -> None:
    import subprocess
    import sys

    for module in ("mtl_grasp.evaluation.occlusion", "mtl_grasp.evaluation.coco_metrics"):
        proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    source = (REPO / "mtl_grasp/evaluation/occlusion.py").read_text()
    assert "coco_metrics" not in source and "import _rle" not in source  # no local import of a private


def test_tensorrt_int8_and_fp16_engines_are_configurable(tmp_path: Path) -> None:
    from mtl_grasp.runtime.providers import CPU, CUDA, TENSORRT, resolve_providers

    choice = resolve_providers("auto", [TENSORRT, CUDA, CPU], fp16=True, trt_cache_dir=tmp_path, int8=True)
    name, options = choice.providers[0]
    assert name == TENSORRT and options["trt_int8_enable"] is True and options["trt_fp16_enable"] is True
    assert choice.names == [TENSORRT, CUDA, CPU]
    _, options = resolve_providers("tensorrt", [TENSORRT, CPU], trt_cache_dir=tmp_path).providers[0]
    assert options["trt_int8_enable"] is False  # float models: no INT8 engines unless asked
