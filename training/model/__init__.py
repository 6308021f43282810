"""training.model: the RGB-D amodal multi-task network (see docs/model.md).

`LOSS_NAMES` is importable without torch work; the torch-backed names are imported on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .names import LOSS_NAMES

if TYPE_CHECKING:
    from .amodal_rcnn import AmodalRCNN, RandomInitWarning
    from .config import ModelConfig

__all__ = ["LOSS_NAMES", "AmodalRCNN", "ModelConfig", "RandomInitWarning"]

_LAZY = {"AmodalRCNN": "amodal_rcnn", "RandomInitWarning": "amodal_rcnn", "ModelConfig": "config"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
