"""Checkpoints: what they hold, the atomic write, and RNG capture/restore.

A checkpoint is a dict with keys "model", "optimizer", "scheduler", "method" (state_dicts), "rng"
(torch CPU, CUDA, numpy, python `random`, and the data-loader seed of the current epoch), "step"
(optimiser steps done), "epoch" and "config" (the resolved config as plain data; its "model" entry
holds the ModelConfig fields, which is all the exporter needs to rebuild the network).

The write is atomic: the bytes go to `<name>.tmp` in the same directory, are fsync'ed, then
`os.replace` renames them over the old file (and the directory is fsync'ed). A process killed at any
point leaves either the previous checkpoint or the new one, never a torn file; a stale `.tmp` is
simply overwritten by the next write.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "method", "rng", "step", "epoch", "config")


def rng_state() -> dict[str, Any]:
    """Every global RNG the training step can draw from."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def atomic_save(obj: Any, path: str | Path) -> Path:
    """torch.save `obj` to `path` so that a crash never leaves a partial file at `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:  # make the rename itself durable (not possible on every filesystem)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a training checkpoint; errors name the file and what is missing."""
    p = Path(path)
    if p.is_dir():
        p = p / "checkpoints" / "last.pt" if (p / "checkpoints").is_dir() else p / "last.pt"
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint: no such file {str(p)!r}")
    try:
        # weights_only=False: the checkpoint holds numpy/python RNG states; only load files you wrote.
        ckpt = torch.load(p, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises several types for a torn or foreign file
        raise ValueError(f"checkpoint {str(p)!r}: not a loadable torch checkpoint ({exc})") from exc
    if not isinstance(ckpt, dict):
        raise ValueError(f"checkpoint {str(p)!r}: expected a dict, got {type(ckpt).__name__}")
    missing = [k for k in CHECKPOINT_KEYS if k not in ckpt]
    if missing:
        raise ValueError(
            f"checkpoint {str(p)!r}: lacks {missing}; expected a `python -m training train` checkpoint"
        )
    ckpt["path"] = str(p)
    return ckpt
