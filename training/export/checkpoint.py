"""Checkpoint -> (model, metadata) for export.

The checkpoint format and its reader are `training.checkpoint`; export needs its ``"model"`` (the
AmodalRCNN state_dict) and ``"config"`` (the resolved training config, whose ``"model"`` sub-dict holds
the ModelConfig fields).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Mapping

import torch

from mtl_grasp.contract import CLASS_AGNOSTIC_NAMES, ModelMetadata
from training.checkpoint import MODEL_KEYS, read_checkpoint
from training.model.amodal_rcnn import AmodalRCNN, RandomInitWarning
from training.model.config import ModelConfig


def config_hash(config: Mapping[str, object]) -> str:
    """sha256 of the canonical JSON of a config (sorted keys, no whitespace); identifies a training setup."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def class_names_from_config(config: Mapping[str, object], num_classes: int) -> tuple[str, ...]:
    """Class names recorded in the config (top-level or data.class_names), else the defaults.

    Default: ("object",) for the class-agnostic model, "class_1".."class_K" otherwise.
    """
    data = config.get("data")
    names = config.get("class_names") or (data.get("class_names") if isinstance(data, Mapping) else None)
    if names:
        names = tuple(str(n) for n in names)
        if len(names) != num_classes:
            raise ValueError(
                f"config: class_names has {len(names)} entries {list(names)} but model.num_classes is "
                f"{num_classes}"
            )
        return names
    if num_classes == 1:
        return CLASS_AGNOSTIC_NAMES
    return tuple(f"class_{i}" for i in range(1, num_classes + 1))


def metadata_from_config(config: Mapping[str, object]) -> ModelMetadata:
    """The ONNX metadata of a model trained with `config` (resolved training config dict)."""
    model_cfg = model_config_from(config)
    return ModelMetadata(
        class_names=class_names_from_config(config, model_cfg.num_classes),
        train_image_size=model_cfg.image_size,
        config_hash=config_hash(config),
    )


def model_config_from(config: Mapping[str, object]) -> ModelConfig:
    model = config.get("model")
    if not isinstance(model, Mapping):
        raise ValueError(
            f"config: expected a 'model' sub-dict with ModelConfig fields, got {type(model).__name__}"
        )
    return ModelConfig.from_dict(dict(model))


def build_model(
    config: Mapping[str, object], state_dict: Mapping[str, torch.Tensor], source: str
) -> AmodalRCNN:
    """AmodalRCNN of `config` with `state_dict` loaded (strictly), in eval mode."""
    model_cfg = model_config_from(config)
    # The weights come from the checkpoint; the ImageNet file of the training machine is not needed.
    model_cfg.pretrained_path = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomInitWarning)
        model = AmodalRCNN(model_cfg)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{source}: state_dict does not fit the configured model: {exc}") from exc
    return model.eval()


def model_from_checkpoint(path: str | os.PathLike[str]) -> tuple[AmodalRCNN, dict]:
    """(model in eval mode, resolved training config) of a checkpoint file or run directory.

    Reads with the one checkpoint reader (`training.checkpoint.read_checkpoint`), needing only the
    "model" and "config" entries.
    """
    ckpt = read_checkpoint(path, required=MODEL_KEYS)
    config = dict(ckpt["config"])
    family = config.get("family", "amodal")
    if family != "amodal":
        raise ValueError(
            f"checkpoint {ckpt['path']!r}: a {family!r}-family model; ONNX export (mtl_grasp.contract) and "
            "the detector's frame predictor (evaluate --corruptions) are for the bin-picking detector "
            "only. Score it with `python -m training evaluate --checkpoint` (without --corruptions)"
        )
    return build_model(config, ckpt["model"], source=f"checkpoint {ckpt['path']!r}"), config
