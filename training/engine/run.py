"""Config -> a finished run: data (generated when the config asks), model, evaluator, trainer, resume."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from training.config import TrainConfig
from training.engine import distributed as D
from training.engine.build import seed_everything, select_device
from training.engine.checkpoint import load_checkpoint
from training.engine.evaluator import Evaluator
from training.engine.trainer import Trainer


def prepare_data(cfg: TrainConfig) -> None:
    """Generate the synthetic dataset at data.root when data.synth.scenes > 0 and it is not there yet."""
    root = Path(cfg.data.root)
    if cfg.data.synth.scenes <= 0 or (root / "splits.json").is_file():
        return
    if D.current().is_main:
        from mtl_grasp.data.synth import generate_dataset

        synth = cfg.data.synth
        generate_dataset(root, synth.scenes, image_size=synth.image_size, seed=synth.seed)
    if D.current().enabled:
        torch.distributed.barrier()


def build_dataset(cfg: TrainConfig, split: str, augment: bool):
    from training.data import MetaGraspNetDataset

    d = cfg.data
    return MetaGraspNetDataset(
        d.root, split=split, splits_file=d.splits_file, image_size=cfg.model.image_size, augment=augment,
        class_agnostic=d.class_agnostic, min_visible_area=d.min_visible_area, seed=cfg.seed,
    )  # fmt: skip


def build_gt(cfg: TrainConfig, split: str) -> dict[str, Any]:
    """The COCO ground truth of `split` at full resolution (same image ids as the dataset)."""
    from mtl_grasp.data.coco import build_coco

    d = cfg.data
    return build_coco(
        d.root, split, splits_file=d.splits_file, class_agnostic=d.class_agnostic,
        min_visible_area=d.min_visible_area,
    )  # fmt: skip


def build_model(cfg: TrainConfig, device: torch.device) -> torch.nn.Module:
    from training.model import AmodalRCNN, RandomInitWarning

    with warnings.catch_warnings():
        if cfg.model.pretrained_path is None:
            # a config without pretrained weights asks for random init on purpose (synthetic runs)
            warnings.simplefilter("ignore", RandomInitWarning)
        return AmodalRCNN(cfg.model).to(device)


def build_evaluator(cfg: TrainConfig, device: torch.device, split: str | None = None) -> Evaluator:
    split = split or cfg.data.val_split
    return Evaluator(
        build_dataset(cfg, split, augment=False), build_gt(cfg, split), device, cfg.train.amp,
        cfg.train.eval_max_images,
    )  # fmt: skip


def train(
    cfg: TrainConfig, resume: str | Path | None = None, checkpoint: dict | None = None
) -> dict[str, Any]:
    """Train per `cfg` (continuing `checkpoint`, already loaded from `resume`, when given)."""
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    dist = D.init_from_env("cuda" if cfg.train.device != "cpu" and torch.cuda.is_available() else "cpu")
    device = select_device(cfg.train.device, dist.local_rank)
    run_dir = Path(cfg.run_dir)
    if resume is None and (run_dir / "checkpoints" / "last.pt").exists():
        raise ValueError(
            f"run_dir: {str(run_dir)!r} already holds a run (checkpoints/last.pt); continue it with "
            f"`--resume {run_dir}` or choose another run_dir=..."
        )
    prepare_data(cfg)
    seed_everything(cfg.seed)
    from training.data import collate_batch
    from training.model import LOSS_NAMES

    model = build_model(cfg, device)
    evaluator = build_evaluator(cfg, device) if dist.is_main else None
    train_set = build_dataset(cfg, cfg.data.train_split, augment=cfg.data.augment)
    trainer = Trainer(
        cfg, model, train_set, collate_batch, device, evaluator=evaluator, loss_names=list(LOSS_NAMES)
    )
    if resume is not None:
        trainer.resume(checkpoint if checkpoint is not None else load_checkpoint(resume, map_location=device))
    try:
        summary = trainer.fit()
        if dist.enabled:
            # no rank may tear the group down while another still talks to it (gloo aborts otherwise)
            torch.distributed.barrier()
        return summary
    finally:
        if dist.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
