"""The training engine: `Trainer` (a short loop) + hooks, steps, checkpoints, evaluation, DDP plumbing.

Entry point for a whole run: `training.engine.run.train(cfg, resume=None)`.
"""

from training.engine.checkpoint import atomic_save, load_checkpoint
from training.engine.step import StepResult, TrainStep
from training.engine.trainer import Trainer, TrainingDivergedError

__all__ = ["StepResult", "TrainStep", "Trainer", "TrainingDivergedError", "atomic_save", "load_checkpoint"]
