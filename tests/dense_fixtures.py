"""Tiny dense-family configs on the synthetic stand-in, shared by the dense tests (not a test module)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: (dataset, tasks, classes, generated size): the smallest images the stride-8 network and its
#: pyramid pooling handle comfortably
NYU = ("nyuv2", ["segmentation", "depth", "normal"], 13, [24, 32])
CITYSCAPES3 = ("cityscapes3", ["segmentation", "depth", "instance"], 7, [24, 48])


def tiny_dense(root: Path, run_dir: Path, dataset: tuple = NYU, **sections: Any) -> dict[str, Any]:
    """A plain config dict: the dense family on a synthetic stand-in generated at `root` on first use
    (8 train / 4 val images), slim heads, batch 2, CPU, no workers, no progress bar, no checkpoints."""
    name, tasks, classes, size = dataset
    cfg: dict[str, Any] = {
        "family": "dense",
        "seed": 1,
        "run_dir": str(run_dir),
        "data": {"root": str(root), "num_workers": 0, "augment": False},
        "dense": {
            "dataset": name,
            "synth": {"train": 8, "val": 4, "size": size},
            "model": {"tasks": tasks, "num_classes": classes, "head_channels": 8},
            "eval_batch_size": 4,
        },
        "optim": {"name": "adam", "lr": 1e-3},
        "schedule": {"warmup_steps": 0, "warmup_factor": 1.0},
        "train": {"steps": 2, "batch_size": 2, "device": "cpu", "progress": False, "checkpoint_every": 0},
    }
    for key, value in sections.items():
        if isinstance(value, dict):
            cfg.setdefault(key, {}).update(value)
        else:
            cfg[key] = value
    return cfg
