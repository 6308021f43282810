"""The training engine: the one step (`TrainStep`), a trainer that only loops (`Trainer`), hooks.

A run is assembled from a config in one place, `training.engine.assembly` (`build_trainer`); the entry
point for a whole run is `training.engine.run.train(cfg, resume=None)`. A model family plugs in through
the protocols of `training.engine.protocols` (see docs/architecture.md).
"""

from training.engine.hooks import Hook
from training.engine.step import StepResult, StepState, TrainStep
from training.engine.trainer import Trainer, TrainingDivergedError

__all__ = ["Hook", "StepResult", "StepState", "TrainStep", "Trainer", "TrainingDivergedError"]
