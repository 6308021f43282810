"""The diagnostics hook: `compute_diagnostics(ctx, cfg)` every `cfg.every` steps, as an engine hook.

`DiagnosticsHook(cfg)` runs in the step's `on_gradients` phase (after the losses and the per-task-
gradient context exist, before `method.backward`) on every rank, and its values land in the step's row
of metrics.csv (keys: `training.rundir`). It is read-only: it asks the step's `StepContext` for
per-task gradients, which the context caches, so a method that needs the same gradients in the same
step reuses them (and a loss-weighting method pays for them only on diagnostic steps). What is
disabled costs nothing: FD and the feature-level measures only need `ctx.feature_grads()` = ∂L_i/∂Z
(T backward passes through the heads' activations, no weight gradients; the step builds the context
from the list of task losses, so each pass visits only its own task's heads); only the
parameter-level measures call `param_grads()` (T more vector-Jacobian products through the backbone).

Keys (all floats; NaN where a measure is undefined for this step, e.g. every task gradient zero):
    diag/fd
    diag/gds_param, diag/gms_param, diag/cr_param          (levels contains "parameter")
    diag/gds_feature, diag/gms_feature, diag/cr_feature    (levels contains "feature")
    diag/inter_task_{cos,gms,sign_conflict},
    diag/inter_sample_{cos,gms,sign_conflict}              (inter_sample=True, "parameter" in
                                                            inter_sample_levels: the study's measure)
    diag/inter_task_{cos,gms,sign_conflict}_feature, ...   ("feature" in inter_sample_levels)
The parameter-level inter-sample measures cost T·B backbone VJPs and hold T·B·P numbers (P = shared
parameters) for the step: enable them with a large `every`.

Data parallelism: FD and the inter-sample measures are computed on this rank's part of Z
(`ctx.local_feature_grads()`, this rank's samples) and pooled over ranks as sums and counts, so FD and
the inter-task measures equal a single process on the global batch; inter-sample pairs are the pairs
of samples on the same rank. GDS/GMS/CR use the context's global matrices (G averaged, G_Z gathered).
Failures: a measure that raises (anything but `NonFiniteError`, which skips the step as the method
would) is left out of the step's row (an empty cell: not computed), the hook warns once per measure
with the reason (`DiagnosticsWarning`) and training continues; `diagnostics.strict=true` raises
instead (the test suite turns the warning into an error).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import torch
from torch import Tensor

from training import rundir
from training.diagnostics.config import LEVELS, DiagnosticsConfig
from training.diagnostics.feature_disentanglement import fd_from_sums, feature_disentanglement_sums
from training.diagnostics.gradient_similarity import GradientSimilarity
from training.diagnostics.inter_sample import (
    InterSimilarity,
    inter_similarity_sums,
    per_sample_param_grads,
    per_sample_view,
)
from training.engine import distributed as D
from training.engine.hooks import Hook
from training.mtl.context import NonFiniteError, StepContext

_R = TypeVar("_R")


class DiagnosticsWarning(UserWarning):
    """A diagnostic measure failed: it is left out of this step's metrics and training continues."""


class _Guard:
    """Runs one measure; with `failures` (lenient) an error is recorded there and the measure is None;
    without (strict) it propagates. `NonFiniteError` always propagates (the step is skipped)."""

    def __init__(self, failures: dict[str, str] | None) -> None:
        self.failures = failures

    def __call__(self, name: str, fn: Callable[[], _R]) -> _R | None:
        try:
            return fn()
        except NonFiniteError:
            raise
        except Exception as exc:
            if self.failures is None:
                raise
            self.failures.setdefault(name, f"{type(exc).__name__}: {exc}")
            return None

    def pooled(
        self, name: str, local: Callable[[], Tensor], size: int, device: torch.device
    ) -> Tensor | None:
        """`local()` (float64 sums) summed over ranks; None when it failed on any rank. The all-reduce
        runs on every rank even after a local failure, so no rank waits forever for another."""
        sums = self(name, local)
        packed = torch.zeros(size + 1, dtype=torch.float64, device=device)
        if sums is None:
            packed[size] = 1.0
        else:
            packed[:size] = sums.to(device)
        packed = D.sum_over_ranks(packed)
        if float(packed[size]) > 0:
            if sums is not None and self.failures is not None:
                self.failures.setdefault(name, "failed on another rank")
            return None
        return packed[:size]


def _level_views(G_Z: Tensor, features: Sequence[Tensor]) -> list[Tensor]:
    """Split `[T, m]` into one `[T, *feature.shape]` view per feature tensor (no copy)."""
    T = G_Z.shape[0]
    sizes = [f.numel() for f in features]
    if sum(sizes) != G_Z.shape[1]:
        raise ValueError(
            f"ctx.features: their {sum(sizes)} elements do not match G_Z's {G_Z.shape[1]} columns"
        )
    return [part.reshape(T, *f.shape) for part, f in zip(torch.split(G_Z, sizes, dim=1), features)]


def _similarity(G: Tensor, level: str) -> dict[str, float]:
    with torch.no_grad():
        sim = GradientSimilarity.from_gradients(G)
    return dict(zip(rundir.similarity_keys(level), (sim.gds, sim.gms, sim.conflict_ratio)))


