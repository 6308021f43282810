"""DWA: dynamic weight average.

Paper: Shikun Liu, Edward Johns, Andrew J. Davison, "End-to-End Multi-Task Learning with Attention"
(MTAN), CVPR 2019, https://arxiv.org/abs/1803.10704

Update: with L̄_i(e) the average training loss of task i over epoch e,
    r_i = L̄_i(e−1) / L̄_i(e−2),   w = T · softmax(r / τ),   total = Σ w_i L_i  (w detached);
uniform weights (w = 1) until two epochs have completed.
Hyperparameters: τ = 2.0 (the paper's value; LibMTL, torchjd and nash-mtl use the same).
Statefulness: stateful. Epoch boundaries come from `ctx.epoch` (set by the trainer): when it increases,
the running mean of the finished epoch is shifted into L̄(e−1) (and the previous one into L̄(e−2)).
State (buffers, float64): running sum/count of the current epoch, L̄(e−1), L̄(e−2), the current
epoch index and the number of completed epochs — so a resume mid-epoch continues exactly.
An epoch counter that goes backwards is an error (the state would be inconsistent).
Scale: weights sum to T, the scale of EW's `G.sum(0)`.
Guards: L̄(e−2) is clamped to ≥ 1e-12 before dividing, so an epoch whose mean loss was 0 gives a
large but finite ratio (and the softmax is stable). Negative losses (not produced by this network)
would break the "descending rate" meaning; they are used as is.
Departures: the epoch-level rule of the paper/LibMTL, not the iteration windows of nash-mtl/Pylon.
The current batch's losses only update the running mean; they do not change this step's weights.
"""

from __future__ import annotations

import torch
from torch import Tensor

from training.mtl.base import Level, LossWeighting, StepReport
from training.mtl.context import StepContext
from training.mtl.registry import register

_TINY = 1e-12


@register
class DWA(LossWeighting):
    name = "dwa"
    paper = (
        "Liu, Johns, Davison, End-to-End Multi-Task Learning with Attention, CVPR 2019, "
        "https://arxiv.org/abs/1803.10704"
    )

    def __init__(self, num_tasks: int, level: Level | str = Level.PARAMETER, tau: float = 2.0) -> None:
        super().__init__(num_tasks, level)
        if not tau > 0:
            raise ValueError(f"dwa: tau (softmax temperature) must be > 0, got {tau!r}")
        self.tau = float(tau)
        T = num_tasks
        self.register_buffer("epoch_sum", torch.zeros(T, dtype=torch.float64))
        self.register_buffer("epoch_count", torch.zeros((), dtype=torch.int64))
        self.register_buffer("mean_last", torch.zeros(T, dtype=torch.float64))  # L̄(e−1)
        self.register_buffer("mean_prev", torch.zeros(T, dtype=torch.float64))  # L̄(e−2)
        self.register_buffer("current_epoch", torch.full((), -1, dtype=torch.int64))
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.int64))

    def _advance(self, epoch: int) -> None:
        """Close the running epoch when `epoch` moved on."""
        cur = int(self.current_epoch)
        if epoch < cur:
            raise ValueError(
                f"dwa: ctx.epoch went backwards from {cur} to {epoch}; expected a non-decreasing epoch"
            )
        if epoch == cur:
            return
        if int(self.epoch_count) > 0:
            self.mean_prev.copy_(self.mean_last)
            self.mean_last.copy_(self.epoch_sum / self.epoch_count)
            self.epochs_done += 1
        self.epoch_sum.zero_()
        self.epoch_count.zero_()
        self.current_epoch.fill_(epoch)

    def weights(self, losses: Tensor) -> Tensor:
        """Weights from the stored epoch means (the current batch does not enter)."""
        if int(self.epochs_done) < 2:
            return torch.ones_like(losses)
        r = self.mean_last / self.mean_prev.clamp_min(_TINY)
        w = self.num_tasks * torch.softmax(r / self.tau, dim=0)
        return w.to(device=losses.device, dtype=losses.dtype)

    def backward(self, ctx: StepContext) -> StepReport:
        ctx.check_losses_finite()
        if ctx.num_tasks != self.num_tasks:
            raise ValueError(f"dwa: built for {self.num_tasks} tasks, ctx has {ctx.num_tasks}")
        self._advance(int(ctx.epoch))
        w = self.weights(ctx.losses.detach())
        ctx.backward_weighted(w)
        # Accumulate after the backward so a NonFiniteError (skipped step) leaves the state untouched.
        self.epoch_sum += ctx.losses.detach().to(self.epoch_sum)
        self.epoch_count += 1
        return StepReport(weights=w.detach())
