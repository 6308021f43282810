"""ONNX export of the real AmodalRCNN (random init, tiny config): parity at a size different from the
export size, metadata round trip, the runtime on the exported file, checkpoints and the CLI.

The model is exported once per session at 64 x 64 (a few seconds on one core)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from mtl_grasp import contract
from mtl_grasp.runtime import Detector, paste_masks, read_metadata
from training.cli import main as cli_main
from training.export import (
    ParityError,
    check_parity,
    config_hash,
    export_model,
    metadata_from_config,
    model_from_checkpoint,
)
from training.export.onnx_export import onnx_input_shape_is_dynamic
from training.export.parity import frame_tensors, run_torch, synthetic_frame
from training.model.amodal_rcnn import AmodalRCNN, RandomInitWarning
from training.model.config import ModelConfig

EXPORT_SIZE = 64
OTHER_SIZE = (48, 96)  # not the export size, not square


def tiny_config() -> dict:
    model = ModelConfig(
        image_size=EXPORT_SIZE,
        fpn_channels=32,
        head_channels=32,
        box_fc_dim=64,
        rpn_pre_nms_top_n_test=200,
        rpn_post_nms_top_n_test=100,
    )
    return {"model": model.to_dict(), "seed": 0, "method": {"name": "ew"}}


def tiny_model(config: dict) -> AmodalRCNN:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomInitWarning)
        return AmodalRCNN(ModelConfig.from_dict(config["model"])).eval()


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory):
    config = tiny_config()
    model = tiny_model(config)
    path = tmp_path_factory.mktemp("export") / "model.onnx"
    result = export_model(
        model,
        path,
        EXPORT_SIZE,
        metadata_from_config(config),
        parity_sizes=[(EXPORT_SIZE, EXPORT_SIZE), OTHER_SIZE],
    )
    return model, config, result


def test_export_passes_parity_at_another_size(exported) -> None:
    _, _, result = exported
    assert [(r.height, r.width) for r in result.parity] == [(EXPORT_SIZE, EXPORT_SIZE), OTHER_SIZE]
    for report in result.parity:
        assert report.failures == []
        # a random-init network still proposes plenty of boxes: the comparison is not vacuous
        assert report.torch_detections == report.onnx_detections > 5
        assert report.max_box_diff_px < 0.05 and report.max_score_diff < 1e-3
        assert report.min_visible_iou >= 0.99 and report.min_amodal_iou >= 0.99


def test_exported_graph_is_valid_and_dynamic(exported) -> None:
    _, _, result = exported
    proto = onnx.load(str(result.path))
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == list(contract.INPUT_NAMES)
    assert [o.name for o in proto.graph.output] == list(contract.OUTPUT_NAMES)
    assert onnx_input_shape_is_dynamic(result.path)


def test_metadata_round_trip(exported) -> None:
    _, config, result = exported
    meta = read_metadata(result.path)
    assert meta == result.metadata
    assert meta.class_names == ("object",) and meta.train_image_size == EXPORT_SIZE
    assert meta.config_hash == config_hash(config) and len(meta.config_hash) == 64


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # every box moves: detections and NMS change
        (lambda m: m.roi_heads.box_predictor.bbox_pred.bias.add_(2.0), "does not match PyTorch: 48x96"),
        # only the amodal masks change (all probabilities -> 1): boxes agree, masks do not
        (
            lambda m: m.roi_heads.task_heads["amodal_mask"].predictor.mask_fcn_logits.bias.add_(50.0),
            "amodal_masks IoU",
        ),
        # only the occlusion decisions flip
        (
            lambda m: m.roi_heads.task_heads["occlusion"].classifier.bias.add_(torch.tensor([50.0, -50.0])),
            "occlusion decisions differ",
        ),
    ],
)
def test_parity_check_catches_a_changed_model(exported, change, message: str) -> None:
    _, config, result = exported
    changed = tiny_model(config)
    with torch.no_grad():
        change(changed)
    with pytest.raises(ParityError, match=message):
        check_parity(changed, result.path, [OTHER_SIZE])


def test_runtime_matches_torch_on_exported_model(exported) -> None:
    """Detector (pre -> onnxruntime -> paste) vs torch forward_export + the same paste, at 80 x 72."""
    model, _, result = exported
    det = Detector(result.path, providers="cpu", score_threshold=0.0, warmup=False)
    rgb, depth = synthetic_frame(80, 72, seed=7)
    depth_mm = np.round(depth * 1000).astype(np.uint16)  # the camera's 16-bit millimetres
    out = det(rgb, depth_mm)
    ref = run_torch(model, *frame_tensors(rgb, depth_mm.astype(np.float32) / 1000))
    assert len(out) == len(ref["scores"]) > 5
    np.testing.assert_allclose(out.scores, ref["scores"], atol=1e-4)
    np.testing.assert_allclose(out.boxes, ref["boxes"], atol=0.05)
    torch_amodal = paste_masks(ref["boxes"], ref["amodal_masks"], 80, 72)
    inter = (torch_amodal & out.amodal_masks).sum()
    assert inter / max(1, (torch_amodal | out.amodal_masks).sum()) >= 0.99
    np.testing.assert_array_equal(out.occlusion >= 0.5, ref["occlusion"] >= 0.5)


def test_runtime_with_inference_resize_on_exported_model(exported) -> None:
    _, _, result = exported
    det = Detector(result.path, providers="cpu", score_threshold=0.0, inference_size=64, warmup=(96, 128))
    out = det(*synthetic_frame(96, 128, seed=3))
    assert out.amodal_masks.shape[1:] == (96, 128)
    # boxes come back in camera pixels: inside the 128 x 96 frame, and not all within the 64 x 48 input
    assert out.boxes[:, [0, 2]].max() <= 128 + 1e-3 and out.boxes[:, [1, 3]].max() <= 96 + 1e-3
    assert out.boxes[:, 2].max() > 64


def test_checkpoint_cli_export(exported, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model, config, _ = exported
    # like the trainer's: non-tensor state (numpy RNG) that the safe loader refuses, in a run directory
    state = {
        "model": model.state_dict(),
        "config": config,
        "step": 3,
        "rng": {"numpy": np.random.get_state()},
    }
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    ckpt.parent.mkdir(parents=True)
    torch.save(state, ckpt)
    loaded, loaded_config = model_from_checkpoint(tmp_path / "run")
    assert loaded_config == config and not loaded.training
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    out = tmp_path / "cli.onnx"
    rc = cli_main(["export", "--checkpoint", str(ckpt), "--out", str(out), "--opset", "17"])
    assert rc == 0, capsys.readouterr().err
    assert read_metadata(out).config_hash == config_hash(config)
    assert "parity" in capsys.readouterr().out


def test_bad_checkpoints(exported, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model, config, _ = exported
    with pytest.raises(ValueError, match="checkpoint: no such file"):
        model_from_checkpoint(tmp_path / "missing.pt")
    no_config = tmp_path / "no_config.pt"
    torch.save({"model": model.state_dict()}, no_config)
    with pytest.raises(ValueError, match="must be a dict with 'model' and 'config'"):
        model_from_checkpoint(no_config)
    wrong = tmp_path / "wrong.pt"
    other = {"model": {**config["model"], "fpn_channels": 48}}
    torch.save({"model": model.state_dict(), "config": other}, wrong)
    with pytest.raises(ValueError, match="state_dict does not fit"):
        model_from_checkpoint(wrong)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        model_from_checkpoint(garbage)
    # the CLI turns these into a one-line error and exit status 2, and writes nothing
    assert cli_main(["export", "--checkpoint", str(no_config), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "error: checkpoint" in capsys.readouterr().err and not (tmp_path / "x.onnx").exists()


def test_gather_merge_equals_torchvision_merge() -> None:
    """The export-time replacement of torchvision's level merge gives the same tensor."""
    import torchvision.ops.poolers as tv_poolers

    from training.export.onnx_export import _merge_levels_by_gather

    torch.manual_seed(0)
    levels = torch.randint(0, 4, (37,))
    results = [torch.randn(int((levels == k).sum()), 8, 7, 7) for k in range(4)]
    expected = tv_poolers._onnx_merge_levels(levels, results)
    torch.testing.assert_close(_merge_levels_by_gather(levels, results), expected, rtol=0, atol=0)