def _fd(ctx: StepContext, cfg: DiagnosticsConfig, guard: _Guard) -> dict[str, float]:
    """FD over every rank's locations: entropy sums of this rank's part of Z, pooled over ranks."""

    def local() -> Tensor:
        with torch.no_grad():
            total, count, _ = feature_disentanglement_sums(
                _level_views(ctx.local_feature_grads(), ctx.features), window=cfg.fd_window,
                mode=cfg.fd_mode, axis=cfg.fd_axis, zero=cfg.fd_zero, padding=cfg.fd_padding,
                temperature=cfg.fd_temperature, eps=cfg.fd_eps,
            )  # fmt: skip
        return torch.tensor([total, float(count)], dtype=torch.float64)

    sums = guard.pooled("fd", local, 2, ctx.losses.device)
    if sums is None:
        return {}
    return {rundir.DIAG_FD: fd_from_sums(float(sums[0]), float(sums[1]), ctx.num_tasks, cfg.fd_normalized)}


def _inter_task_vs_inter_sample(ctx: StepContext, levels: Sequence[str], guard: _Guard) -> dict[str, float]:
    """The inter-task vs inter-sample measures at `levels`, in the order of `DiagnosticsConfig.keys`:
    per-sample rows of this rank's samples, pair sums pooled over ranks."""
    out: dict[str, float] = {}
    for lv in (lv for lv in LEVELS if lv in levels):

        def local(lv: str = lv) -> Tensor:
            G_Z, feats = ctx.local_feature_grads(), list(ctx.features)
            if lv == "parameter":
                # T·B vector-Jacobian products through the backbone (grad mode as the caller left it)
                rows = per_sample_param_grads(G_Z, feats, list(ctx.shared_params))
            else:
                rows = per_sample_view(G_Z, feats)
            return inter_similarity_sums(rows)

        sums = guard.pooled(f"inter_sample ({lv} level)", local, 12, ctx.losses.device)
        if sums is not None:
            measures = InterSimilarity.from_sums(sums)
            out.update(measures.as_dict(prefix=rundir.DIAG_PREFIX, suffix=rundir.INTER_SUFFIX[lv]))
    return out


def compute_diagnostics(
    ctx: StepContext, cfg: DiagnosticsConfig, failures: dict[str, str] | None = None
) -> dict[str, float]:
    """The enabled diagnostics of this step (see the module docstring for keys and costs).

    Call before `method.backward(ctx)` (the final backward releases the cached gradients). A
    non-finite per-task gradient raises `NonFiniteError`, like the method would. With fewer than 2
    tasks nothing is compared and the result is empty. failures: None (strict) lets a failing measure
    raise; a dict collects `{measure: reason}` instead and the measure's keys are left out.
    """
    if cfg.every == 0 or ctx.num_tasks < 2:
        return {}
    guard = _Guard(failures)
    out: dict[str, float] = {}
    need_features = cfg.fd or cfg.inter_sample or (cfg.gradient_similarity and "feature" in cfg.levels)
    need_params = cfg.gradient_similarity and "parameter" in cfg.levels
    # gradients first (cached for the method), with grad mode as the caller left it
    G_Z = guard("per-task feature gradients", ctx.feature_grads) if need_features else None
    G_P = guard("per-task parameter gradients", ctx.param_grads) if need_params else None
    if cfg.fd and G_Z is not None:
        out.update(_fd(ctx, cfg, guard))
    if cfg.gradient_similarity:
        for level, G in (("parameter", G_P), ("feature", G_Z)):
            if level in cfg.levels and G is not None:
                sim = guard(f"gds/gms/cr ({level} level)", functools.partial(_similarity, G, level))
                out.update(sim or {})
    if cfg.inter_sample and G_Z is not None:
        out.update(_inter_task_vs_inter_sample(ctx, cfg.inter_sample_levels, guard))
    return {k: (float(v) if v is not None else math.nan) for k, v in out.items()}


class DiagnosticsHook(Hook):
    """`compute_diagnostics(ctx, cfg)` on the steps `cfg.due(step)` selects (install on every rank).

    A failing measure is warned about once (`DiagnosticsWarning`, with its reason) and left out of the
    rows of the steps it fails in; `cfg.strict` raises instead.
    """

    def __init__(self, cfg: DiagnosticsConfig) -> None:
        self.cfg = cfg
        self.failed: dict[str, str] = {}  # measure -> the first reason (warned once)

    @property
    def keys(self) -> list[str]:
        """The metrics.csv columns this hook fills."""
        return self.cfg.keys()

    def on_gradients(self, ctx: StepContext) -> Mapping[str, float]:
        if not self.cfg.due(ctx.step):
            return {}
        failures: dict[str, str] | None = None if self.cfg.strict else {}
        out = compute_diagnostics(ctx, self.cfg, failures)
        for name, reason in (failures or {}).items():
            if name not in self.failed:
                self.failed[name] = reason
                warnings.warn(
                    DiagnosticsWarning(
                        f"diagnostics: {name} failed at step {ctx.step} ({reason}); it is left out of "
                        "metrics.csv (empty cells) on every step it fails and training continues. "
                        "diagnostics.strict=true stops the run instead."
                    ),
                    stacklevel=2,
                )
        return out
