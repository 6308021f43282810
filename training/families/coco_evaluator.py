"""The bin-picking family's evaluator: run the model on a split, paste masks like the runtime, score
with pycocotools (COCO mAP/mAR for amodal boxes, visible and amodal masks; occlusion accuracy).

Boxes and 28x28 ROI masks come out at the network input size S; they are mapped back to the camera
image with `mtl_grasp.runtime.postprocess.decode`, the same decoding the
ONNX `Detector` uses, so a checkpoint and its export evaluate identically. The metrics themselves are
`mtl_grasp.evaluation.evaluate` against the COCO JSON of `mtl_grasp.data.coco` (full resolution).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from mtl_grasp.contract import OUTPUT_NAMES
from mtl_grasp.evaluation import OCCLUSION_KEYS, evaluate, metric_keys
from mtl_grasp.runtime.postprocess import decode
from training.data.dataset import MetaGraspNetDataset
from training.engine.step import autocast_context


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def _to_prediction(
    out: Mapping[str, torch.Tensor], size: int, height: int, width: int
) -> dict[str, np.ndarray]:
    """One image's eval-mode output at input size `size` -> the evaluation dict at height x width.

    Decoded by `mtl_grasp.runtime.postprocess.decode`, the ONNX Detector's decoding (all detections
    kept: mAP integrates over every score).
    """
    outputs = {name: _np(out[name]) for name in OUTPUT_NAMES}  # float32 (also under bf16 autocast)
    return decode(outputs, height, width, None, scale_x=size / width, scale_y=size / height).to_prediction()


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    dataset: MetaGraspNetDataset,
    device: torch.device,
    amp: str = "none",
    max_images: int = 0,
    batch_size: int = 2,
) -> dict[int, dict[str, np.ndarray]]:
    """Full-resolution predictions keyed by COCO image id for the first `max_images` items (0 = all).

    The model is put in eval mode for the pass and restored afterwards; the global RNG is forked so an
    evaluation in the middle of training does not change the training run.
    """
    n = len(dataset) if max_images <= 0 else min(max_images, len(dataset))
    was_training = model.training
    model.eval()
    preds: dict[int, dict[str, np.ndarray]] = {}
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            for start in range(0, n, batch_size):
                items = [dataset[i] for i in range(start, min(n, start + batch_size))]
                rgb = torch.stack([it[0] for it in items]).to(device)
                depth = torch.stack([it[1] for it in items]).to(device)
                with autocast_context(device, amp):
                    outs = model(rgb, depth)
                for (_, _, target), out in zip(items, outs):
                    h, w = target["orig_size"]
                    preds[int(target["image_id"])] = _to_prediction(out, rgb.shape[-1], int(h), int(w))
    finally:
        model.train(was_training)
    return preds


def subset_gt(gt: Mapping[str, Any], image_ids: set[int]) -> dict[str, Any]:
    """The COCO dict restricted to `image_ids` (evaluating part of a split must not count the rest)."""
    return {
        **gt,
        "images": [im for im in gt["images"] if im["id"] in image_ids],
        "annotations": [a for a in gt["annotations"] if a["image_id"] in image_ids],
    }


class CocoEvaluator:
    """`evaluator(model) -> metrics` on a fixed dataset and its COCO ground truth (an engine
    `Evaluator`: its `keys` are the columns of eval.csv)."""

    keys: tuple[str, ...] = (*metric_keys(), *OCCLUSION_KEYS)

    def __init__(
        self,
        dataset: MetaGraspNetDataset,
        gt: Mapping[str, Any],
        device: torch.device,
        amp: str = "none",
        max_images: int = 0,
    ) -> None:
        if len(dataset) == 0:
            raise ValueError("evaluation split: no images to evaluate")
        self.dataset, self.gt, self.device, self.amp, self.max_images = dataset, gt, device, amp, max_images

    def __call__(self, model: torch.nn.Module) -> dict[str, float]:
        preds = predict(model, self.dataset, self.device, self.amp, self.max_images)
        return evaluate(subset_gt(self.gt, set(preds)), preds)
