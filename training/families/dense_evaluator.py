"""The dense family's evaluator: `DenseMTLNet` over a split, scored by `mtl_grasp.evaluation.dense`.

Metrics are accumulated over the whole split (one confusion matrix, global pixel means, the true
median of all normal angles; docs/dense.md section 5), by `training.model.dense.evaluate.evaluate_dense`,
which runs the network in eval mode under a forked RNG and restores its mode, as the engine's
`Evaluator` protocol requires. Evaluation runs in float32 (no autocast), at the dataset's size.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from mtl_grasp.evaluation.dense import metric_keys
from training.data.dense import DenseBatch, DenseDataset, collate_dense
from training.model.dense.evaluate import evaluate_dense
from training.model.dense.network import DenseMTLNet


class DenseSplitEvaluator:
    """`evaluator(net) -> {"<task>/<metric>": value}` on a fixed `DenseDataset` (an engine `Evaluator`).

    max_images: only the first N images (0 = the whole split); batch_size: images per forward pass.
    """

    def __init__(
        self, dataset: DenseDataset, device: torch.device, max_images: int = 0, batch_size: int = 4
    ) -> None:
        if len(dataset) == 0:
            raise ValueError("evaluation split: no images to evaluate")
        if batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size}")
        self.dataset, self.device, self.batch_size = dataset, device, batch_size
        self.count = len(dataset) if max_images <= 0 else min(max_images, len(dataset))
        self._keys = metric_keys(dataset.tasks)

    @property
    def keys(self) -> tuple[str, ...]:
        """The columns of eval.csv: the metrics of the dataset's tasks (`metric_keys`)."""
        return self._keys

    def batches(self) -> Iterator[DenseBatch]:
        """The evaluated images in order, `batch_size` at a time."""
        for start in range(0, self.count, self.batch_size):
            stop = min(self.count, start + self.batch_size)
            yield collate_dense([self.dataset[i] for i in range(start, stop)])

    def __call__(self, module: nn.Module) -> dict[str, float]:
        if not isinstance(module, DenseMTLNet):
            raise TypeError(f"module: expected a DenseMTLNet, got {type(module).__name__}")
        return evaluate_dense(module, self.batches(), self.device, self.dataset.tasks)
