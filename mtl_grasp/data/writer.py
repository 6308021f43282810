"""Write one view in MetaGraspNet's simulated layout (file names from :mod:`mtl_grasp.data.layout`).

Both generators use it; the bytes depend only on the arrays (PNG by opencv, npz with fixed zip
timestamps, JSON with sorted insertion order), so equal scenes give byte-identical files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mtl_grasp.data import layout

__all__ = ["ViewData", "write_json", "write_view"]


@dataclass
class ViewData:
    """One view's content. ``depth_cm`` float32 with NaN holes; ``instances``/``semantic`` uint16;
    ``amodal`` bool [N, H, W] (index i <-> instance id i + 1); ``scene`` is the optional
    ``<v>_scene.json`` (camera pose, object poses; physics engine only)."""

    rgb: np.ndarray
    depth_cm: np.ndarray
    instances: np.ndarray
    semantic: np.ndarray
    amodal: np.ndarray
    order: dict
    camera: dict
    scene: dict | None = None


def write_json(path: Path, data) -> None:
    """Indented JSON with a final newline (stable bytes for equal data)."""
    path.write_text(json.dumps(data, indent=1) + "\n")


def write_view(scene_dir: Path, view: int, data: ViewData) -> None:
    """Write ``data`` as viewpoint ``view`` of ``scene_dir`` (created if missing)."""
    files = layout.ViewFiles(Path(scene_dir), view)
    files.scene_dir.mkdir(parents=True, exist_ok=True)
    ok, png = cv2.imencode(".png", cv2.cvtColor(data.rgb, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - opencv only fails here on exotic builds
        raise RuntimeError(f"opencv could not encode {files.rgb}")
    files.rgb.write_bytes(png.tobytes())
    arrays: dict[str, np.ndarray] = {
        layout.DEPTH_KEY: data.depth_cm.astype(np.float32),
        layout.INSTANCES_KEY: data.instances.astype(np.uint16),
        layout.SEMANTIC_KEY: data.semantic.astype(np.uint16),
        layout.AMODAL_KEYS[0]: data.amodal.astype(bool),
    }
    files.npz.write_bytes(layout.npz_bytes(arrays))
    write_json(files.order, data.order)
    write_json(files.camera, data.camera)
    if data.scene is not None:
        write_json(files.scene, data.scene)
