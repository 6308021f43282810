"""The corruption sweep: a predictor evaluated on clean frames and under every corruption x severity.

    result = corruption_sweep(predictor, frames, gt, ["gaussian_noise", "depth_noise"], [1, 3, 5])
    write_robustness(result, out_dir)        # robustness.json, robustness.csv, robustness.md

Each condition runs `mtl_grasp.evaluation.dataset.predict_frames` with the corruption as the frame
transform and scores with `mtl_grasp.evaluation.evaluate` (same GT, same thresholds as clean).
Summary per corruption = mean over its severities; "mean corrupted" = mean over all corruption x
severity conditions (per modality too); "relative" = mean corrupted / clean (the relative robustness
of Hendrycks & Dietterich's rPC, per metric; NaN when the clean value is 0).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtl_grasp.evaluation.coco_metrics import evaluate
from mtl_grasp.evaluation.corruptions import corrupt_frame, modality
from mtl_grasp.evaluation.dataset import Predictor, predict_frames

#: metrics the robustness tables report (all keys of `evaluate` are kept in the JSON)
SUMMARY_KEYS = ("bbox/mAP", "bbox/mAR", "vmask/mAP", "vmask/mAR", "amask/mAP", "amask/mAR", "occ/accuracy")


@dataclass
class RobustnessResult:
    """Clean metrics and one metrics dict per (corruption, severity)."""

    clean: dict[str, float]
    conditions: list[dict[str, Any]] = field(default_factory=list)  # corruption, modality, severity, metrics
    seed: int = 0
    images: int = 0

    def corruptions(self) -> list[str]:
        return list(dict.fromkeys(c["corruption"] for c in self.conditions))

    def severities(self) -> list[int]:
        return sorted({int(c["severity"]) for c in self.conditions})

    def value(self, corruption: str, severity: int, key: str) -> float:
        for c in self.conditions:
            if c["corruption"] == corruption and int(c["severity"]) == severity:
                return float(c["metrics"][key])
        return math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "images": self.images,
            "clean": self.clean,
            "conditions": self.conditions,
            "summary": summarize(self),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RobustnessResult:
        return cls(
            dict(data["clean"]),
            list(data["conditions"]),
            int(data.get("seed", 0)),
            int(data.get("images", 0)),
        )


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="corruptions", unit="condition")


def corruption_sweep(
    predictor: Predictor,
    frames: Sequence[tuple[int, np.ndarray, np.ndarray]],
    gt: Mapping[str, Any],
    corruptions: Sequence[str],
    severities: Sequence[int],
    seed: int = 0,
    progress: bool = True,
) -> RobustnessResult:
    """Evaluate `predictor` on `frames` ((image id, rgb, depth metres), e.g. `dataset.load_frames`) clean
    and under each corruption x severity; `gt` is the COCO ground truth of exactly those frames."""
    bar = _progress(1 + len(corruptions) * len(severities), progress)
    result = RobustnessResult(
        clean=evaluate(gt, predict_frames(predictor, frames)), seed=seed, images=len(frames)
    )
    if bar is not None:
        bar.update(1)
    for name in corruptions:
        for severity in severities:
            if bar is not None:
                bar.set_postfix_str(f"{name} s{severity}")
            transform = _transform(name, severity, seed)
            metrics = evaluate(gt, predict_frames(predictor, frames, transform))
            result.conditions.append(
                {
                    "corruption": name,
                    "modality": modality(name),
                    "severity": int(severity),
                    "metrics": metrics,
                }
            )
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return result


def _transform(name: str, severity: int, seed: int) -> Callable:
    def transform(rgb: np.ndarray, depth: np.ndarray, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        return corrupt_frame(rgb, depth, name, severity, seed=seed, image_id=image_id)

    return transform


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def summarize(result: RobustnessResult, keys: Sequence[str] = SUMMARY_KEYS) -> dict[str, Any]:
    """Per-corruption means over severities, means over corruptions (all / rgb / depth), relative to clean."""
    per_corruption = {
        name: {k: _mean([result.value(name, s, k) for s in result.severities()]) for k in keys}
        for name in result.corruptions()
    }
    out: dict[str, Any] = {"per_corruption": per_corruption}
    for group in ("all", "rgb", "depth"):
        conds = [c for c in result.conditions if group == "all" or c["modality"] == group]
        if not conds:
            continue
        mean = {k: _mean([float(c["metrics"][k]) for c in conds]) for k in keys}
        out[f"mean_{group}"] = mean
        out[f"relative_{group}"] = {
            k: (mean[k] / result.clean[k]) if result.clean.get(k) else math.nan for k in keys
        }
    return out


def write_robustness(result: RobustnessResult, out_dir: str | os.PathLike) -> dict[str, Path]:
    """robustness.json (everything), robustness.csv (one row per condition), robustness.md (tables)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "robustness.json", "csv": out / "robustness.csv", "md": out / "robustness.md"}
    paths["json"].write_text(json.dumps(result.to_dict(), indent=2, allow_nan=True))
    with paths["csv"].open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["corruption", "modality", "severity", *SUMMARY_KEYS])
        writer.writerow(["clean", "-", 0, *(f"{result.clean[k]:.4f}" for k in SUMMARY_KEYS)])
        for c in result.conditions:
            writer.writerow(
                [
                    c["corruption"],
                    c["modality"],
                    c["severity"],
                    *(f"{c['metrics'][k]:.4f}" for k in SUMMARY_KEYS),
                ]
            )
    paths["md"].write_text("\n".join(markdown_tables(result)) + "\n")
    return paths


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def markdown_tables(result: RobustnessResult, keys: Sequence[str] = SUMMARY_KEYS) -> list[str]:
    """Per-corruption table (mean over severities) with clean, mean-corrupted and relative rows."""
    summary = summarize(result, keys)
    header = "| corruption | " + " | ".join(keys) + " |"
    lines = [header, "|" + "---|" * (len(keys) + 1)]
    lines.append("| **clean** | " + " | ".join(_fmt(result.clean[k]) for k in keys) + " |")
    for name, values in summary["per_corruption"].items():
        lines.append(f"| {name} | " + " | ".join(_fmt(values[k]) for k in keys) + " |")
    for group in ("rgb", "depth", "all"):
        if f"mean_{group}" in summary:
            mean, rel = summary[f"mean_{group}"], summary[f"relative_{group}"]
            lines.append(f"| **mean {group}** | " + " | ".join(_fmt(mean[k]) for k in keys) + " |")
            lines.append(f"| relative {group} (/ clean) | " + " | ".join(_fmt(rel[k]) for k in keys) + " |")
    sev = ", ".join(str(s) for s in result.severities())
    lines += [
        "",
        f"{result.images} images, severities {sev} (a corruption row: mean over them), seed {result.seed}.",
    ]
    return lines
