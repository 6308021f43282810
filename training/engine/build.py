"""Config -> the objects of a run: device, task spec, MTL method, optimiser, datasets, evaluator."""

from __future__ import annotations

import random

import numpy as np
import torch

from training.config import TrainConfig
from training.mtl import MTLMethod, OptimizerSpec, build
from training.mtl.optimizers import build_optimizer
from training.tasks import TaskSpec


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def select_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' -> CUDA when available; 'cuda' without a GPU is an error naming train.device."""
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ValueError("train.device: 'cuda' requested but torch sees no CUDA device; use cpu or auto")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def build_task_spec(cfg: TrainConfig) -> TaskSpec:
    return TaskSpec.from_mapping(cfg.mtl.tasks) if cfg.mtl.tasks else TaskSpec.one_per_loss()


def build_method(cfg: TrainConfig, num_tasks: int) -> MTLMethod:
    return build(cfg.mtl.name, num_tasks, level=cfg.mtl.level, **cfg.mtl.hparams)


def optimizer_spec(cfg: TrainConfig) -> OptimizerSpec:
    o = cfg.optim
    return OptimizerSpec(
        name=o.name, lr=o.lr, momentum=o.momentum, betas=tuple(o.betas), eps=o.eps,
        weight_decay=o.weight_decay,
    )


def build_optimizer_for(
    cfg: TrainConfig, model: torch.nn.Module, method: MTLMethod
) -> torch.optim.Optimizer:
    """The method's own optimiser if it replaces the standard one, else `build_optimizer`.

    The method's learnable parameters (e.g. UW's log-variances) join as their own group (no weight
    decay, `optim.method_lr` or the base lr).
    """
    spec = optimizer_spec(cfg)
    shared, task = list(model.shared_parameters()), list(model.task_parameters())
    method_params = list(method.method_parameters())
    method_group = {"params": method_params, "weight_decay": 0.0, "lr": cfg.optim.method_lr or cfg.optim.lr}
    opt = method.configure_optimizer(shared, task, spec)
    if opt is None:
        groups: list = [{"params": shared + task}]
        if method_params:
            groups.append(method_group)
        return build_optimizer(spec, groups)
    held = {id(p) for g in opt.param_groups for p in g["params"]}
    missing = [p for p in method_params if id(p) not in held]
    if missing:
        opt.add_param_group({**method_group, "params": missing})
    return opt
