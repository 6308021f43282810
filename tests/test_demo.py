"""`python -m training demo` (what `make demo` runs) end to end, shortened: every stage must work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_demo_runs_every_stage_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    proc = subprocess.run(
        [sys.executable, "-m", "training", "demo", "--out", str(out), "--steps", "2", "--frames", "2",
         "data.synth.scenes=12", "train.eval_every=2", "train.checkpoint_every=2"],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for stage in ("1/5 train", "2/5 evaluate", "3/5 export", "4/5 evaluate the ONNX", "5/5 ROS 2", "summary"):
        assert stage in proc.stdout, f"stage {stage!r} missing from the demo output"
    assert "frame(s) through the node" in proc.stdout
    torch_metrics = json.loads((out / "metrics_torch.json").read_text())
    onnx_metrics = json.loads((out / "metrics_onnx.json").read_text())
    for key in ("bbox/mAP", "vmask/mAP", "amask/mAP"):
        assert 0.0 <= torch_metrics[key] <= 1.0
        # the exported model evaluates like the checkpoint (same data, same pasting)
        assert abs(torch_metrics[key] - onnx_metrics[key]) <= 0.005, key
    assert (out / "model.onnx").stat().st_size > 1_000_000
