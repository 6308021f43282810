"""The checkpoint contract: what a training checkpoint holds, its atomic write and its ONE reader.

A checkpoint is a dict (torch.save) with the keys of `CHECKPOINT_KEYS`:
    "model", "optimizer", "scheduler", "method"   state_dicts
    "rng"        torch CPU, CUDA, numpy and python `random` states, and "loader_seed" (the data-loader
                 seed of the current epoch)
    "step"       optimiser steps done;  "epoch"
    "config"     the resolved training config as plain data; its "model" entry holds the ModelConfig
                 fields, which is all the exporter needs to rebuild the network
    "train_time_s" (optional) seconds spent in training steps so far
Who reads what: `train --resume` needs every key (`read_checkpoint(path)`); `export` and `evaluate`
need "model" and "config" only (`read_checkpoint(path, required=MODEL_KEYS)`).

The write is atomic: the bytes go to `<name>.tmp` in the same directory, are fsync'ed, then
`os.replace` renames them over the old file (and the directory is fsync'ed). A process killed at any
point leaves either the previous checkpoint or the new one, never a torn file; a stale `.tmp` is
simply overwritten by the next write. Kept copies (`step_<N>.pt`) are made the same way (`atomic_copy`).
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.rundir import checkpoint_file

CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "method", "rng", "step", "epoch", "config")
#: the keys a checkpoint needs to rebuild the trained network (export, evaluation)
MODEL_KEYS = ("model", "config")


def rng_state() -> dict[str, Any]:
    """Every global RNG the training step can draw from."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
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


def atomic_copy(src: str | Path, dst: str | Path) -> Path:
    """Copy checkpoint `src` to `dst` atomically (a copy in the same directory, fsync'ed, renamed)."""
    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, dst)
    return dst


def _listing(keys: Sequence[str]) -> str:
    quoted = [repr(k) for k in keys]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def read_checkpoint(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    required: Sequence[str] = CHECKPOINT_KEYS,
) -> dict[str, Any]:
    """Load a checkpoint file (or a run directory's checkpoints/last.pt) and check its keys.

    Returns the checkpoint dict plus "path" (the file read). ValueError, naming the file, when it is
    missing, unreadable, not a dict, lacks one of `required` or has a non-mapping "config".
    weights_only=False: checkpoints hold numpy/python RNG states, which torch's safe loader refuses;
    only load files you (or your training runs) wrote.
    """
    p = checkpoint_file(path)
    if not p.is_file():
        raise ValueError(f"checkpoint: no such file {str(p)!r}")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises several types for a torn or foreign file
        raise ValueError(
            f"checkpoint: cannot read {str(p)!r}: not a loadable torch checkpoint ({exc})"
        ) from exc
    missing = [k for k in required if k not in ckpt] if isinstance(ckpt, Mapping) else list(required)
    if missing:
        found = sorted(ckpt) if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise ValueError(
            f"checkpoint: {str(p)!r} must be a dict with {_listing(required)}; lacks {missing} (found "
            f"{found}); expected a `python -m training train` checkpoint"
        )
    if "config" in ckpt and not isinstance(ckpt["config"], Mapping):
        kind = type(ckpt["config"]).__name__
        raise ValueError(f"checkpoint: 'config' of {str(p)!r} must be a dict, got {kind}")
    out = dict(ckpt)
    out["path"] = str(p)
    return out
