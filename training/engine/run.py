"""`train(cfg)`: a whole run in this process (or this torchrun rank), from a config to a finished run
directory; the parts come from `training.engine.assembly`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from training import families
from training.checkpoint import read_checkpoint
from training.config import TrainConfig, dump_config
from training.engine import distributed as D
from training.engine.assembly import (
    build_method,
    build_run,
    build_task_spec,
    build_trainer,
    seed_everything,
    select_device,
)
from training.rundir import RunDir


def train(
    cfg: TrainConfig, resume: str | Path | None = None, checkpoint: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Train per `cfg` (continuing `checkpoint`, already read from `resume`, when given)."""
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    dist = D.init_from_env("cuda" if cfg.train.device != "cpu" and torch.cuda.is_available() else "cpu")
    device = select_device(cfg.train.device, dist.local_rank)
    run_dir = RunDir(cfg.run_dir)
    if resume is None and run_dir.last_checkpoint.exists():
        raise ValueError(
            f"run_dir: {str(run_dir.root)!r} already holds a run (checkpoints/last.pt); continue it with "
            f"`--resume {run_dir.root}` or choose another run_dir=..."
        )
    family = families.for_config(cfg)
    # fail fast: a misspelt method, level or hyperparameter is reported before minutes of data generation
    build_method(cfg, len(build_task_spec(cfg, family.loss_names)))
    family.prepare_data(cfg)
    seed_everything(cfg.seed)
    trainer = build_trainer(build_run(cfg, device, family))
    if resume is not None:
        trainer.load_state_dict(checkpoint if checkpoint is not None else read_checkpoint(resume, device))
    if dist.is_main:
        run_dir.root.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, run_dir.config)
    try:
        summary = trainer.fit()
        if dist.enabled:
            # no rank may tear the group down while another still talks to it (gloo aborts otherwise)
            torch.distributed.barrier()
        return summary
    finally:
        if dist.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
