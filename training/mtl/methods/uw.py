"""UW: homoscedastic uncertainty weighting.

Paper: Alex Kendall, Yarin Gal, Roberto Cipolla, "Multi-Task Learning Using Uncertainty to Weigh
Losses for Scene Geometry and Semantics", CVPR 2018, https://arxiv.org/abs/1705.07115

Update: learnable log-variances s_i = log σ_i²; total = Σ_i (½ e^{−s_i} L_i + ½ s_i), backpropagated once
(network and s together). Task weights are ½ e^{−s_i}. The stationary point in s is e^{s_i} = L_i.
Hyperparameters: `init_log_var` = −0.5, the initial s of LibMTL (the study's reference library;
torchjd and nash-mtl start at 0). With −0.5 the initial weights are ½e^{0.5} ≈ 0.82.
Statefulness: s is an `nn.Parameter` returned by `method_parameters()`; the trainer adds it to its
optimiser (so its lr is the model's, as in LibMTL; nash-mtl uses a separate lr 0.025). It is part of
`state_dict()`.
Scale: weights ½e^{−s}, ≈ 0.82 × EW's `G.sum(0)` at the start.
Pitfalls: the objective is unbounded below when a loss is ≤ 0 (s → −∞); this network's losses are
non-negative. Tiny losses drive s down and the weight up (that is the method).
Departures: none (the regression form ½e^{−s}L + ½s for every task, as LibMTL and torchjd).
"""

from __future__ import annotations

import torch
from torch import Tensor

from training.mtl.base import Level, LossWeighting
from training.mtl.registry import register


@register
class UW(LossWeighting):
    name = "uw"
    paper = (
        "Kendall, Gal, Cipolla, Multi-Task Learning Using Uncertainty to Weigh Losses for Scene "
        "Geometry and Semantics, CVPR 2018, https://arxiv.org/abs/1705.07115"
    )

    def __init__(
        self, num_tasks: int, level: Level | str = Level.PARAMETER, init_log_var: float = -0.5
    ) -> None:
        super().__init__(num_tasks, level)
        if not torch.isfinite(torch.tensor(float(init_log_var))):
            raise ValueError(f"uw: init_log_var must be finite, got {init_log_var!r}")
        self.log_vars = torch.nn.Parameter(torch.full((num_tasks,), float(init_log_var)))

    def weights(self, losses: Tensor) -> Tensor:
        return (0.5 * torch.exp(-self.log_vars.detach())).to(device=losses.device, dtype=losses.dtype)

    def objective(self, losses: Tensor) -> Tensor:
        s = self.log_vars.to(losses.dtype)
        return (0.5 * torch.exp(-s) * losses + 0.5 * s).sum()
