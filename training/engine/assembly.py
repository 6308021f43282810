"""The one place that turns a config into the built parts of a run, and the parts into a `Trainer`.

    family  = training.families.get("amodal")                   # a ModelFamily (below)
    parts   = build_run(cfg, device, family)                    # model, task spec, method, optimiser,
                                                                # schedule, step, loader, evaluator, hooks
    trainer = build_trainer(parts)
    trainer.fit()

Benchmarks and tests that need a step without a whole run use the same builders: `build_method`,
`build_optimizer` (the only place an optimiser is constructed from a method) and `build_step`.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from training.config import TrainConfig, to_dict
from training.diagnostics.hook import DiagnosticsHook
from training.engine import distributed as D
from training.engine.hooks import Checkpoint, Evaluate, Hook, MetricsCSV, Plots, Progress, TensorBoard
from training.engine.protocols import Batch, Evaluator, MTLModel
from training.engine.sampler import TrainLoader
from training.engine.schedule import build_scheduler
from training.engine.step import TrainStep
from training.engine.trainer import Trainer
from training.mtl import MTLMethod, OptimizerSpec, build
from training.mtl import optimizers as plain_optimizers
from training.tasks import TaskSpec


class ModelFamily(Protocol):
    """What a model family provides to the assembly (the bin-picking one: `training.families.amodal`)."""

    #: the names `MTLModel.heads` returns in training mode, in logging order
    loss_names: tuple[str, ...]

    @property
    def collate(self) -> Callable[[list[Any]], Batch]:
        """Items of `build_dataset` -> one training `Batch`."""
        ...

    def prepare_data(self, cfg: TrainConfig) -> None:
        """Make the configured dataset available (e.g. generate synthetic data); called on every rank."""
        ...

    def build_model(self, cfg: TrainConfig, device: torch.device) -> MTLModel: ...

    def build_dataset(self, cfg: TrainConfig, split: str, augment: bool) -> torch.utils.data.Dataset[Any]: ...

    def build_evaluator(self, cfg: TrainConfig, device: torch.device, split: str) -> Evaluator: ...


# ---- process -----------------------------------------------------------------------------------
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


# ---- the MTL parts -----------------------------------------------------------------------------
def build_task_spec(cfg: TrainConfig, loss_names: Sequence[str]) -> TaskSpec:
    """`mtl.tasks` ({task: [loss names]}) or one task per loss."""
    if cfg.mtl.tasks:
        return TaskSpec.from_mapping(cfg.mtl.tasks, loss_names)
    return TaskSpec.one_per_loss(loss_names)


def build_method(cfg: TrainConfig, num_tasks: int) -> MTLMethod:
    return build(cfg.mtl.name, num_tasks, level=cfg.mtl.level, **cfg.mtl.hparams)


def optimizer_spec(cfg: TrainConfig) -> OptimizerSpec:
    o = cfg.optim
    return OptimizerSpec(
        name=o.name, lr=o.lr, momentum=o.momentum, betas=(o.betas[0], o.betas[1]), eps=o.eps,
        weight_decay=o.weight_decay,
    )  # fmt: skip


def build_optimizer(
    method: MTLMethod, model: MTLModel, spec: OptimizerSpec, method_lr: float | None = None
) -> torch.optim.Optimizer:
    """The method's own optimiser if it replaces the standard one, else `optimizers.build_optimizer`.

    The method's learnable parameters (e.g. UW's log-variances) join as their own group (no weight
    decay, `method_lr` or the base lr).
    """
    shared, task = list(model.shared_parameters()), list(model.task_parameters())
    method_params = list(method.method_parameters())
    method_group = {"params": method_params, "weight_decay": 0.0, "lr": method_lr or spec.lr}
    opt = method.configure_optimizer(shared, task, spec)
    if opt is None:
        groups: list[dict[str, Any]] = [{"params": shared + task}]
        if method_params:
            groups.append(method_group)
        return plain_optimizers.build_optimizer(spec, groups)
    held = {id(p) for g in opt.param_groups for p in g["params"]}
    missing = [p for p in method_params if id(p) not in held]
    if missing:
        opt.add_param_group({**method_group, "params": missing})
    return opt


def build_step(
    cfg: TrainConfig, model: MTLModel, loss_names: Sequence[str], device: torch.device
) -> TrainStep:
    """Task spec, method (on `device`), optimiser and the step of `cfg` for `model`."""
    task_spec = build_task_spec(cfg, loss_names)
    method = build_method(cfg, len(task_spec)).to(device)
    optimizer = build_optimizer(method, model, optimizer_spec(cfg), cfg.optim.method_lr)
    return TrainStep(
        model, task_spec, method, optimizer, device, amp=cfg.train.amp, grad_clip=cfg.optim.grad_clip,
        batched_vjp=cfg.mtl.batched_vjp, seed=cfg.seed,
    )  # fmt: skip


# ---- hooks -------------------------------------------------------------------------------------
def build_hooks(
    cfg: TrainConfig, step: TrainStep, loss_names: Sequence[str], evaluator: Evaluator | None, main: bool
) -> list[Hook]:
    """Diagnostics (every rank), then on the main rank: metrics.csv, TensorBoard, progress bar,
    evaluation, checkpoints, plots (in that order; `on_end` runs in reverse)."""
    hooks: list[Hook] = []
    diagnostics = DiagnosticsHook(cfg.diagnostics) if cfg.diagnostics.every > 0 else None
    if diagnostics is not None:
        hooks.append(diagnostics)
    if not main:
        return hooks
    method, tasks = step.method, list(step.task_spec.names)
    tb = TensorBoard(tasks)
    hooks += [MetricsCSV(loss_names, tasks, diagnostics.keys if diagnostics else []), tb]
    hooks.append(Progress(cfg.train.progress, desc=f"train {method.name}"))
    if evaluator is not None:
        level = method.level.value if method.level is not None else None
        summary = {"method": method.name, "level": level, "seed": cfg.seed}
        hooks.append(Evaluate(evaluator, cfg.train.eval_every, cfg.train.eval_at_start, tb, summary))
    hooks += [Checkpoint(cfg.train.checkpoint_every, cfg.train.keep_checkpoints), Plots(method.name)]
    return hooks


# ---- the run -----------------------------------------------------------------------------------
@dataclass
class RunParts:
    """Everything `build_run` built (the trainer is `build_trainer(parts)`)."""

    cfg: TrainConfig
    device: torch.device
    step: TrainStep
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loader: TrainLoader
    evaluator: Evaluator | None
    hooks: list[Hook]


def build_run(
    cfg: TrainConfig,
    device: torch.device,
    family: ModelFamily,
    hooks: Sequence[Hook] | None = None,
    evaluate: bool = True,
) -> RunParts:
    """Config -> built parts. `hooks=None` installs `build_hooks(...)`; a list replaces them (benches
    and tests pass their own). The evaluator is built on the main rank when `evaluate`."""
    dist = D.current()
    model = family.build_model(cfg, device)
    step = build_step(cfg, model, family.loss_names, device)
    scheduler = build_scheduler(step.optimizer, cfg.schedule, cfg.train.steps)
    evaluator = family.build_evaluator(cfg, device, cfg.data.val_split) if evaluate and dist.is_main else None
    loader = TrainLoader(
        family.build_dataset(cfg, cfg.data.train_split, augment=cfg.data.augment), family.collate,
        cfg.train.batch_size, cfg.seed, num_workers=cfg.data.num_workers,
        pin_memory=cfg.data.pin_memory and device.type == "cuda", rank=dist.rank, world_size=dist.world_size,
    )  # fmt: skip
    if dist.is_main:
        for msg in step.method.schedule_warnings(cfg.train.steps, loader.batches_per_epoch):
            warnings.warn(msg, stacklevel=2)  # e.g. DWA's warm-up outlasting the run
    if hooks is None:
        hooks = build_hooks(cfg, step, family.loss_names, evaluator, dist.is_main)
    return RunParts(cfg, device, step, scheduler, loader, evaluator, list(hooks))


def build_trainer(parts: RunParts) -> Trainer:
    cfg = parts.cfg
    return Trainer(
        parts.step, parts.scheduler, parts.loader, parts.hooks, total_steps=cfg.train.steps,
        run_dir=cfg.run_dir, config=to_dict(cfg), max_nonfinite=cfg.train.max_nonfinite,
    )  # fmt: skip
