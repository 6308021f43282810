"""`python -m training demo`: the whole product end to end on the embedded synthetic default.

physically simulated bin scenes in the MetaGraspNet format (pybullet, made by the train step) -> train
(EW, CPU-sized config) -> evaluate the checkpoint (COCO mAP/mAR) -> export ONNX (with its parity check)
-> evaluate the ONNX model with the torch-free runtime -> replay the validation scenes through the ROS 2
node over real DDS and print what it detected.

Each step runs the same command a user would type (printed before it runs), in a subprocess, so the
demo exercises exactly the public command line.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from training.rundir import RunDir

HELP = "run the whole pipeline on simulated bins: synth -> train -> evaluate -> export -> ROS 2 node"
DESCRIPTION = __doc__ or HELP

METRIC_KEYS = ("bbox/mAP", "vmask/mAP", "amask/mAP", "bbox/mAR", "vmask/mAR", "amask/mAR", "occ/accuracy")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    parser.add_argument("--config", default="config/train/synthetic.yaml", help="training config")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the config's)")
    parser.add_argument("--frames", type=int, default=4, help="validation frames replayed through the node")
    parser.add_argument(
        "--score-threshold", type=float, default=0.3,
        help="the node's score_threshold for the replay (default 0.3: the few-minute CPU model is not "
             "confident enough for the node's 0.5 default; a fully trained model is)",
    )  # fmt: skip
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="extra training config overrides")


def _run(cmd: list[str]) -> None:
    print(f"\n$ {shlex.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    # Idle OpenMP threads sleep instead of spinning: on a CPU shared with other jobs a spinning torch
    # thread pool ran 10x slower (measured on the 2-core machine, docs/benchmarks.md). A user's own
    # setting wins.
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    proc = subprocess.run(cmd, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"demo: step failed with exit code {proc.returncode}: {shlex.join(cmd)}")
    print(f"  ({time.perf_counter() - t0:.1f} s)", flush=True)


def _metrics_line(path: Path) -> str:
    metrics = json.loads(path.read_text())
    flat = metrics.get("metrics", metrics)
    return "  ".join(f"{k}={flat[k]:.3f}" for k in METRIC_KEYS if isinstance(flat.get(k), (int, float)))


def _untrained_line(eval_csv: Path) -> str:
    """The step-0 validation metrics the trainer logged (config train.eval_at_start), if any."""
    import csv

    if not eval_csv.is_file():
        return ""
    with eval_csv.open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("step") == "0"]
    if not rows:
        return ""
    return "  ".join(f"{k}={float(rows[0][k]):.3f}" for k in METRIC_KEYS if rows[0].get(k) not in (None, ""))


def _replay_through_node(data: Path, model: Path, stream: Path, frames: int, threshold: float) -> None:
    """Publish `frames` validation views as camera streams, run the node, print what it detected."""
    from mtl_grasp.data.reader import discover_views, select_split
    from mtl_grasp.ros.demo import format_frame, replay_and_detect

    # The replayer plays a whole folder; give it one holding (copies of) the validation scenes only.
    stream.mkdir(parents=True, exist_ok=True)
    for scene in sorted({v.scene for v in select_split(discover_views(data), "val")}):
        if not (stream / scene).exists():
            shutil.copytree(data / scene, stream / scene)
    t0 = time.perf_counter()
    detected = replay_and_detect(
        stream, model, max_frames=frames, providers=("cpu",), score_threshold=threshold
    )
    for k, frame in enumerate(detected):
        print(format_frame(frame, k))
    print(f"  ({len(detected)} frame(s) through the node in {time.perf_counter() - t0:.1f} s)")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data, run_dir = out / "data", out / "train"
    py = [sys.executable, "-m", "training"]
    overrides = [f"run_dir={run_dir}", f"data.root={data}", *args.overrides]
    if args.steps is not None:
        overrides.append(f"train.steps={args.steps}")

    print("== 1/5 train (simulates the bin scenes first; EW baseline) ==")
    _run([*py, "train", "--config", args.config, *overrides])
    ckpt = RunDir(run_dir).last_checkpoint

    print("\n== 2/5 evaluate the checkpoint on the validation split (COCO, pycocotools) ==")
    _run([*py, "evaluate", "--checkpoint", str(ckpt), "--data", str(data), "--split", "val",
          "--out", str(out / "metrics_torch.json")])

    print("\n== 3/5 export to ONNX (onnx.checker + ONNX Runtime vs PyTorch parity) ==")
    model = out / "model.onnx"
    _run([*py, "export", "--checkpoint", str(ckpt), "--out", str(model)])

    print("\n== 4/5 evaluate the ONNX model with the torch-free runtime ==")
    _run([*py, "evaluate", "--onnx", str(model), "--data", str(data), "--split", "val",
          "--out", str(out / "metrics_onnx.json")])

    print("\n== 5/5 ROS 2: replay validation frames -> perception node -> listener (real DDS) ==")
    _replay_through_node(data, model, out / "val_stream", args.frames, args.score_threshold)

    print("\n== summary ==")
    untrained = _untrained_line(RunDir(run_dir).eval_csv)
    if untrained:
        print(f"untrained (step 0): {untrained}")
    print(f"PyTorch checkpoint: {_metrics_line(out / 'metrics_torch.json')}")
    print(f"ONNX runtime:       {_metrics_line(out / 'metrics_onnx.json')}")
    print(f"run directory {run_dir} (metrics.csv, eval.csv, tb/, plots/), model {model}")
    return 0
