"""The exporter's self-check: ONNX Runtime vs PyTorch eager on the same inputs.

Both paths' raw contract outputs are compared detection by detection (matched by box, so equal-score
ties may come out in either order), and their masks after `mtl_grasp.runtime.postprocess.paste_masks`
- the pasting the runtime and the torch evaluation both use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from mtl_grasp.contract import (
    INPUT_DEPTH,
    INPUT_RGB,
    OUTPUT_AMODAL_MASKS,
    OUTPUT_BOXES,
    OUTPUT_LABELS,
    OUTPUT_NAMES,
    OUTPUT_OCCLUSION,
    OUTPUT_SCORES,
    OUTPUT_VISIBLE_MASKS,
)
from mtl_grasp.runtime.postprocess import paste_masks


class ParityError(RuntimeError):
    """The exported ONNX model does not reproduce the PyTorch model."""


@dataclass(frozen=True)
class Tolerances:
    """What 'the same output' means. Defaults: float32 CPU kernels differ by ~1e-5 relative."""

    box_px: float = 0.05  # max |box difference| in pixels
    score: float = 1e-3  # max |score difference|
    mask_prob: float = 1e-3  # max |difference| of the raw per-ROI mask probabilities
    mask_iou: float = 0.99  # min IoU of each pasted (thresholded) mask, over decided pixels
    mask_margin: float = 1e-3  # pasted pixels whose torch probability is within this of 0.5 may differ
    occlusion_margin: float = 1e-3  # occlusion decisions within this of 0.5 may differ (ties)
    min_score: float = 0.0  # detections of either path below this score are not compared


@dataclass
class SizeReport:
    """Parity numbers at one input size."""

    height: int
    width: int
    torch_detections: int
    onnx_detections: int
    max_box_diff_px: float = 0.0
    max_score_diff: float = 0.0
    max_mask_prob_diff: float = 0.0
    min_visible_iou: float = 1.0
    min_amodal_iou: float = 1.0
    occlusion_mismatches: int = 0
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.height}x{self.width}: {self.torch_detections} detections (onnx {self.onnx_detections}), "
            f"max |dbox| {self.max_box_diff_px:.2e} px, max |dscore| {self.max_score_diff:.2e}, "
            f"max |dmask prob| {self.max_mask_prob_diff:.2e}, "
            f"min mask IoU visible {self.min_visible_iou:.4f} amodal {self.min_amodal_iou:.4f}, "
            f"occlusion mismatches {self.occlusion_mismatches}"
        )


def synthetic_frame(height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic bin-like RGB-D frame: coloured boxes on a plane ~0.7 m away, with depth holes.

    Returns (rgb uint8 H x W x 3, depth float32 metres H x W). Structure (edges, depth steps) makes
    the network produce many proposals, which is what a parity check needs to exercise NMS and ROI ops.
    """
    rng = np.random.default_rng(seed)
    rgb = np.empty((height, width, 3), np.uint8)
    rgb[:] = rng.integers(60, 120, 3, dtype=np.uint8)
    depth = np.full((height, width), 0.72, np.float32) + rng.normal(0, 0.002, (height, width)).astype(
        np.float32
    )
    for _ in range(6):
        h = int(rng.integers(max(4, height // 8), max(5, height // 2)))
        w = int(rng.integers(max(4, width // 8), max(5, width // 2)))
        y, x = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
        rgb[y : y + h, x : x + w] = rng.integers(0, 256, 3, dtype=np.uint8)
        depth[y : y + h, x : x + w] -= rng.uniform(0.02, 0.15)
    depth[rng.random((height, width)) < 0.02] = 0.0  # sensor holes
    return rgb, depth


def frame_tensors(rgb: np.ndarray, depth: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """numpy frame -> the contract's [1, 3, H, W] / [1, 1, H, W] float32 tensors."""
    rgb_t = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div_(255.0)[None]
    return rgb_t, torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))[None, None]


def run_torch(model: nn.Module, rgb: torch.Tensor, depth: torch.Tensor) -> dict[str, np.ndarray]:
    """The model's `forward_export` outputs as numpy, keyed by contract name."""
    with torch.no_grad():
        values = model.forward_export(rgb, depth)
    return {name: v.detach().cpu().numpy() for name, v in zip(OUTPUT_NAMES, values)}


def run_onnx(session: ort.InferenceSession, rgb: torch.Tensor, depth: torch.Tensor) -> dict[str, np.ndarray]:
    values = session.run(list(OUTPUT_NAMES), {INPUT_RGB: rgb.numpy(), INPUT_DEPTH: depth.numpy()})
    return dict(zip(OUTPUT_NAMES, values))


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    inter = (a & b).reshape(len(a), -1).sum(1)
    union = (a | b).reshape(len(a), -1).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def _match(ref: np.ndarray, other: np.ndarray) -> np.ndarray:
    """For each reference box, the index of the closest (L-inf) unused other box; greedy in order."""
    dist = np.abs(ref[:, None, :] - other[None, :, :]).max(-1)
    out = np.empty(len(ref), np.int64)
    for i in range(len(ref)):
        j = int(np.argmin(dist[i]))
        out[i] = j
        dist[:, j] = np.inf
    return out


def compare(
    ref: dict[str, np.ndarray], got: dict[str, np.ndarray], height: int, width: int, tol: Tolerances
) -> SizeReport:
    """Compare ONNX outputs `got` against PyTorch outputs `ref` for one frame."""
    keep_r = np.flatnonzero(ref[OUTPUT_SCORES] >= tol.min_score)
    keep_g = np.flatnonzero(got[OUTPUT_SCORES] >= tol.min_score)
    report = SizeReport(height, width, len(keep_r), len(keep_g))
    if len(keep_r) != len(keep_g):
        report.failures.append(f"{len(keep_r)} torch detections but {len(keep_g)} onnx detections")
        return report
    if len(keep_r) == 0:
        return report
    r = {k: v[keep_r] for k, v in ref.items()}
    g = {k: v[keep_g] for k, v in got.items()}
    order = _match(r[OUTPUT_BOXES], g[OUTPUT_BOXES])
    g = {k: v[order] for k, v in g.items()}
    report.max_box_diff_px = float(np.abs(r[OUTPUT_BOXES] - g[OUTPUT_BOXES]).max())
    report.max_score_diff = float(np.abs(r[OUTPUT_SCORES] - g[OUTPUT_SCORES]).max())
    if report.max_box_diff_px > tol.box_px:
        report.failures.append(f"boxes differ by {report.max_box_diff_px:.3g} px > {tol.box_px}")
    if report.max_score_diff > tol.score:
        report.failures.append(f"scores differ by {report.max_score_diff:.3g} > {tol.score}")
    if not np.array_equal(r[OUTPUT_LABELS], g[OUTPUT_LABELS]):
        report.failures.append("labels differ")
    for key, attr in ((OUTPUT_VISIBLE_MASKS, "min_visible_iou"), (OUTPUT_AMODAL_MASKS, "min_amodal_iou")):
        prob_diff = float(np.abs(r[key].astype(np.float64) - g[key]).max())
        report.max_mask_prob_diff = max(report.max_mask_prob_diff, prob_diff)
        if prob_diff > tol.mask_prob:
            report.failures.append(f"{key} probabilities differ by {prob_diff:.3g} > {tol.mask_prob}")
        # Each path pastes with its own boxes, as the runtime and the evaluation do. Pixels whose
        # torch probability lies within the margin of 0.5 are undecided (a barely trained head has
        # many): like occlusion ties, they may fall either way and are left out of the IoU.
        sure_in = paste_masks(r[OUTPUT_BOXES], r[key], height, width, threshold=0.5 + tol.mask_margin)
        maybe_in = paste_masks(r[OUTPUT_BOXES], r[key], height, width, threshold=0.5 - tol.mask_margin)
        decided = sure_in | ~maybe_in
        iou = _iou(sure_in, paste_masks(g[OUTPUT_BOXES], g[key], height, width) & decided)
        setattr(report, attr, float(iou.min()))
        if iou.min() < tol.mask_iou:
            report.failures.append(f"{key} IoU {iou.min():.4f} < {tol.mask_iou} (decided pixels)")
    occ_r, occ_g = r[OUTPUT_OCCLUSION], g[OUTPUT_OCCLUSION]
    decided = np.abs(occ_r - 0.5) > tol.occlusion_margin
    report.occlusion_mismatches = int(((occ_r >= 0.5) != (occ_g >= 0.5))[decided].sum())
    if report.occlusion_mismatches:
        report.failures.append(f"{report.occlusion_mismatches} occlusion decisions differ")
    return report


def check_parity(
    model: nn.Module,
    onnx_path: str | Path,
    sizes: list[tuple[int, int]],
    tolerances: Tolerances | None = None,
    seed: int = 0,
) -> list[SizeReport]:
    """Run PyTorch eager and ONNX Runtime (CPU) on one synthetic frame per (height, width) in `sizes`.

    Raises ParityError listing every failed comparison; returns the per-size reports otherwise.
    """
    tol = tolerances or Tolerances()
    model = model.eval()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    reports = []
    for i, (h, w) in enumerate(sizes):
        rgb, depth = frame_tensors(*synthetic_frame(h, w, seed + i))
        report = compare(run_torch(model, rgb, depth), run_onnx(session, rgb, depth), h, w, tol)
        reports.append(report)
    failures = [f"{r.height}x{r.width}: {f}" for r in reports for f in r.failures]
    if failures:
        raise ParityError(f"ONNX model {str(onnx_path)!r} does not match PyTorch: " + "; ".join(failures))
    return reports
