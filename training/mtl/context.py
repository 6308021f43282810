"""StepContext: one training step's losses, shared features and the per-task gradients derived from them.

The ONE place that computes per-task gradients, at the parameter level (w.r.t. the shared parameters
θ_s) or at the feature level (w.r.t. the shared representation Z). Results are cached, so a diagnostic
and a method in the same step never compute them twice; every backward keeps the graph until the
method's final backward.

How the graph is cut: the trainer computes Z = model.features(...), then detaches Z into leaves
Zd (requires_grad) and computes the task losses from Zd. Hence
- ∂L_i/∂Z is a cheap backward through the heads only (T of them for G_Z);
- ∂L_i/∂θ_s = J_Zᵀ (∂L_i/∂Z) is one vector-Jacobian product through the backbone per task
  (or one batched VJP for all tasks with `batched_vjp=True`, which uses vmap);
- the final update needs one backbone backward whatever the method.
Head parameters receive the raw sum Σ_i ∇_{θ_h} L_i for direction-producing methods (convention (a)
of docs/mtl.md; one extra backward through the heads only) and Σ_i w_i ∇_{θ_h} L_i for loss-weighting
methods; a direction-producing method may pass `head_weights` to the final backward instead (the IMTL
hybrid's loss scales).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor


class NonFiniteError(FloatingPointError):
    """A loss or gradient is NaN/inf; the trainer skips the step instead of stepping on it."""


def _empty_rows(rows: int, like: Sequence[Tensor]) -> Tensor:
    """An uninitialised `[rows, Σ numel(like)]` matrix with the promoted dtype of `like`."""
    if not like:
        return torch.zeros(rows, 0)
    dtype = like[0].dtype
    for t in like[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return torch.empty(rows, sum(t.numel() for t in like), dtype=dtype, device=like[0].device)


def _fill_row(row: Tensor, tensors: Sequence[Tensor | None], like: Sequence[Tensor]) -> None:
    """row[...] = the flattened `tensors` (None = zeros) in the order of `like`: one copy, no concat."""
    offset = 0
    for t, ref in zip(tensors, like):
        n = ref.numel()
        if t is None:
            row[offset : offset + n].zero_()
        else:
            row[offset : offset + n].copy_(t.reshape(-1))
        offset += n


def _unflatten(vec: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    out, offset = [], 0
    for ref in like:
        n = ref.numel()
        out.append(vec[offset : offset + n].view_as(ref))
        offset += n
    return out


class StepContext:
    """What an MTL method sees in one step (built by `training.engine.step.TrainStep.forward` only).

    losses: task losses `[T]` computed from `feature_leaves` (graph through the heads); may be given as a
        list of T scalars, which is faster: per-task gradients then differentiate each task's own loss
        instead of an entry of the stacked vector (whose backward would push zeros through every head).
    features: the shared representation Z (list of tensors, graph to the shared parameters).
    feature_leaves: detached copies of `features` with requires_grad; the heads ran on these.
    shared_params / task_params: disjoint parameter lists (backbone+fusion+FPN / heads).
    reevaluate: recomputes the task losses `[T]` on the same batch under no_grad (for methods that look
        at the loss change after the step, e.g. FAMO); None if unavailable.
    """

    def __init__(
        self,
        losses: Tensor | Sequence[Tensor],
        features: Sequence[Tensor],
        feature_leaves: Sequence[Tensor],
        shared_params: Sequence[torch.nn.Parameter],
        task_params: Sequence[torch.nn.Parameter],
        step: int = 0,
        epoch: int = 0,
        reevaluate: Callable[[], Tensor] | None = None,
        batched_vjp: bool = False,
        task_names: Sequence[str] = (),
    ) -> None:
        self._task_losses: list[Tensor] | None = None
        if isinstance(losses, Tensor):
            self.losses = losses  # [T]
        else:
            self._task_losses = list(losses)
            self.losses = torch.stack(self._task_losses)  # [T]
        self.features, self.feature_leaves = features, feature_leaves
        self.shared_params, self.task_params = shared_params, task_params
        self.step, self.epoch, self.reevaluate = step, epoch, reevaluate
        self.batched_vjp, self.task_names = batched_vjp, task_names
        self._feature_grads: Tensor | None = None
        self._param_grads: Tensor | None = None

    def task_loss(self, i: int) -> Tensor:
        """Task i's scalar loss, differentiable without the stack's backward when available."""
        return self._task_losses[i] if self._task_losses is not None else self.losses[i]

    @property
    def num_tasks(self) -> int:
        return int(self.losses.shape[0])

    # ---- checks ----------------------------------------------------------------------------
    def _name(self, i: int) -> str:
        return self.task_names[i] if i < len(self.task_names) else f"task{i}"

    def check_losses_finite(self) -> None:
        bad = [self._name(i) for i in range(self.num_tasks) if not torch.isfinite(self.losses[i])]
        if bad:
            raise NonFiniteError(f"non-finite loss in tasks {bad}: {self.losses.detach().tolist()}")

    def _check_rows(self, G: Tensor, what: str) -> None:
        # A NaN/inf entry always makes its row's sum NaN/inf, so one fast sum per row clears every
        # finite row; only a row whose sum is not finite (a NaN/inf, or finite values whose sum
        # overflows) gets the exact element-wise test, so huge finite gradients are not rejected.
        # (A float64 sum would avoid the second pass but costs 30x more on [7, 25.6M].)
        finite_sum = torch.isfinite(G.sum(dim=1)).tolist()
        suspect = [i for i, ok in enumerate(finite_sum) if not ok]
        bad = [self._name(i) for i in suspect if not bool(torch.isfinite(G[i]).all())]
        if bad:
            raise NonFiniteError(f"non-finite {what} gradient for tasks {bad}")

    # ---- per-task gradients ----------------------------------------------------------------
    def feature_grads(self) -> Tensor:
        """G_Z `[T, m]`: row i = ∂L_i/∂Z flattened over the whole batch (no batch reduction).

        Only the feature leaves are differentiated (backward through the heads' activations, no
        weight gradients); heads get their gradients once, in the final backward.
        """
        if self._feature_grads is None:
            leaves = list(self.feature_leaves)
            G = _empty_rows(self.num_tasks, leaves)  # [T, m], each row written once in place
            for i in range(self.num_tasks):
                grads = torch.autograd.grad(self.task_loss(i), leaves, retain_graph=True, allow_unused=True)
                _fill_row(G[i], grads, leaves)
                del grads
            self._check_rows(G, "feature")
            self._feature_grads = G
        return self._feature_grads

    def feature_values(self) -> list[Tensor]:
        """Z (detached), one tensor per feature level, batch first, laid out like the columns of
        `feature_grads()` (under data parallelism: every rank's samples, the global batch)."""
        return [z.detach() for z in self.feature_leaves]

    def local_feature_grads(self) -> Tensor:
        """This process's columns of `feature_grads()`: `[T, m_local]`, the columns of `features`
        (the whole matrix in a single process; one rank's columns under data parallelism, scaled as the
        global loss's gradient). Measures over locations or samples of Z are computed on these and
        pooled over ranks."""
        return self.feature_grads()

    def param_grads(self) -> Tensor:
        """G `[T, P]`: row i = ∂L_i/∂θ_s flattened over the shared parameters."""
        if self._param_grads is None:
            G_Z = self.feature_grads()
            feats = list(self.features)
            shared = list(self.shared_params)
            if self.batched_vjp:
                outs = [torch.stack([_unflatten(G_Z[i], feats)[k] for i in range(self.num_tasks)])
                        for k in range(len(feats))]
                grads = torch.autograd.grad(
                    feats, shared, grad_outputs=outs, retain_graph=True, allow_unused=True,
                    is_grads_batched=True,
                )
                G = torch.cat(
                    [(g if g is not None else torch.zeros(self.num_tasks, *p.shape, device=p.device,
                                                          dtype=p.dtype)).reshape(self.num_tasks, -1)
                     for g, p in zip(grads, shared)], dim=1)
            else:
                G = _empty_rows(self.num_tasks, shared)  # [T, P], each row written once in place
                for i in range(self.num_tasks):
                    g = torch.autograd.grad(
                        feats, shared, grad_outputs=_unflatten(G_Z[i], feats), retain_graph=True,
                        allow_unused=True,
                    )
                    _fill_row(G[i], g, shared)
                    del g
            self._check_rows(G, "parameter")
            self._param_grads = G
        return self._param_grads

    # ---- final backward: exactly one of these per step ---------------------------------------
    def backward_loss(self, total: Tensor) -> None:
        """Backpropagate a scalar built from `losses` (and method parameters) through heads and backbone."""
        if not torch.isfinite(total):
            raise NonFiniteError(f"non-finite total loss {float(total)}")
        leaves = list(self.feature_leaves)
        for z in leaves:
            z.grad = None
        total.backward()
        grads = [z.grad if z.grad is not None else torch.zeros_like(z) for z in leaves]
        torch.autograd.backward(list(self.features), grad_tensors=grads)
        self.release()  # like the direction finalisers: no cached G / G_Z through the optimiser step

    def backward_weighted(self, weights: Tensor) -> None:
        """Heads and backbone receive the gradients of Σ_i w_i L_i (w detached)."""
        w = weights.detach().to(self.losses.dtype)
        self.backward_loss((w * self.losses).sum())

    def _write_head_grads(self, head_weights: Tensor | None = None) -> None:
        """Heads' .grad += Σ_i ∇_{θ_h} L_i (raw sum), or Σ_i w_i ∇_{θ_h} L_i if weights are given.

        One backward through the heads only (never the backbone).
        """
        heads = [p for p in self.task_params if p.requires_grad]
        if head_weights is None:
            if not heads:
                return
            grads: Sequence[Tensor | None] = torch.autograd.grad(
                self.losses.sum(), heads, retain_graph=True, allow_unused=True
            )
        else:
            w = head_weights.detach().to(dtype=self.losses.dtype, device=self.losses.device)
            if w.shape != self.losses.shape:
                raise ValueError(
                    f"head_weights must have shape {tuple(self.losses.shape)} (one per task), "
                    f"got {tuple(w.shape)}"
                )
            if not bool(torch.isfinite(w).all()):
                raise NonFiniteError(f"non-finite head weights {w.tolist()}")
            if not heads:
                return
            grads = torch.autograd.grad((w * self.losses).sum(), heads, retain_graph=True, allow_unused=True)
        for p, g in zip(heads, grads):
            if g is None:
                continue
            p.grad = g.detach().clone() if p.grad is None else p.grad + g.detach()

    def backward_shared_direction(self, d: Tensor, head_weights: Tensor | None = None) -> None:
        """Shared parameters' .grad += d `[P]`; heads get the raw sum of their task gradients.

        head_weights `[T]` (optional): heads get Σ_i w_i ∇_{θ_h} L_i instead (e.g. IMTL's loss scales).
        """
        if not bool(torch.isfinite(d).all()):
            raise NonFiniteError("non-finite combined parameter-level direction")
        shared = list(self.shared_params)
        for p, g in zip(shared, _unflatten(d.to(shared[0].dtype), shared)):
            p.grad = g.detach().clone() if p.grad is None else p.grad + g.detach()
        self._write_head_grads(head_weights)
        self.release()

    def backward_feature_direction(self, d_z: Tensor, head_weights: Tensor | None = None) -> None:
        """Backpropagate d_z `[m]` (a direction in Z-space) through the backbone; heads get the raw sum.

        head_weights `[T]` (optional): heads get Σ_i w_i ∇_{θ_h} L_i instead.
        """
        if not bool(torch.isfinite(d_z).all()):
            raise NonFiniteError("non-finite combined feature-level direction")
        feats = list(self.features)
        self._write_head_grads(head_weights)
        torch.autograd.backward(feats, grad_tensors=_unflatten(d_z.to(feats[0].dtype), feats))
        self.release()

    def release(self) -> None:
        """Drop cached gradients (the graph is freed by the final backward)."""
        self._feature_grads = self._param_grads = None
