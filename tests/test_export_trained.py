"""Across the parts (slow): train a tiny model briefly, export it, and check that the offline ONNX
evaluation (mtl_grasp.runtime.evaluate, torch-free) agrees with the checkpoint's evaluation
(`python -m training evaluate --checkpoint`) within 0.005 mAP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtl_grasp.runtime.evaluate import evaluate_model
from training.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_onnx_evaluation_matches_trained_checkpoint(tmp_path: Path) -> None:
    data, run = tmp_path / "data", tmp_path / "run"
    overrides = [
        f"run_dir={run}",
        f"data.root={data}",
        "data.synth.scenes=10",
        "data.synth.image_size=64",
        "model.image_size=64",
        "train.steps=80",
        "train.eval_every=0",
        "train.eval_at_start=false",
        "train.checkpoint_every=0",
        "train.progress=false",
        "train.threads=1",
    ]
    assert cli_main(["train", "--config", str(REPO / "config/train/synthetic.yaml"), *overrides]) == 0
    ckpt = run / "checkpoints" / "last.pt"
    onnx_path = tmp_path / "model.onnx"
    assert cli_main(["export", "--checkpoint", str(ckpt), "--out", str(onnx_path)]) == 0

    torch_json = tmp_path / "torch.json"
    args = ["--data", str(data), "--split", "train", "--out", str(torch_json), "--device", "cpu"]
    assert cli_main(["evaluate", "--checkpoint", str(ckpt), *args]) == 0
    torch_metrics = json.loads(torch_json.read_text())
    # the training loader squashes frames to model.image_size: reproduce that geometry
    onnx_metrics = evaluate_model(
        onnx_path, data, split="train", providers="cpu", inference_size="train", keep_aspect=False
    )
    print({k: (round(torch_metrics[k], 4), round(onnx_metrics[k], 4)) for k in ("bbox/mAP", "amask/mAP")})
    assert torch_metrics["bbox/AP50"] > 0.0  # the model learned something: the comparison is not 0 vs 0
    for key in ("bbox/mAP", "vmask/mAP", "amask/mAP", "bbox/AP50", "amask/AP50"):
        assert abs(onnx_metrics[key] - torch_metrics[key]) <= 0.005, (
            key,
            onnx_metrics[key],
            torch_metrics[key],
        )
