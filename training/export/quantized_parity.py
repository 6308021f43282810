"""The parity check of a quantised model: INT8 ONNX vs its float32 ONNX, through the runtime `Detector`.

INT8 cannot reproduce float32 to 1e-3 (activations carry ~1/255 of their range as rounding error), so
the float export's tolerances (`parity.Tolerances`) do not apply. What must hold instead is that the
robot sees the same objects: on real frames (the calibration data), every confident float detection
has an INT8 detection on the same object with a similar score, similar masks and the same occlusion
decision, and the INT8 model invents no confident detection of its own. `QuantizedTolerances` states
the thresholds; the accuracy side (mAP within 0.01) is measured on a validation set by
`python -m training bench quantization` (docs/benchmarks.md).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from training.export.parity import ParityError


@dataclass(frozen=True)
class QuantizedTolerances:
    """What 'the same detections' means for an INT8 model (defaults stated in docs/runtime.md)."""

    min_score: float = 0.5  # float detections at or above this score must be reproduced
    score_margin: float = 0.15  # an INT8 detection this far below min_score still counts as a match
    box_iou: float = 0.7  # a match is the INT8 detection of highest box IoU, if at least this
    matched_fraction: float = 0.9  # share of the confident float detections that must be matched
    extra_fraction: float = 0.1  # max share of confident INT8 detections without a float match
    mean_score_diff: float = 0.05  # max mean |score difference| over matched pairs
    mask_iou: float = 0.8  # min median IoU of the pasted visible and amodal masks of matched pairs
    occlusion_agreement: float = 0.9  # min share of matched pairs with the same occlusion decision


@dataclass
class QuantizedReport:
    """Numbers of one INT8-vs-float comparison over all frames."""

    frames: int = 0
    float_detections: int = 0  # confident (>= min_score)
    int8_detections: int = 0  # confident (>= min_score)
    matched: int = 0
    extra: int = 0  # confident INT8 detections with no float detection on the same object
    score_diffs: list[float] = field(default_factory=list)
    visible_ious: list[float] = field(default_factory=list)
    amodal_ious: list[float] = field(default_factory=list)
    occlusion_agree: int = 0
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        def med(values: list[float]) -> float:
            return float(np.median(values)) if values else float("nan")

        f = self.float_detections or 1
        m = self.matched or 1
        return (
            f"{self.frames} frames: {self.float_detections} confident float32 detections, "
            f"{self.matched} matched ({self.matched / f:.3f}), {self.extra} extra INT8 detections, "
            f"mean |dscore| {np.mean(self.score_diffs) if self.score_diffs else 0.0:.4f}, "
            f"median mask IoU visible {med(self.visible_ious):.3f} amodal {med(self.amodal_ious):.3f}, "
            f"occlusion agreement {self.occlusion_agree / m:.3f}"
        )


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [len(a), len(b)] of x1, y1, x2, y2 boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(-1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def compare_frame(ref, got, tol: QuantizedTolerances, report: QuantizedReport) -> None:
    """Add one frame's comparison of float `ref` and INT8 `got` `Detections` to `report`."""
    report.frames += 1
    conf_r = np.flatnonzero(ref.scores >= tol.min_score)
    cand_g = np.flatnonzero(got.scores >= tol.min_score - tol.score_margin)
    conf_g = np.flatnonzero(got.scores >= tol.min_score)
    report.float_detections += len(conf_r)
    report.int8_detections += len(conf_g)
    iou = _box_iou(ref.boxes[conf_r], got.boxes[cand_g]) if len(conf_r) and len(cand_g) else None
    used: set[int] = set()
    for row, i in enumerate(conf_r):  # best score first (Detections are sorted)
        if iou is None:
            break
        cols = [c for c in np.argsort(-iou[row]) if int(cand_g[c]) not in used]
        if not cols or iou[row, cols[0]] < tol.box_iou:
            continue
        j = int(cand_g[cols[0]])
        used.add(j)
        report.matched += 1
        report.score_diffs.append(abs(float(ref.scores[i]) - float(got.scores[j])))
        report.visible_ious.append(_mask_iou(ref.visible_masks[i], got.visible_masks[j]))
        report.amodal_ious.append(_mask_iou(ref.amodal_masks[i], got.amodal_masks[j]))
        report.occlusion_agree += bool(ref.occlusion[i] >= 0.5) == bool(got.occlusion[j] >= 0.5)
    # extra: a confident INT8 detection with no float detection (down to min_score - margin) on the
    # same object; one whose float twin scored just under min_score is a score difference, not extra
    cand_r = np.flatnonzero(ref.scores >= tol.min_score - tol.score_margin)
    if len(conf_g):
        back = _box_iou(got.boxes[conf_g], ref.boxes[cand_r]) if len(cand_r) else np.zeros((len(conf_g), 0))
        report.extra += int((back.max(axis=1, initial=0.0) < tol.box_iou).sum())


def judge(report: QuantizedReport, tol: QuantizedTolerances) -> QuantizedReport:
    """Fill `report.failures` from the thresholds of `tol`."""
    if report.float_detections == 0:
        report.failures.append(
            f"nothing to compare: the float32 model has no detection with score >= {tol.min_score} on "
            f"{report.frames} frames (an untrained model? lower QuantizedTolerances.min_score)"
        )
        return report
    mean_diff = float(np.mean(report.score_diffs)) if report.score_diffs else 0.0
    checks = [
        (report.matched / report.float_detections, tol.matched_fraction, ">=", "matched float detections"),
        (report.extra / max(1, report.int8_detections), tol.extra_fraction, "<=", "extra INT8 detections"),
        (mean_diff, tol.mean_score_diff, "<=", "mean |score difference|"),
    ]
    if report.matched:
        checks += [
            (float(np.median(report.visible_ious)), tol.mask_iou, ">=", "median visible mask IoU"),
            (float(np.median(report.amodal_ious)), tol.mask_iou, ">=", "median amodal mask IoU"),
            (report.occlusion_agree / report.matched, tol.occlusion_agreement, ">=", "occlusion agreement"),
        ]
    for value, limit, op, what in checks:
        if (value < limit) if op == ">=" else (value > limit):
            report.failures.append(f"{what} {value:.3f} (expected {op} {limit})")
    return report


def check_quantized_parity(
    float_path: str | os.PathLike,
    int8_path: str | os.PathLike,
    frames: Sequence[tuple[np.ndarray, np.ndarray]],
    tolerances: QuantizedTolerances | None = None,
    inference_size: int | str | None = None,
    keep_aspect: bool = True,
) -> QuantizedReport:
    """Run both models through the runtime `Detector` on camera `frames` (rgb uint8, depth metres).

    Raises ParityError listing the failed thresholds; returns the report otherwise.
    """
    from mtl_grasp.runtime import Detector

    tol = tolerances or QuantizedTolerances()
    threshold = max(0.0, tol.min_score - tol.score_margin)
    kwargs = dict(providers="cpu", score_threshold=threshold, inference_size=inference_size,
                  keep_aspect=keep_aspect, warmup=False)  # fmt: skip
    ref_det, got_det = Detector(float_path, **kwargs), Detector(int8_path, **kwargs)
    report = QuantizedReport()
    for rgb, depth in frames:
        compare_frame(ref_det(rgb, depth), got_det(rgb, depth), tol, report)
    judge(report, tol)
    if report.failures:
        raise ParityError(
            f"INT8 model {str(int8_path)!r} does not match its float32 model: " + "; ".join(report.failures)
        )
    return report
