"""Learning-rate schedule: linear warm-up, then constant / cosine / multistep (a LambdaLR per step)."""

from __future__ import annotations

import math

import torch

from training.config import ScheduleConfig


def lr_factor(step: int, cfg: ScheduleConfig, total_steps: int) -> float:
    """Multiplier of the base lr at `step` (0-based: the factor used by the step numbered `step`)."""
    if step < cfg.warmup_steps:
        # linear from warmup_factor at step 0 to 1 at step warmup_steps (detectron2-style warm-up)
        alpha = step / cfg.warmup_steps
        warm = cfg.warmup_factor * (1.0 - alpha) + alpha
    else:
        warm = 1.0
    if cfg.name == "cosine":
        span = max(1, total_steps - cfg.warmup_steps)
        t = min(1.0, max(0.0, (step - cfg.warmup_steps) / span))
        decay = cfg.min_lr_factor + (1.0 - cfg.min_lr_factor) * 0.5 * (1.0 + math.cos(math.pi * t))
    elif cfg.name == "multistep":
        decay = cfg.gamma ** sum(step >= m for m in cfg.milestones)
    else:
        decay = 1.0
    return warm * decay


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per optimiser step; its state_dict goes into checkpoints."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg, total_steps))
