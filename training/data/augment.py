"""Training augmentation: horizontal flip (image, depth, masks and boxes together) and colour jitter.

Randomness comes from a ``torch.Generator`` the caller seeds per sample (see
:func:`training.data.dataset.item_generator`), so a run is reproducible whatever the number of
DataLoader workers and whichever worker loads which sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["AugmentConfig", "color_jitter", "hflip", "augment"]


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and strengths; each jitter factor is drawn uniformly in ``[1 - s, 1 + s]``."""

    flip_probability: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2

    def __post_init__(self) -> None:
        for name in ("flip_probability", "brightness", "contrast", "saturation"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"AugmentConfig.{name}: expected a value in [0, 1], found {value!r}")


def hflip(rgb: torch.Tensor, depth: torch.Tensor, target: dict) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Mirror left-right. Boxes are ``x1, y1, x2, y2`` with exclusive right edge, so x -> W - x."""
    width = rgb.shape[-1]
    out = dict(target)
    for key in ("visible_masks", "amodal_masks"):
        out[key] = target[key].flip(-1)
    boxes = target["boxes"].clone()
    boxes[:, 0] = width - target["boxes"][:, 2]
    boxes[:, 2] = width - target["boxes"][:, 0]
    out["boxes"] = boxes
    return rgb.flip(-1), depth.flip(-1), out


def _grey(rgb: torch.Tensor) -> torch.Tensor:
    return (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]).unsqueeze(0)


def color_jitter(rgb: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Brightness, contrast and saturation jitter on a ``[3, H, W]`` image in ``[0, 1]`` (depth untouched)."""
    factors = 1.0 + (torch.rand(3, generator=generator) * 2.0 - 1.0) * torch.tensor(
        [config.brightness, config.contrast, config.saturation]
    )
    out = rgb * factors[0]
    out = (out - _grey(out).mean()) * factors[1] + _grey(out).mean()
    grey = _grey(out)
    out = (out - grey) * factors[2] + grey
    return out.clamp_(0.0, 1.0)


def augment(
    rgb: torch.Tensor, depth: torch.Tensor, target: dict, config: AugmentConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Flip with ``config.flip_probability``, then jitter the colours."""
    if torch.rand(1, generator=generator).item() < config.flip_probability:
        rgb, depth, target = hflip(rgb, depth, target)
    return color_jitter(rgb, config, generator), depth, target
