"""DWA: dynamic weight average.

Paper: Shikun Liu, Edward Johns, Andrew J. Davison, "End-to-End Multi-Task Learning with Attention"
(MTAN), CVPR 2019, https://arxiv.org/abs/1803.10704

Update: with L̄_i(e) the average training loss of task i over epoch e,
    r_i = L̄_i(e−1) / L̄_i(e−2),   w = T · softmax(r / τ),   total = Σ w_i L_i  (w detached);
uniform weights (w = 1) until two epochs have completed.
Hyperparameters: τ = 2.0 (the paper's value; LibMTL, torchjd and nash-mtl use the same);
`window` = 0 (default: the paper's epoch-based rule). `window = N > 0` uses iteration windows instead:
L̄(e−1) and L̄(e−2) become the mean losses of the last N steps and of the N steps before them, and the
weights stay uniform until 2N steps have been seen. Iteration windows are what nash-mtl
(`iteration_window=25`) and the FD paper's authors' framework (Pylon `DWAOptimizer`, its config
`configs/common/optimizers/dwa.py` sets `window_size=32`) do. To reproduce Pylon: window=32, tau=1.0,
and lr/T (Pylon's weights are softmax(r) with Σ = 1, no τ, no ×T; uniform 1/T during the warm-up).
Warm-up warning: `schedule_warnings(total_steps, steps_per_epoch)` (called once by the trainer)
says when the run ends before DWA leaves uniform weights (2 epochs, or 2N steps), i.e. when DWA is
EW for the whole run.
Statefulness: stateful. Epoch mode: epoch boundaries come from `ctx.epoch` (set by the trainer): when
it increases, the running mean of the finished epoch is shifted into L̄(e−1) (and the previous one
into L̄(e−2)). Window mode: a ring buffer of the last 2N losses. All state is in float64 buffers
(running sum/count of the current epoch, L̄(e−1), L̄(e−2), the current epoch index, the number of
completed epochs, the ring buffer and its count) — so a resume mid-epoch continues exactly.
An epoch counter that goes backwards is an error (the state would be inconsistent).
Scale: weights sum to T, the scale of EW's `G.sum(0)`.
Guards: L̄(e−2) is clamped to ≥ 1e-12 before dividing, so an epoch whose mean loss was 0 gives a
large but finite ratio (and the softmax is stable). Negative losses (not produced by this network)
would break the "descending rate" meaning; they are used as is.
Departures: none in the default (epoch) mode; window mode keeps τ and the ×T scale of the paper.
The current batch's losses only update the running means; they do not change this step's weights.
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
    # buffers registered in __init__ (declared for the type checker)
    epoch_sum: Tensor
    epoch_count: Tensor
    mean_last: Tensor
    mean_prev: Tensor
    current_epoch: Tensor
    epochs_done: Tensor
    recent: Tensor
    recent_count: Tensor
    paper = (
        "Liu, Johns, Davison, End-to-End Multi-Task Learning with Attention, CVPR 2019, "
        "https://arxiv.org/abs/1803.10704"
    )

    def __init__(
        self, num_tasks: int, level: Level | str = Level.PARAMETER, tau: float = 2.0, window: int = 0
    ) -> None:
        super().__init__(num_tasks, level)
        if not tau > 0:
            raise ValueError(f"dwa: tau (softmax temperature) must be > 0, got {tau!r}")
        if not isinstance(window, int) or isinstance(window, bool) or window < 0:
            raise ValueError(
                f"dwa: window must be an int >= 0 (0 = epoch-based, N = iteration windows of N steps), "
                f"got {window!r}"
            )
        self.tau = float(tau)
        self.window = window
        T = num_tasks
        self.register_buffer("epoch_sum", torch.zeros(T, dtype=torch.float64))
        self.register_buffer("epoch_count", torch.zeros((), dtype=torch.int64))
        self.register_buffer("mean_last", torch.zeros(T, dtype=torch.float64))  # L̄(e−1)
        self.register_buffer("mean_prev", torch.zeros(T, dtype=torch.float64))  # L̄(e−2)
        self.register_buffer("current_epoch", torch.full((), -1, dtype=torch.int64))
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.int64))
        # window mode: the last 2N task losses, oldest first once full (ring of `recent_count` entries)
        self.register_buffer("recent", torch.zeros(2 * window, T, dtype=torch.float64))
        self.register_buffer("recent_count", torch.zeros((), dtype=torch.int64))

    def warmup_steps(self, steps_per_epoch: int) -> int:
        """Steps during which the weights are uniform (2 epochs, or 2N steps in window mode)."""
        return 2 * self.window if self.window else 2 * steps_per_epoch

    def schedule_warnings(self, total_steps: int, steps_per_epoch: int) -> list[str]:
        warm = self.warmup_steps(steps_per_epoch)
        if total_steps > warm:
            return []
        unit = f"2 x window = {warm} steps" if self.window else f"2 epochs = {warm} steps"
        return [
            f"dwa: the run has {total_steps} steps but DWA keeps uniform weights for the first {unit}: "
            "it trains exactly like EW for the whole run. Use iteration windows, e.g. "
            "mtl.hparams.window=32 (the FD paper's authors' framework), or a longer run."
        ]

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

    def _means(self) -> tuple[Tensor, Tensor] | None:
        """(L̄(e−1), L̄(e−2)) from the epochs or the windows; None during the warm-up."""
        if self.window:
            if int(self.recent_count) < 2 * self.window:
                return None
            start = int(self.recent_count) % (2 * self.window)  # oldest entry of the full ring
            ordered = torch.roll(self.recent, -start, dims=0)
            return ordered[self.window :].mean(0), ordered[: self.window].mean(0)
        if int(self.epochs_done) < 2:
            return None
        return self.mean_last, self.mean_prev

    def weights(self, losses: Tensor) -> Tensor:
        """Weights from the stored means (the current batch does not enter)."""
        means = self._means()
        if means is None:
            return torch.ones_like(losses)
        last, prev = means
        r = last / prev.clamp_min(_TINY)
        w = self.num_tasks * torch.softmax(r / self.tau, dim=0)
        return w.to(device=losses.device, dtype=losses.dtype)

    def backward(self, ctx: StepContext) -> StepReport:
        ctx.check_losses_finite()
        if ctx.num_tasks != self.num_tasks:
            raise ValueError(f"dwa: built for {self.num_tasks} tasks, ctx has {ctx.num_tasks}")
        if not self.window:
            self._advance(int(ctx.epoch))
        w = self.weights(ctx.losses.detach())
        ctx.backward_weighted(w)
        # Accumulate after the backward so a NonFiniteError (skipped step) leaves the state untouched.
        current = ctx.losses.detach().to(self.epoch_sum)
        if self.window:
            self.recent[int(self.recent_count) % (2 * self.window)] = current
            self.recent_count += 1
        else:
            self.epoch_sum += current
            self.epoch_count += 1
        return StepReport(weights=w.detach())
