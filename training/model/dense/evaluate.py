"""Score a `DenseMTLNet` over a loader of `DenseBatch` es with `mtl_grasp.evaluation.dense.DenseEvaluator`.

Segmentation logits are reduced to classes on the device; everything else is moved to the host as
float32 numpy in the batch layout, so the metrics are the numpy definitions the tests pin.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from mtl_grasp.evaluation.dense import DenseEvaluator
from training.data.dense import DenseBatch
from training.model.dense.network import DenseMTLNet


def _host(t: torch.Tensor) -> np.ndarray:
    return (
        t.detach().cpu().numpy() if t.dtype in (torch.bool, torch.int64) else t.detach().float().cpu().numpy()
    )


def predictions_to_numpy(predictions: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Eval-mode outputs -> numpy in the metric layout (segmentation logits -> class per pixel)."""
    out = {k: _host(v) for k, v in predictions.items() if k != "segmentation"}
    if "segmentation" in predictions:
        out["segmentation"] = _host(predictions["segmentation"].argmax(dim=1))
    return out


@torch.no_grad()
def evaluate_dense(
    model: DenseMTLNet,
    batches: Iterable[DenseBatch],
    device: torch.device | str = "cpu",
    tasks: tuple[str, ...] | None = None,
) -> dict[str, float]:
    """``{"<task>/<metric>": value}`` over every batch; the model is restored to its previous mode and
    the global RNG is forked, so an evaluation in the middle of training changes nothing there."""
    tasks = tuple(model.config.tasks if tasks is None else tasks)
    evaluator = DenseEvaluator(tasks, model.config.num_classes)
    was_training = model.training
    model.eval()
    device = torch.device(device)
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            for batch in batches:
                batch = batch.to(device)
                predictions = model(batch.image)
                targets = {k: _host(v) for k, v in batch.targets.items()}
                evaluator.update(predictions_to_numpy(predictions), targets)
    finally:
        model.train(was_training)
    return evaluator.compute()
