"""Random RGB-D batches with consistent targets, for benchmarks that need no dataset on disk."""

from __future__ import annotations

from typing import Any


def random_scene(size: int, batch: int, objects: int, device: Any) -> tuple[Any, Any, list[dict]]:
    """Random images with rectangular objects whose left halves are hidden (so some are occluded).

    Returns rgb [B,3,S,S] in [0,1], depth [B,1,S,S] in metres and per-image targets in the model's
    format (docs/architecture.md); seeded, so every benchmark run sees the same batch.
    """
    import torch

    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(batch, 3, size, size, generator=g)
    depth = 0.5 + 0.3 * torch.rand(batch, 1, size, size, generator=g)
    targets = []
    for _ in range(batch):
        xy = torch.rand(objects, 2, generator=g) * size * 0.7
        wh = (0.1 + 0.2 * torch.rand(objects, 2, generator=g)) * size
        boxes = torch.cat([xy, (xy + wh).clamp(max=size)], dim=1)
        amodal = torch.zeros(objects, size, size, dtype=torch.uint8)
        for i, (x1, y1, x2, y2) in enumerate(boxes.round().int().tolist()):
            amodal[i, y1:y2, x1:x2] = 1
        visible = amodal.clone()
        visible[:, :, : size // 2] = 0
        rate = 1.0 - visible.flatten(1).sum(1).float() / amodal.flatten(1).sum(1).clamp(min=1).float()
        targets.append({
            "boxes": boxes.to(device), "labels": torch.ones(objects, dtype=torch.int64, device=device),
            "visible_masks": visible.to(device), "amodal_masks": amodal.to(device),
            "occluded": (rate >= 0.05).long().to(device), "occluded_rate": rate.to(device),
        })  # fmt: skip
    return rgb.to(device), depth.to(device), targets
