"""Which diagnostics the trainer computes, and how often (the `diagnostics:` section of the config)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from training import rundir
from training.diagnostics.feature_disentanglement import MODES, PADDINGS, ZERO_RULES

LEVELS = ("parameter", "feature")


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
    strict: False (default): a measure that fails is warned about once and left out of the row, and
        training continues; True: the error stops the run (the test suite is strict through a
        warnings filter in pyproject.toml).
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
    strict: bool = False

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
        if not isinstance(self.strict, bool):
            raise ValueError(f"diagnostics.strict: expected true or false, got {self.strict!r}")
        if not self.fd_eps >= 0:
            raise ValueError(f"diagnostics.fd_eps: expected >= 0 (authors' code: 1e-7), got {self.fd_eps!r}")
        self._validate_fd_window()

    def _validate_fd_window(self) -> None:
        """What `feature_disentanglement` would refuse on every step: here, before the run starts."""
        if self.fd_window == 1:
            return  # no neighbourhood: fd_mode and fd_axis are not used
        if self.fd_zero == "count" and self.fd_mode == "mean":
            raise ValueError(
                "diagnostics.fd_zero: 'count' cannot be combined with fd_mode='mean' and fd_window > 1 "
                "(zero-saliency locations have no distribution to average); use fd_mode='box' or "
                "another fd_zero"
            )
        axes = [self.fd_axis] if isinstance(self.fd_axis, int) else list(self.fd_axis)
        if 0 in axes:
            raise ValueError(
                f"diagnostics.fd_axis: dimension 0 is the task dimension; the neighbourhood runs along "
                f"a location dimension of [T, B, C, H, W] (e.g. -1 or [-2, -1]), got {self.fd_axis!r}"
            )

    def due(self, step: int) -> bool:
        """Whether diagnostics run at `step`."""
        return self.every > 0 and step % self.every == 0

    def keys(self) -> list[str]:
        """The keys `compute_diagnostics` returns with this configuration (for T >= 2 tasks)."""
        out = [rundir.DIAG_FD] if self.fd else []
        if self.gradient_similarity:
            for lv in LEVELS:
                if lv in self.levels:
                    out += rundir.similarity_keys(lv)
        if self.inter_sample:
            for lv in LEVELS:
                if lv in self.inter_sample_levels:
                    out += rundir.inter_sample_keys(lv)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> DiagnosticsConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"diagnostics: unknown option(s) {unknown}; known: {sorted(known)}")
        return cls(**values)  # type: ignore[arg-type]
