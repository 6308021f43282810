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
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from training import rundir
from training.diagnostics.config import LEVELS, DiagnosticsConfig
from training.diagnostics.feature_disentanglement import feature_disentanglement
from training.diagnostics.gradient_similarity import GradientSimilarity
from training.diagnostics.inter_sample import (
    inter_task_vs_inter_sample,
    per_sample_param_grads,
    per_sample_view,
)
from training.engine.hooks import Hook
from training.mtl.context import StepContext


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
    sim = GradientSimilarity.from_gradients(G)
    return dict(zip(rundir.similarity_keys(level), (sim.gds, sim.gms, sim.conflict_ratio)))


def _inter_task_vs_inter_sample(ctx: StepContext, G_Z: Tensor, levels: Sequence[str]) -> dict[str, float]:
    """The inter-task vs inter-sample measures at `levels`, in the order of `DiagnosticsConfig.keys`."""
    out: dict[str, float] = {}
    for lv in LEVELS:
        if lv not in levels:
            continue
        if lv == "parameter":
            # T·B vector-Jacobian products through the backbone (grad mode as the caller left it)
            per_sample = per_sample_param_grads(G_Z, list(ctx.features), list(ctx.shared_params))
        else:
            per_sample = per_sample_view(G_Z, list(ctx.features))
        with torch.no_grad():
            measures = inter_task_vs_inter_sample(per_sample)
            out.update(measures.as_dict(prefix=rundir.DIAG_PREFIX, suffix=rundir.INTER_SUFFIX[lv]))
        del per_sample
    return out


def compute_diagnostics(ctx: StepContext, cfg: DiagnosticsConfig) -> dict[str, float]:
    """The enabled diagnostics of this step (see the module docstring for keys and costs).

    Call before `method.backward(ctx)` (the final backward releases the cached gradients). A
    non-finite per-task gradient raises `NonFiniteError`, like the method would. With fewer than 2
    tasks nothing is compared and the result is empty.
    """
    if cfg.every == 0 or ctx.num_tasks < 2:
        return {}
    out: dict[str, float] = {}
    need_features = cfg.fd or cfg.inter_sample or (cfg.gradient_similarity and "feature" in cfg.levels)
    inter_levels = cfg.inter_sample_levels if cfg.inter_sample else ()
    need_params = cfg.gradient_similarity and "parameter" in cfg.levels
    # gradients first, with grad mode as the caller left it; the measures are plain tensor maths
    G_Z = ctx.feature_grads() if need_features else None
    G_P = ctx.param_grads() if need_params else None
    with torch.no_grad():
        if cfg.fd and G_Z is not None:
            out[rundir.DIAG_FD] = feature_disentanglement(
                _level_views(G_Z, ctx.features),
                window=cfg.fd_window,
                mode=cfg.fd_mode,
                axis=cfg.fd_axis,
                zero=cfg.fd_zero,
                normalized=cfg.fd_normalized,
                padding=cfg.fd_padding,
                temperature=cfg.fd_temperature,
                eps=cfg.fd_eps,
            )
        if cfg.gradient_similarity:
            if G_P is not None:
                out.update(_similarity(G_P, "parameter"))
            if "feature" in cfg.levels and G_Z is not None:
                out.update(_similarity(G_Z, "feature"))
    if inter_levels and G_Z is not None:
        out.update(_inter_task_vs_inter_sample(ctx, G_Z, inter_levels))
    return {k: (float(v) if v is not None else math.nan) for k, v in out.items()}


class DiagnosticsHook(Hook):
    """`compute_diagnostics(ctx, cfg)` on the steps `cfg.due(step)` selects (install on every rank)."""

    def __init__(self, cfg: DiagnosticsConfig) -> None:
        self.cfg = cfg

    @property
    def keys(self) -> list[str]:
        """The metrics.csv columns this hook fills."""
        return self.cfg.keys()

    def on_gradients(self, ctx: StepContext) -> Mapping[str, float]:
        return compute_diagnostics(ctx, self.cfg) if self.cfg.due(ctx.step) else {}
