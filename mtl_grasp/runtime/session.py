"""onnxruntime session options that matter for latency, as one validated, documented value.

`SessionConfig` is what `Detector(..., session=...)` takes (a `SessionConfig`, a mapping with its field
names, e.g. from YAML, or None for the defaults). What each option gave on the 2-core CPU is in
docs/benchmarks.md ("Runtime: session options"); the defaults are the measured best there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import onnxruntime as ort

from mtl_grasp.suggest import did_you_mean

GRAPH_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
EXECUTION_MODES = {
    "sequential": ort.ExecutionMode.ORT_SEQUENTIAL,
    "parallel": ort.ExecutionMode.ORT_PARALLEL,
}


@dataclass(frozen=True)
class SessionConfig:
    """onnxruntime `SessionOptions` the runtime sets.

    Fields:
        graph_optimization: "disable" | "basic" | "extended" | "all" (constant folding, node fusions,
            layout transformation to NCHWc on CPU; "all" also fuses QDQ pairs into int8 kernels).
        intra_op_threads: threads inside one operator (None: onnxruntime's default = physical cores).
        inter_op_threads: threads across independent operators; only used with execution_mode
            "parallel" (None: onnxruntime's default).
        execution_mode: "sequential" or "parallel" (runs independent branches concurrently; the two
            backbones are the only large independent branches of this model).
        memory_arena: keep freed CPU buffers in onnxruntime's arena for reuse (dynamic shapes change
            every frame here, so the arena can also grow).
        memory_pattern: pre-plan allocations from the previous run's shapes (helps with fixed shapes).
        spin_wait: let idle intra-op threads spin (onnxruntime's `session.intra_op.allow_spinning`,
            on in onnxruntime). Off here: a robot's CPU is shared with other nodes, and on the shared
            2-core machine spinning made the INT8 model 1.5x slower (docs/benchmarks.md, "Runtime").
    """

    graph_optimization: str = "all"
    intra_op_threads: int | None = None
    inter_op_threads: int | None = None
    execution_mode: str = "sequential"
    memory_arena: bool = True
    memory_pattern: bool = True
    spin_wait: bool = False

    def __post_init__(self) -> None:
        _check_choice("graph_optimization", self.graph_optimization, GRAPH_LEVELS)
        _check_choice("execution_mode", self.execution_mode, EXECUTION_MODES)
        for name in ("intra_op_threads", "inter_op_threads"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"session.{name}: expected None or an int >= 1, got {value!r}")
        for name in ("memory_arena", "memory_pattern", "spin_wait"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"session.{name}: expected true or false, got {getattr(self, name)!r}")

    @classmethod
    def from_value(cls, value: SessionConfig | Mapping[str, object] | None) -> SessionConfig:
        """A `SessionConfig` from itself, a mapping of its fields (unknown keys: error), or None."""
        if value is None:
            return cls()
        if isinstance(value, SessionConfig):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(
                f"session: expected a SessionConfig, a mapping or None, got {type(value).__name__}"
            )
        known = [f.name for f in fields(cls)]
        for key in value:
            if key not in known:
                hint = did_you_mean(key, known)
                raise ValueError(f"session: unknown option {key!r}{hint} (known: {known})")
        fields_given: dict[str, Any] = dict(value)  # values are checked in __post_init__
        return cls(**fields_given)

    def to_ort(self) -> ort.SessionOptions:
        """The onnxruntime `SessionOptions` of this configuration."""
        options = ort.SessionOptions()
        options.graph_optimization_level = GRAPH_LEVELS[self.graph_optimization]
        options.execution_mode = EXECUTION_MODES[self.execution_mode]
        if self.intra_op_threads is not None:
            options.intra_op_num_threads = self.intra_op_threads
        if self.inter_op_threads is not None:
            options.inter_op_num_threads = self.inter_op_threads
        options.enable_cpu_mem_arena = self.memory_arena
        options.enable_mem_pattern = self.memory_pattern
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spin_wait else "0")
        return options


def _check_choice(name: str, value: object, choices: Mapping[str, object]) -> None:
    if value not in choices:
        hint = did_you_mean(value, choices)
        raise ValueError(f"session.{name}: expected one of {list(choices)}, got {value!r}{hint}")
