"""Deployment end to end on the demo's model (the synthetic config, trained one step on 64x64 scenes):
export float32 and INT8 through the CLI, the INT8 model in the Detector, the offline evaluation and
the corruption sweep of `python -m training evaluate` for a checkpoint and for the INT8 ONNX model.

(A one-step model detects noise, so accuracy parity is not asserted here: that is measured on a
trained model by `python -m training bench quantization`, docs/benchmarks.md.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mtl_grasp.data.synth import generate_dataset
from mtl_grasp.runtime import Detector
from training.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("deploy")
    data = root / "data"
    generate_dataset(data, scenes=6, image_size=64, seed=0, split_fractions={"train": 0.5, "val": 0.5})
    run = root / "run"
    overrides = [f"data.root={data}", f"run_dir={run}", "model.image_size=64", "train.steps=1",
                 "train.batch_size=2", "train.eval_every=0", "train.eval_at_start=false",
                 "train.checkpoint_every=0", "train.progress=false", "schedule.warmup_steps=1"]  # fmt: skip
    assert cli_main(["train", "--config", str(REPO / "config/train/synthetic.yaml"), *overrides]) == 0
    fp32, int8 = root / "model.onnx", root / "model_int8.onnx"
    # one export writes both (the float parity check is tests/test_export.py's subject)
    args = ["export", "--checkpoint", str(run), "--out", str(int8), "--quantize", "int8", "--calibration",
            str(data), "--calibration-frames", "2", "--budget", "fastest", "--keep-float", str(fp32),
            "--no-verify"]  # fmt: skip
    assert cli_main(args) == 0
    return {"data": data, "run": run, "fp32": fp32, "int8": int8, "root": root}


def test_int8_model_is_quantised_and_runs_in_the_detector(demo) -> None:
    import onnx

    ops = {n.op_type for n in onnx.load(str(demo["int8"]), load_external_data=False).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "ConvTranspose" not in ops
    assert demo["int8"].stat().st_size < 0.5 * demo["fp32"].stat().st_size  # int8 weights
    det = Detector(demo["int8"], providers="cpu", score_threshold=0.0)
    assert det.quantization == "int8-qdq-per-channel"
    fp32 = Detector(demo["fp32"], providers="cpu", score_threshold=0.0)
    assert fp32.quantization == "none" and det.metadata == fp32.metadata  # contract metadata carried over
    rgb = np.random.default_rng(0).integers(0, 255, (48, 80, 3), dtype=np.uint8)
    depth = np.full((48, 80), 0.7, np.float32)
    out = det(rgb, depth)
    assert out.visible_masks.shape[1:] == (48, 80) and len(out) <= 30  # the 'fastest' budget: 30 detections


def test_int8_model_evaluates_with_the_same_command(demo, tmp_path: Path) -> None:
    results = {}
    for kind in ("fp32", "int8"):
        out = tmp_path / f"{kind}.json"
        assert (
            cli_main(["evaluate", "--onnx", str(demo[kind]), "--data", str(demo["data"]), "--out", str(out)])
            == 0
        )
        results[kind] = json.loads(out.read_text())
    assert set(results["int8"]) == set(results["fp32"])
    for value in results["int8"].values():
        assert np.isfinite(value)


def _sweep(args: list[str], out: Path, corruptions: str, severities: str) -> dict:
    assert cli_main([*args, "--corruptions", corruptions, "--severities", severities,
                     "--robustness-dir", str(out)]) == 0  # fmt: skip
    return json.loads((out / "robustness.json").read_text())


def test_corruption_sweep_on_int8_model_and_checkpoint(demo, tmp_path: Path) -> None:
    onnx_args = ["evaluate", "--onnx", str(demo["int8"]), "--data", str(demo["data"])]
    first = _sweep(onnx_args, tmp_path / "a", "gaussian_noise,depth_missing_blobs", "1,5")
    assert [(c["corruption"], c["severity"]) for c in first["conditions"]] == [
        ("gaussian_noise", 1), ("gaussian_noise", 5), ("depth_missing_blobs", 1), ("depth_missing_blobs", 5),
    ]  # fmt: skip
    assert set(first["summary"]) >= {"per_corruption", "mean_rgb", "mean_depth", "relative_all"}
    for name in ("robustness.csv", "robustness.md", "robustness.png"):
        assert (tmp_path / "a" / name).stat().st_size > 0
    again = _sweep(onnx_args, tmp_path / "b", "gaussian_noise,depth_missing_blobs", "1,5")
    assert again == first  # deterministic per seed
    ckpt_args = ["evaluate", "--checkpoint", str(demo["run"]), "--data", str(demo["data"])]
    ckpt = _sweep(ckpt_args, tmp_path / "c", "depth_scale", "2")
    assert [c["corruption"] for c in ckpt["conditions"]] == ["depth_scale"]
    assert (demo["run"] / "robustness").exists() is False  # --robustness-dir was given


def test_corruption_arguments_are_checked(demo, capsys: pytest.CaptureFixture) -> None:
    base = ["evaluate", "--onnx", str(demo["fp32"]), "--data", str(demo["data"])]
    assert cli_main([*base, "--corruptions", "gausian_noise"]) == 2
    assert "unknown corruption 'gausian_noise'; did you mean 'gaussian_noise'?" in capsys.readouterr().err
    assert cli_main([*base, "--corruptions", "fog", "--severities", "0,3"]) == 2
    assert "severity 0 is outside 1..5" in capsys.readouterr().err
    args = [
        "export",
        "--checkpoint",
        str(demo["run"]),
        "--out",
        str(demo["root"] / "x.onnx"),
        "--quantize",
        "int8",
    ]
    assert cli_main(args) == 2
    assert "--calibration: required with --quantize int8" in capsys.readouterr().err
    assert cli_main(["export", "--checkpoint", str(demo["run"]), "--out", "x.onnx", "--budget", "fats"]) == 2
    assert "did you mean 'fast'?" in capsys.readouterr().err


def test_quantised_parity_check_refuses_a_model_without_confident_detections(demo) -> None:
    from training.export import ParityError
    from training.export.quantize import camera_frames
    from training.export.quantized_parity import QuantizedTolerances, check_quantized_parity

    frames = camera_frames(demo["data"], max_frames=2)
    with pytest.raises(ParityError, match="nothing to compare"):
        check_quantized_parity(demo["fp32"], demo["int8"], frames, QuantizedTolerances(min_score=0.999))
    # the float model against itself passes at any score (identical detections)
    report = check_quantized_parity(demo["fp32"], demo["fp32"], frames, QuantizedTolerances(min_score=0.0))
    assert report.matched == report.float_detections > 0 and report.extra == 0


def test_int8_model_runs_through_the_ros_node(demo, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("rclpy")
    pytest.importorskip("mtl_grasp_msgs.msg")
    import shutil

    from mtl_grasp.data.reader import discover_views, select_split
    from mtl_grasp.ros.demo import replay_and_detect

    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    stream = demo["root"] / "stream"
    for scene in sorted({v.scene for v in select_split(discover_views(demo["data"]), "val")})[:1]:
        shutil.copytree(demo["data"] / scene, stream / scene, dirs_exist_ok=True)
    frames = replay_and_detect(stream, demo["int8"], max_frames=1, providers=("cpu",), score_threshold=0.0)
    assert len(frames) == 1 and (frames[0].height, frames[0].width) == (64, 64)
    assert len(frames[0].instances) <= 30  # the INT8 model's 'fastest' budget, through the node
