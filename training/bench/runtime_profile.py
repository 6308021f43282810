"""Where the runtime's time goes: onnxruntime's own profiler, summed per model stage and per op type.

Stages come from the ONNX node names, which the TorchScript exporter derives from the module path
(`/encoder/rgb/layer1/...`, `/roi_heads/box_head.0/...`); nodes that onnxruntime fused or inserted
(layout reorders) keep a name with the original prefix or are listed as "other (reorders, glue)".
NMS is its own stage by op type (`NonMaxSuppression`), wherever it sits (RPN or final).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# (stage, regex on the node name), first match wins; see module docstring
STAGES: tuple[tuple[str, str], ...] = (
    ("backbones (2x ResNet18)", r"^/encoder/(rgb|depth|normalize)/|^/encoder/(Pad|Slice)"),
    ("fusion + FPN", r"^/encoder/"),
    ("RPN head (conv on P2..P6)", r"^/rpn/head/"),
    ("RPN proposals (anchors, decode, top-k)", r"^/rpn/"),
    ("ROI Align (box, 7x7 on proposals)", r"^/roi_heads/box_roi_pool/"),
    ("box head on proposals (4 conv + predictor)", r"^/roi_heads/box_(head|predictor)"),
    ("box code (7->14 deconv)", r"^/roi_heads/box_code/"),
    ("ROI Align (masks, 14x14 on detections)", r"^/roi_heads/mask_roi_pool/|^/roi_heads/.*roi_pool"),
    ("visible mask head on detections", r"^/roi_heads/visible_mask/"),
    ("amodal mask head on detections", r"^/roi_heads/amodal_mask/"),
    ("occlusion head on detections", r"^/roi_heads/occlusion/"),
    ("box decoding + score filter (ROI heads)", r"^/roi_heads/"),
)
NMS_STAGE = "NMS (RPN per level + final)"
OTHER_STAGE = "other (reorders, shape glue)"


@dataclass
class Profile:
    """Kernel time per stage and per op type, in ms per run (mean over the profiled runs)."""

    stages: dict[str, float]
    op_types: dict[str, float]
    runs: int

    @property
    def total_ms(self) -> float:
        return sum(self.stages.values())


def stage_of(node_name: str, op_type: str) -> str:
    """The stage a profiled node belongs to (see `STAGES`)."""
    if op_type == "NonMaxSuppression":
        return NMS_STAGE
    name = node_name.removesuffix("_kernel_time")
    for stage, pattern in STAGES:
        if re.search(pattern, name):
            return stage
    return OTHER_STAGE


def summarize(events: list[dict], runs: int) -> Profile:
    """Sum the kernel events of an onnxruntime profile (JSON list) into a `Profile`."""
    stages: dict[str, float] = defaultdict(float)
    op_types: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        op_type = str(event.get("args", {}).get("op_name", "?"))
        ms = float(event.get("dur", 0)) / 1e3 / runs
        stages[stage_of(str(event["name"]), op_type)] += ms
        op_types[op_type] += ms
    return Profile(dict(stages), dict(op_types), runs)


def profile_model(
    model_path: str | os.PathLike,
    rgb: np.ndarray,
    depth: np.ndarray,
    runs: int = 2,
    session: object = None,
) -> Profile:
    """Profile `runs` calls of the network (after one untimed call) on one prepared frame.

    `rgb`/`depth` are the contract inputs ([1,3,H,W] / [1,1,H,W] float32); `session` a
    `mtl_grasp.runtime.session.SessionConfig` (or mapping / None).
    """
    import onnxruntime as ort

    from mtl_grasp.contract import INPUT_DEPTH, INPUT_RGB
    from mtl_grasp.runtime.session import SessionConfig

    feed = {INPUT_RGB: rgb, INPUT_DEPTH: depth}
    with tempfile.TemporaryDirectory() as tmp:
        options = SessionConfig.from_value(session).to_ort()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        sess = ort.InferenceSession(str(model_path), options, ["CPUExecutionProvider"])
        for _ in range(runs + 1):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
    # the first run (allocations, arena growth) is a warm-up: keep the node events after it
    first = next(e for e in events if e.get("name") == "model_run")
    events = [e for e in events if e.get("ts", 0) >= first["ts"] + first["dur"]]
    return summarize(events, runs)


def format_profile(profile: Profile, title: str, top_ops: int = 8) -> list[str]:
    """Markdown table lines: stage, ms per run, share of the kernel time; then the top op types."""
    total = profile.total_ms or 1.0
    lines = [f"{title}: onnxruntime kernel time per frame (mean of {profile.runs} runs)", "",
             "| stage | ms | share |", "|---|---|---|"]  # fmt: skip
    for stage, ms in sorted(profile.stages.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {stage} | {ms:.1f} | {100 * ms / total:.1f} % |")
    lines.append(f"| **total** | **{profile.total_ms:.1f}** | 100 % |")
    ops = sorted(profile.op_types.items(), key=lambda kv: -kv[1])[:top_ops]
    lines.append("")
    lines.append(
        "top op types: " + ", ".join(f"{op} {ms:.0f} ms ({100 * ms / total:.0f} %)" for op, ms in ops)
    )
    return lines
