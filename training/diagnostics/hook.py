"""The training hook: `compute_diagnostics(ctx, cfg)` every `cfg.every` steps, before `method.backward`.

It is read-only: it asks the step's `StepContext` for per-task gradients, which the context caches, so
a method that needs the same gradients in the same step reuses them (and a loss-weighting method pays
for them only on diagnostic steps). What is disabled costs nothing: FD and the feature-level measures
only need `ctx.feature_grads()` = ∂L_i/∂Z (T backward passes through the heads' activations, no weight
gradients; build the context from the list of task losses, `TaskSpec.task_losses(named)`, so that
each pass visits only its own task's heads); only the parameter-level measures call `param_grads()`
(T more vector-Jacobian products through the backbone).

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
from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from training.diagnostics.feature_disentanglement import MODES, PADDINGS, ZERO_RULES, feature_disentanglement
from training.diagnostics.gradient_similarity import GradientSimilarity
from training.diagnostics.inter_sample import (
    inter_task_vs_inter_sample,
    per_sample_param_grads,
    per_sample_view,
)
from training.mtl.context import StepContext

LEVELS = ("parameter", "feature")
_SUFFIX = {"parameter": "param", "feature": "feature"}
#: inter-task vs inter-sample measures, in the order of `InterSimilarity`; the parameter level (the
#: study's definition) has no suffix
INTER_KEYS = (
    "inter_task_cos", "inter_task_gms", "inter_sample_cos", "inter_sample_gms",
    "inter_task_sign_conflict", "inter_sample_sign_conflict",
)  # fmt: skip
INTER_SUFFIX = {"parameter": "", "feature": "_feature"}


@dataclass
class DiagnosticsConfig:
    """Which diagnostics the trainer computes, and how often.

    every: compute on steps where `step % every == 0`; 0 disables all diagnostics.
    fd: feature disentanglement; fd_* are the options of `feature_disentanglement` (fd_axis refers to
        the dimensions of one FPN level's per-task gradient [T, B, C, H, W]; -1 = along x).
        fd_zero="count", fd_eps=1e-7 reproduces the FD paper's authors' code (Pylon get_entropy).
    gradient_similarity: GDS, GMS and conflict ratio at each of `levels`.
    inter_sample: inter-task vs inter-sample similarity of per-sample gradients, at each of
        `inter_sample_levels`: "parameter" (w.r.t. the shared parameters, the study's definition;
        T·B backbone VJPs) and/or "feature" (w.r.t. Z, cheap; logged with a `_feature` suffix).
    """

    every: int = 10
    fd: bool = True
    gradient_similarity: bool = True
    levels: tuple[str, ...] = LEVELS
    fd_window: int = 1
    fd_mode: str = "box"
    fd_axis: int | tuple[int, ...] = -1
    fd_zero: str = "skip"
    fd_padding: str = "truncate"
    fd_temperature: float = 0.0
    fd_normalized: bool = False
    fd_eps: float = 0.0
    inter_sample: bool = False
    inter_sample_levels: tuple[str, ...] = ("parameter",)

    def __post_init__(self) -> None:
        # YAML gives lists; keep the dataclass hashable/comparable with tuples
        if isinstance(self.levels, str):
            self.levels = (self.levels,)
        self.levels = tuple(self.levels)
        if isinstance(self.inter_sample_levels, str):
            self.inter_sample_levels = (self.inter_sample_levels,)
        self.inter_sample_levels = tuple(self.inter_sample_levels)
        if not isinstance(self.fd_axis, int):
            self.fd_axis = tuple(self.fd_axis)
        self.validate()

    def validate(self) -> None:
        if not isinstance(self.every, int) or self.every < 0:
            raise ValueError(f"diagnostics.every: expected an int >= 0 (0 = off), got {self.every!r}")
        for name in ("levels", "inter_sample_levels"):
            given = getattr(self, name)
            if any(lv not in LEVELS for lv in given):
                raise ValueError(f"diagnostics.{name}: expected a subset of {LEVELS}, got {list(given)}")
        if not isinstance(self.fd_window, int) or self.fd_window < 1 or self.fd_window % 2 == 0:
            raise ValueError(f"diagnostics.fd_window: expected an odd int >= 1, got {self.fd_window!r}")
        if self.fd_mode not in MODES:
            raise ValueError(f"diagnostics.fd_mode: expected one of {MODES}, got {self.fd_mode!r}")
        if self.fd_zero not in ZERO_RULES:
            raise ValueError(f"diagnostics.fd_zero: expected one of {ZERO_RULES}, got {self.fd_zero!r}")
        if self.fd_padding not in PADDINGS:
            raise ValueError(f"diagnostics.fd_padding: expected one of {PADDINGS}, got {self.fd_padding!r}")
        if not self.fd_temperature >= 0:
            raise ValueError(f"diagnostics.fd_temperature: expected >= 0, got {self.fd_temperature!r}")
        if not self.fd_eps >= 0:
            raise ValueError(f"diagnostics.fd_eps: expected >= 0 (authors' code: 1e-7), got {self.fd_eps!r}")

    def due(self, step: int) -> bool:
        """Whether diagnostics run at `step`."""
        return self.every > 0 and step % self.every == 0

    def keys(self) -> list[str]:
        """The keys `compute_diagnostics` returns with this configuration (for T >= 2 tasks)."""
        out = ["diag/fd"] if self.fd else []
        if self.gradient_similarity:
            for lv in LEVELS:
                if lv in self.levels:
                    out += [f"diag/{m}_{_SUFFIX[lv]}" for m in ("gds", "gms", "cr")]
        if self.inter_sample:
            for lv in LEVELS:
                if lv in self.inter_sample_levels:
                    out += [f"diag/{k}{INTER_SUFFIX[lv]}" for k in INTER_KEYS]
        return out

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> DiagnosticsConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"diagnostics: unknown option(s) {unknown}; known: {sorted(known)}")
        return cls(**values)  # type: ignore[arg-type]


def _level_views(G_Z: Tensor, features: Sequence[Tensor]) -> list[Tensor]:
    """Split `[T, m]` into one `[T, *feature.shape]` view per feature tensor (no copy)."""
    T = G_Z.shape[0]
    sizes = [f.numel() for f in features]
    if sum(sizes) != G_Z.shape[1]:
        raise ValueError(
            f"ctx.features: their {sum(sizes)} elements do not match G_Z's {G_Z.shape[1]} columns"
        )
    return [part.reshape(T, *f.shape) for part, f in zip(torch.split(G_Z, sizes, dim=1), features)]


def _similarity(G: Tensor, suffix: str) -> dict[str, float]:
    sim = GradientSimilarity.from_gradients(G)
    return {
        f"diag/gds_{suffix}": sim.gds,
        f"diag/gms_{suffix}": sim.gms,
        f"diag/cr_{suffix}": sim.conflict_ratio,
    }


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
            out.update(inter_task_vs_inter_sample(per_sample).as_dict(suffix=INTER_SUFFIX[lv]))
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
            out["diag/fd"] = feature_disentanglement(
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
                out.update(_similarity(G_P, "param"))
            if "feature" in cfg.levels and G_Z is not None:
                out.update(_similarity(G_Z, "feature"))
    if inter_levels and G_Z is not None:
        out.update(_inter_task_vs_inter_sample(ctx, G_Z, inter_levels))
    return {k: (float(v) if v is not None else math.nan) for k, v in out.items()}