def test_config_hash_is_canonical() -> None:
    a = {"model": {"x": 1, "y": [1, 2]}, "seed": 0}
    b = {"seed": 0, "model": {"y": [1, 2], "x": 1}}
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash({**a, "seed": 1})


def test_class_names_from_config() -> None:
    config = tiny_config()
    config["model"]["num_classes"] = 2
    assert metadata_from_config(config).class_names == ("class_1", "class_2")
    config["data"] = {"class_names": ["box", "bottle"]}
    assert metadata_from_config(config).class_names == ("box", "bottle")
    config["data"] = {"class_names": ["box"]}
    with pytest.raises(ValueError, match="class_names has 1 entries"):
        metadata_from_config(config)


def test_export_argument_errors(exported, tmp_path: Path) -> None:
    model, config, _ = exported
    meta = metadata_from_config(config)
    with pytest.raises(ValueError, match="opset: expected an int >= 11"):
        export_model(model, tmp_path / "a.onnx", 64, meta, opset=9)
    with pytest.raises(ValueError, match="image_size"):
        export_model(model, tmp_path / "a.onnx", 16, meta)
    with pytest.raises(ValueError, match="model: expected an AmodalRCNN"):
        export_model(torch.nn.Linear(2, 2), tmp_path / "a.onnx", 64, meta)
    bad = contract.ModelMetadata(contract_version="0")
    with pytest.raises(ValueError, match="contract version"):
        export_model(model, tmp_path / "a.onnx", 64, bad)
    assert not list(tmp_path.glob("*.onnx"))


