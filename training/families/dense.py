"""The dense multi-task family: `DenseMTLNet` on NYU-v2 / CityScapes, scored with the dense metrics.

    batch  = DenseBatch(image [B,3,H,W], targets {key: [B,...]}, indices)      (training.data.dense)
    Z      = DenseMTLModel.features(batch) = DenseMTLNet.features(batch.image)  ([B,512,H/8,W/8])
    losses = DenseMTLModel.heads(Z, batch) = DenseMTLNet.heads(Z, (H, W), batch.targets)  {task: loss}

Selected by `family: dense`; the `dense:` config section (`training.families.dense_config`) names the
dataset, the reader options and the network, whose `tasks` are the losses (one task per loss by
default: `mtl.tasks` may still group them). A single-task baseline is the same trainer with one task
(`dense.model.tasks=[depth]`). With `dense.synth.train/val > 0` the synthetic stand-in is generated at
`data.root` first (`mtl_grasp.data.dense.synth.generate_once`). docs/dense.md has the whole story.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from mtl_grasp.data.dense import CityscapesReader, NpyDenseReader, dataset_spec
from mtl_grasp.data.dense.layout import CITYSCAPES19_CLASSES
from mtl_grasp.data.errors import DataError
from training.data.dense import DenseBatch, DenseDataset, collate_dense
from training.engine import distributed as D
from training.engine.protocols import Features
from training.families.dense_evaluator import DenseSplitEvaluator
from training.model.amodal_rcnn import RandomInitWarning
from training.model.dense.config import DenseModelConfig
from training.model.dense.network import DenseMTLNet

if TYPE_CHECKING:  # pragma: no cover - types only
    from training.config import TrainConfig


class DenseMTLModel:
    """`DenseMTLNet` as the engine's `MTLModel`: features and heads read a `DenseBatch`."""

    def __init__(self, net: DenseMTLNet) -> None:
        self.net = net

    @property
    def module(self) -> nn.Module:
        return self.net

    def features(self, batch: DenseBatch) -> list[Tensor]:
        return self.net.features(batch.image)

    def heads(self, Z: Features, batch: DenseBatch) -> Mapping[str, Tensor]:
        levels: Sequence[Tensor] = [Z] if isinstance(Z, Tensor) else Z
        if not self.net.training:
            raise RuntimeError("DenseMTLModel.heads: the network is in eval mode; the step needs losses")
        return self.net.heads(levels, batch.size, batch.targets)

    def shared_parameters(self) -> list[nn.Parameter]:
        return self.net.shared_parameters()

    def task_parameters(self) -> list[nn.Parameter]:
        return self.net.task_parameters()


def reader_size(cfg: TrainConfig) -> tuple[int, int]:
    """(H, W) the CityScapes-folder reader resizes to: `dense.size`, else the generated size when the
    config generates its data, else the benchmark's (256 x 512)."""
    d = cfg.dense
    size = d.size or (d.synth.size if d.synth.train > 0 else None) or dataset_spec(d.dataset).size
    return int(size[0]), int(size[1])


def open_dense_reader(cfg: TrainConfig, split: str) -> NpyDenseReader | CityscapesReader:
    """The reader of `dense.dataset` over `data.root` for `split` with the configured options."""
    d = cfg.dense
    spec = dataset_spec(d.dataset)
    classes = d.model.num_classes
    if spec.layout == "cityscapes":
        return CityscapesReader(
            cfg.data.root, split, size=reader_size(cfg), num_classes=classes,
            depth_encoding=d.depth_encoding, crowd_as_instance=d.crowd_as_instance,
        )  # fmt: skip
    if classes != spec.num_classes:  # CityScapes .npy with the 19 train ids (label_19/)
        spec = dataclasses.replace(spec, num_classes=classes, class_names=CITYSCAPES19_CLASSES)
    return NpyDenseReader(cfg.data.root, split, spec, label_dir=d.label_dir)


def _check_stored_size(reader: NpyDenseReader | CityscapesReader, size: tuple[int, int] | None) -> None:
    """`.npy` files are read at their stored size: it must be `dense.size` when that is set."""
    if size is None or isinstance(reader, CityscapesReader) or len(reader) == 0:
        return
    found = reader.read(0, allow_empty=True).image.shape[:2]
    if tuple(found) != tuple(size):
        raise DataError(
            f"dense.size: {list(size)} was asked for, but {reader.root}/{reader.split} stores "
            f"{found[0]}x{found[1]} images (the .npy layouts are not resized; set dense.size to null or "
            "to the stored size)"
        )


class DenseFamily:
    """Builds the dense family's parts from a `TrainConfig` (see `training.engine.protocols`).

    `loss_names` are the configured tasks (`dense.model.tasks`), so the family is built for a config:
    `training.families.for_config(cfg)` (None = the defaults: NYU-v2's three tasks).
    """

    def __init__(self, cfg: TrainConfig | None = None) -> None:
        model = cfg.dense.model if cfg is not None else DenseModelConfig()
        self.loss_names: tuple[str, ...] = tuple(model.tasks)

    @property
    def collate(self) -> Any:
        return collate_dense

    def prepare_data(self, cfg: TrainConfig) -> None:
        """Generate the synthetic stand-in at data.root when dense.synth asks for it (main rank)."""
        synth = cfg.dense.synth
        if synth.train <= 0:
            return
        if D.current().is_main:
            from mtl_grasp.data.dense.synth import generate_once

            generate_once(
                cfg.dense.dataset, cfg.data.root, synth.train, synth.val, seed=synth.seed,
                size=synth.size, progress=cfg.train.progress,
            )  # fmt: skip
        if D.current().enabled:
            torch.distributed.barrier()

    def build_network(self, cfg: TrainConfig, device: torch.device) -> DenseMTLNet:
        if tuple(cfg.dense.model.tasks) != self.loss_names:
            raise ValueError(
                f"dense.model.tasks: {list(cfg.dense.model.tasks)} differ from the tasks this family was "
                f"built for {list(self.loss_names)}; use training.families.for_config(cfg)"
            )
        with warnings.catch_warnings():
            if cfg.dense.model.pretrained_path is None:
                # a config without pretrained weights asks for random init on purpose (synthetic runs)
                warnings.simplefilter("ignore", RandomInitWarning)
            return DenseMTLNet(cfg.dense.model).to(device)

    def build_model(self, cfg: TrainConfig, device: torch.device) -> DenseMTLModel:
        return DenseMTLModel(self.build_network(cfg, device))

    def build_dataset(self, cfg: TrainConfig, split: str, augment: bool) -> DenseDataset:
        reader = open_dense_reader(cfg, split)
        _check_stored_size(reader, cfg.dense.size)
        return DenseDataset(
            reader, tasks=cfg.dense.model.tasks, augment=augment, seed=cfg.seed,
            skip_empty=cfg.dense.skip_empty,
        )  # fmt: skip

    def build_evaluator(self, cfg: TrainConfig, device: torch.device, split: str) -> DenseSplitEvaluator:
        return DenseSplitEvaluator(
            self.build_dataset(cfg, split, augment=False), device, cfg.train.eval_max_images,
            cfg.dense.eval_batch_size,
        )  # fmt: skip
