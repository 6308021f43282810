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


#: a trained RPN gives the ROI sampler more foreground candidates than it keeps: 25% of 512 per image
TRAINED_FOREGROUND = 128


def add_fg_rois_argument(parser: Any) -> None:
    """The benchmarks' `--fg-rois N` option (see `plant_trained_proposals`); check it with `fg_rois`."""
    parser.add_argument(
        "--fg-rois", type=int, default=TRAINED_FOREGROUND, metavar="N",
        help="jittered ground-truth boxes added to each image's proposals in training, so the ROI sampler "
             "finds as many foreground ROIs as with a trained RPN and the task heads cost what they cost "
             f"in real training (default {TRAINED_FOREGROUND}); 0 = the random network's own proposals "
             "(few foreground ROIs: light task heads)",
    )  # fmt: skip


def fg_rois(args: Any) -> int:
    """`args.fg_rois`, or a ValueError naming the option when it is negative."""
    if args.fg_rois < 0:
        raise ValueError(f"--fg-rois: expected an integer >= 0, got {args.fg_rois}")
    return int(args.fg_rois)


def plant_trained_proposals(model: Any, per_image: int) -> None:
    """Make the benchmark model `model` (an `AmodalRCNN`) see the ROI statistics of a trained RPN.

    An untrained RPN's proposals rarely overlap an object (IoU >= 0.5), so the ROI sampler finds few
    foreground ROIs (the ground-truth boxes it always adds, and little else) and the task heads, which
    run on foreground ROIs only, cost a fraction of what they cost in real training, where the sampler
    fills its 25% foreground quota. Inside this context each image's proposals start with `per_image`
    ground-truth boxes jittered by up to ±5% of their size (IoU with their box > 0.6), so the sampler
    sees as many foreground candidates as after training. Losses and gradients are unchanged in kind;
    only the ROI set changes. The jitter draws from torch's global RNG, like the ROI sampler, so a
    caller that seeds a step gets the same ROIs again. `per_image=0` leaves the model untouched. The
    instance's RPN is patched for good: use it only on a model built for a benchmark.
    """
    import torch

    if per_image < 0:
        raise ValueError(f"per_image: expected an integer >= 0, got {per_image}")
    rpn = model.rpn
    original = rpn.forward

    def forward(images: Any, features: Any, targets: Any = None) -> Any:
        proposals, losses = original(images, features, targets)
        if targets is None or per_image == 0:
            return proposals, losses
        planted = []
        for boxes, target in zip(proposals, targets):
            gt = target["boxes"]
            if len(gt) == 0:
                planted.append(boxes)
                continue
            pick = torch.randint(len(gt), (per_image,), device=gt.device)
            chosen = gt[pick]
            size = (chosen[:, 2:] - chosen[:, :2]).repeat(1, 2)
            jitter = (torch.rand(per_image, 4, device=gt.device, dtype=gt.dtype) - 0.5) * 0.1 * size
            planted.append(torch.cat([(chosen + jitter).detach(), boxes]))
        return planted, losses

    if per_image:
        rpn.forward = forward
