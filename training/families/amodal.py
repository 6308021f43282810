"""The RGB-D bin-picking family: AmodalRCNN on MetaGraspNet-layout data, evaluated with COCO metrics.

    batch  = RGBDBatch(rgb [B,3,H,W], depth [B,1,H,W], targets)     (training.data.batch)
    Z      = AmodalMTLModel.features(batch)  = AmodalRCNN.features(rgb, depth)   (FPN levels P2..P6)
    losses = AmodalMTLModel.heads(Z, batch)  = AmodalRCNN.heads(Z, (H, W), targets)  (the 7 LOSS_NAMES)

`AmodalMTLModel` adapts the network to the engine's `MTLModel` protocol without changing its own
interface (export and the runtime call `features(rgb, depth)` and `forward`), and checkpoints keep the
network's own state_dict keys.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from training.data.batch import RGBDBatch
from training.data.dataset import MetaGraspNetDataset, collate_batch
from training.engine import distributed as D
from training.engine.protocols import Features
from training.families.coco_evaluator import CocoEvaluator
from training.model.amodal_rcnn import AmodalRCNN, RandomInitWarning
from training.model.names import LOSS_NAMES

if TYPE_CHECKING:  # pragma: no cover - types only
    from training.config import TrainConfig


class AmodalMTLModel:
    """`AmodalRCNN` as the engine's `MTLModel`: features and heads read an `RGBDBatch`."""

    def __init__(self, net: AmodalRCNN) -> None:
        self.net = net

    @property
    def module(self) -> nn.Module:
        return self.net

    def features(self, batch: RGBDBatch) -> list[Tensor]:
        return self.net.features(batch.rgb, batch.depth)

    def heads(self, Z: Features, batch: RGBDBatch) -> Mapping[str, Tensor]:
        levels = [Z] if isinstance(Z, Tensor) else list(Z)
        out = self.net.heads(levels, batch.image_size, batch.targets)
        if not isinstance(out, Mapping):
            raise RuntimeError("AmodalMTLModel.heads: the network is in eval mode; the step needs losses")
        return out

    def shared_parameters(self) -> list[nn.Parameter]:
        return self.net.shared_parameters()

    def task_parameters(self) -> list[nn.Parameter]:
        return self.net.task_parameters()


class AmodalFamily:
    """Builds the bin-picking family's parts from a `TrainConfig` (see `training.engine.protocols`)."""

    loss_names: tuple[str, ...] = LOSS_NAMES

    def __init__(self, cfg: TrainConfig | None = None) -> None:
        """Nothing depends on the config until a builder is called (`cfg` is accepted for the registry)."""

    @property
    def collate(self) -> Any:
        return collate_batch

    def prepare_data(self, cfg: TrainConfig) -> None:
        """Generate the synthetic dataset at data.root when data.synth.scenes > 0 and it is not there yet
        (`data.synth.engine`: physics bins by default, or the analytic fixture)."""
        from mtl_grasp.data.layout import SPLITS_FILE

        root = Path(cfg.data.root)
        if cfg.data.synth.scenes <= 0 or (root / SPLITS_FILE).is_file():
            return
        if D.current().is_main:
            from mtl_grasp.data.generate import generate

            s = cfg.data.synth
            objects = (s.objects[0], s.objects[1]) if s.engine == "physics" else None
            generate(root, s.scenes, engine=s.engine, image_size=s.image_size, seed=s.seed, views=s.views,
                     objects=objects, workers=s.workers or None, progress=True)  # fmt: skip
        if D.current().enabled:
            torch.distributed.barrier()

    def build_network(self, cfg: TrainConfig, device: torch.device) -> AmodalRCNN:
        with warnings.catch_warnings():
            if cfg.model.pretrained_path is None:
                # a config without pretrained weights asks for random init on purpose (synthetic runs)
                warnings.simplefilter("ignore", RandomInitWarning)
            return AmodalRCNN(cfg.model).to(device)

    def build_model(self, cfg: TrainConfig, device: torch.device) -> AmodalMTLModel:
        return AmodalMTLModel(self.build_network(cfg, device))

    def build_dataset(self, cfg: TrainConfig, split: str, augment: bool) -> MetaGraspNetDataset:
        d = cfg.data
        return MetaGraspNetDataset(
            d.root, split=split, splits_file=d.splits_file, image_size=cfg.model.image_size,
            augment=augment, class_agnostic=d.class_agnostic, min_visible_area=d.min_visible_area,
            seed=cfg.seed,
        )  # fmt: skip

    def build_gt(self, cfg: TrainConfig, split: str) -> dict[str, Any]:
        """The COCO ground truth of `split` at full resolution (same image ids as the dataset)."""
        from mtl_grasp.data.coco import build_coco

        d = cfg.data
        return build_coco(
            d.root, split, splits_file=d.splits_file, class_agnostic=d.class_agnostic,
            min_visible_area=d.min_visible_area,
        )  # fmt: skip

    def build_evaluator(self, cfg: TrainConfig, device: torch.device, split: str) -> CocoEvaluator:
        return CocoEvaluator(
            self.build_dataset(cfg, split, augment=False), self.build_gt(cfg, split), device, cfg.train.amp,
            cfg.train.eval_max_images,
        )  # fmt: skip