def _torch_predictions(model: AmodalRCNN, root: Path) -> dict[int, dict[str, np.ndarray]]:
    """The training-side path: eager model -> 28x28 probabilities -> the shared paste_masks."""
    from mtl_grasp.data.reader import discover_views, load_view

    predictions = {}
    for ref in discover_views(root):
        sample = load_view(ref)
        with torch.no_grad():
            out = model(*frame_tensors(sample.rgb, sample.depth))[0]
        out = {k: v.numpy() for k, v in out.items()}
        predictions[ref.image_id] = {
            "boxes": out["boxes"],
            "scores": out["scores"],
            "labels": out["labels"],
            "visible_masks": paste_masks(out["boxes"], out["visible_masks"], sample.height, sample.width),
            "amodal_masks": paste_masks(out["boxes"], out["amodal_masks"], sample.height, sample.width),
            "occlusion": out["occlusion"],
        }
    return predictions


def test_offline_onnx_evaluation_matches_checkpoint(exported, tmp_path: Path) -> None:
    from mtl_grasp.data.coco import build_coco
    from mtl_grasp.data.synth import generate_dataset
    from mtl_grasp.evaluation import evaluate
    from mtl_grasp.runtime.evaluate import evaluate_model, main, predict_dataset

    model, _, result = exported
    generate_dataset(tmp_path / "data", scenes=3, image_size=EXPORT_SIZE, seed=0, split_fractions=None)
    gt = build_coco(tmp_path / "data")
    torch_preds = _torch_predictions(model, tmp_path / "data")
    detector = Detector(result.path, providers="cpu", score_threshold=0.0, warmup=False)
    onnx_preds = predict_dataset(detector, tmp_path / "data")
    # A random-init network scores ~0 mAP, so compare the predictions themselves, not only the metrics.
    assert sorted(onnx_preds) == sorted(torch_preds) == [im["id"] for im in gt["images"]]
    for image_id, ref in torch_preds.items():
        got = onnx_preds[image_id]
        assert len(got["scores"]) == len(ref["scores"]) > 0
        np.testing.assert_allclose(got["boxes"], ref["boxes"], atol=0.05)
        for key in ("visible_masks", "amodal_masks"):
            inter = (got[key] & ref[key]).sum()
            assert inter / max(1, (got[key] | ref[key]).sum()) >= 0.99
    torch_metrics = evaluate(gt, torch_preds)
    onnx_metrics = evaluate_model(result.path, tmp_path / "data", gt=gt, providers="cpu")
    assert set(onnx_metrics) == set(torch_metrics) and "amask/mAP" in onnx_metrics
    for key, value in torch_metrics.items():
        assert abs(onnx_metrics[key] - value) <= 0.005, (key, onnx_metrics[key], value)
    out = tmp_path / "metrics.json"
    assert (
        main(
            [
                "--model",
                str(result.path),
                "--data",
                str(tmp_path / "data"),
                "--providers",
                "cpu",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads(out.read_text())["bbox/mAP"] == pytest.approx(onnx_metrics["bbox/mAP"])


def _outputs(mask_value: float) -> dict:
    import numpy as np

    return {
        contract.OUTPUT_BOXES: np.array([[4.0, 4.0, 28.0, 28.0]], np.float32),
        contract.OUTPUT_SCORES: np.array([0.9], np.float32),
        contract.OUTPUT_LABELS: np.array([1], np.int64),
        contract.OUTPUT_VISIBLE_MASKS: np.full((1, 28, 28), mask_value, np.float32),
        contract.OUTPUT_AMODAL_MASKS: np.full((1, 28, 28), 0.9, np.float32),
        contract.OUTPUT_OCCLUSION: np.array([0.1], np.float32),
    }


def test_parity_leaves_undecided_mask_pixels_out_but_checks_probabilities() -> None:
    from training.export.parity import Tolerances, compare

    # a barely trained head: probabilities a hair above 0.5 in torch, a hair below in ONNX
    report = compare(_outputs(0.5 + 1e-5), _outputs(0.5 - 1e-5), 32, 32, Tolerances())
    assert report.failures == [] and report.min_visible_iou == 1.0
    assert abs(report.max_mask_prob_diff - 2e-5) < 1e-6
    # a real difference fails on the probabilities and on the decided pixels
    report = compare(_outputs(0.8), _outputs(0.2), 32, 32, Tolerances())
    assert any("visible_masks probabilities differ by 0.6" in f for f in report.failures)
    assert any("visible_masks IoU 0.0000" in f for f in report.failures)
