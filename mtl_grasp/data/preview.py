"""A contact sheet of generated (or real) views: RGB | depth | visible instances | amodal overlay.

Reads the views back through :mod:`mtl_grasp.data.reader`, so it shows what training sees. One row per
view; depth is colour-mapped over the view's valid range (missing returns black); instances get one
colour each; the amodal panel draws each object's amodal outline in its colour over a darkened RGB and
fills its occluded part (amodal and not visible) semi-transparently.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mtl_grasp.data.reader import Sample, discover_views, load_view

__all__ = ["contact_sheet", "write_preview"]

PANELS = ("RGB", "depth (cm)", "visible", "amodal + occluded")


def _palette(n: int) -> np.ndarray:
    hues = (np.arange(n) * 0.618034 % 1.0 * 180).astype(np.uint8)
    hsv = np.stack([hues, np.full(n, 200, np.uint8), np.full(n, 255, np.uint8)], 1)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]


def _depth_panel(depth_m: np.ndarray) -> np.ndarray:
    valid = depth_m > 0
    if not valid.any():
        return np.zeros((*depth_m.shape, 3), np.uint8)
    lo, hi = np.percentile(depth_m[valid], [1, 99])
    scaled = np.clip((depth_m - lo) / max(hi - lo, 1e-6), 0, 1)
    img = cv2.applyColorMap((255 - scaled * 255).astype(np.uint8), cv2.COLORMAP_TURBO)[:, :, ::-1]
    img[~valid] = 0
    return img


def _panels(s: Sample) -> list[np.ndarray]:
    n = len(s.object_ids)
    colours = _palette(max(n, 1))
    visible = np.zeros_like(s.rgb)
    overlay = (s.rgb * 0.45).astype(np.float32)
    for k in range(n):
        visible[s.visible_masks[k]] = colours[k]
        hidden = s.amodal_masks[k] & ~s.visible_masks[k]
        overlay[hidden] = 0.4 * overlay[hidden] + 0.6 * colours[k]
    overlay = overlay.astype(np.uint8)
    for k in range(n):
        contours, _ = cv2.findContours(
            s.amodal_masks[k].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
        )
        cv2.drawContours(overlay, contours, -1, tuple(int(c) for c in colours[k]), 1)
    return [s.rgb, _depth_panel(s.depth), visible, overlay]


def contact_sheet(samples: list[Sample], tile: int = 256) -> np.ndarray:
    """uint8 RGB image: one row of :data:`PANELS` per sample, each panel resized to ``tile`` px wide."""
    rows = []
    for s in samples:
        scale = tile / s.width
        size = (tile, int(round(s.height * scale)))
        tiles = [cv2.resize(p, size, interpolation=cv2.INTER_NEAREST) for p in _panels(s)]
        label = f"{s.ref.name}  {len(s.object_ids)} objects"
        cv2.putText(tiles[0], label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        rows.append(np.concatenate(tiles, axis=1))
    header = np.zeros((18, rows[0].shape[1], 3), np.uint8)
    for i, name in enumerate(PANELS):
        cv2.putText(header, name, (i * tile + 4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1,
                    cv2.LINE_AA)  # fmt: skip
    return np.concatenate([header, *rows], axis=0)


def write_preview(root: str | Path, out: str | Path, views: int = 4, tile: int = 256) -> Path:
    """Write the contact sheet of the first ``views`` views under ``root`` (one per scene first, then
    further viewpoints) to the PNG ``out``."""
    refs = discover_views(root)
    if not refs:
        raise ValueError(f"preview: no views under {root}")
    first_view: dict[str, int] = {}
    for r in refs:
        first_view[r.scene] = min(first_view.get(r.scene, r.view), r.view)
    is_first = [r.view == first_view[r.scene] for r in refs]
    chosen = ([r for r, f in zip(refs, is_first) if f] + [r for r, f in zip(refs, is_first) if not f])[:views]
    chosen.sort(key=lambda r: r.image_id)
    sheet = contact_sheet([load_view(r) for r in chosen], tile)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise ValueError(f"preview: could not write {out} (is it a .png path in a writable folder?)")
    return out
