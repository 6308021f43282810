"""The MTL method library: registry + one small module per method (see base.py for the interface)."""

from training.mtl.base import (
    Combination,
    GradientCombination,
    Level,
    LossWeighting,
    MTLMethod,
    OptimizerSpec,
    StepReport,
)
from training.mtl.context import NonFiniteError, StepContext
from training.mtl.registry import build, get, names, register

__all__ = [
    "Combination",
    "GradientCombination",
    "Level",
    "LossWeighting",
    "MTLMethod",
    "NonFiniteError",
    "OptimizerSpec",
    "StepContext",
    "StepReport",
    "build",
    "get",
    "names",
    "register",
]
