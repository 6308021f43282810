"""EW: equal weighting — the sum of the task losses (the paper's baseline).

Scale: weights 1 (the sum), so `combine(G) = G.sum(0)` is the reference scale of every method.
Stateless; one backward. Refs: torchjd `Sum`, LibMTL `EW` (weights ones).
"""

from __future__ import annotations

import torch
from torch import Tensor

from training.mtl.base import LossWeighting
from training.mtl.registry import register


@register
class EW(LossWeighting):
    name = "ew"
    paper = "Equal weighting baseline (sum of task losses)"

    def weights(self, losses: Tensor) -> Tensor:
        return torch.ones_like(losses)
