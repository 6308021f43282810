"""Torch side of the dense benchmarks: `DenseDataset` over a numpy reader, `DenseBatch` and its collate.

An item is a dict of tensors: ``image [3, H, W]`` float32 RGB in [0, 1] and the targets of the tasks
in `training.model.dense.tasks.TARGET_LAYOUT` layout (``segmentation [H, W]`` int64 with -1 ignore,
``depth [1, H, W]`` with 0 invalid, ``normal [3, H, W]``, ``instance [2, H, W]`` + ``instance_mask
[1, H, W]``), plus ``index`` (the reader's sample index). `collate_dense` stacks items into a
`DenseBatch`.

Augmentation (``augment=True``, off by default as in the MTAN paper; MTAN/LibMTL/CAGrad offer it for
NYU-v2): MTAN's random scale-crop (scale 1.0, 1.2 or 1.5: crop ``H/s x W/s`` and resize back) and a
horizontal flip with probability 0.5, drawn from ``item_generator(seed, epoch, index)``. Decisions
(docs/dense.md): the image is resized bilinearly, every target with nearest neighbours (MTAN resizes
normals bilinearly, which mixes invalid zeros into valid normals at their border); metric depth is
divided by the scale (MTAN) and disparity multiplied by it (closer = larger disparity; CAGrad's
CityScapes code divides it); offsets are scaled with the zoom and keep pointing at the instance's
centroid in the uncropped image; a flip negates the normals' x and the offsets' dx.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from mtl_grasp.data.dense.checks import EmptyTargetError
from mtl_grasp.data.dense.sample import DenseReader, DenseSample
from training.data.dataset import item_generator

SCALES = (1.0, 1.2, 1.5)  # MTAN's RandomScaleCrop


@dataclass
class DenseBatch:
    """A batch: ``image [B, 3, H, W]`` in [0, 1], ``targets`` (key -> ``[B, ...]``), ``indices [B]``."""

    image: Tensor
    targets: dict[str, Tensor]
    indices: Tensor

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the images."""
        return int(self.image.shape[-2]), int(self.image.shape[-1])

    def __len__(self) -> int:
        return int(self.image.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> DenseBatch:
        move = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return DenseBatch(move(self.image), {k: move(v) for k, v in self.targets.items()}, self.indices)


def collate_dense(items: Sequence[Mapping[str, Tensor]]) -> DenseBatch:
    """Stack dataset items (same keys and sizes) into a `DenseBatch`."""
    if not items:
        raise ValueError("items: cannot collate an empty batch")
    keys = [k for k in items[0] if k not in ("image", "index")]
    return DenseBatch(
        image=torch.stack([it["image"] for it in items]),
        targets={k: torch.stack([it[k] for it in items]) for k in keys},
        indices=torch.as_tensor([int(it["index"]) for it in items]),
    )


def sample_tensors(sample: DenseSample, tasks: Sequence[str]) -> dict[str, Tensor]:
    """A `DenseSample` as channels-first tensors of the tasks' targets (plus ``image``)."""
    out = {"image": torch.from_numpy(np.ascontiguousarray(sample.image.transpose(2, 0, 1)))}
    for key, arr in sample.targets(tuple(tasks)).items():
        t = torch.from_numpy(np.ascontiguousarray(arr))
        if key == "segmentation":
            out[key] = t.long()
        elif t.ndim == 2:  # depth, instance_mask
            out[key] = t[None]
        else:  # normal, instance: [H, W, C] -> [C, H, W]
            out[key] = t.permute(2, 0, 1).contiguous()
    return out


def _resize(t: Tensor, size: tuple[int, int], bilinear: bool) -> Tensor:
    x = t[None] if t.ndim == 3 else t[None, None]
    dtype = x.dtype
    if bilinear:
        y = F.interpolate(x.float(), size=size, mode="bilinear", align_corners=True)
    else:
        y = F.interpolate(x.float(), size=size, mode="nearest")
    y = y.to(dtype)
    return y[0] if t.ndim == 3 else y[0, 0]


def scale_crop(
    item: dict[str, Tensor], scale: float, top: int, left: int, depth_kind: str
) -> dict[str, Tensor]:
    """Crop ``H/scale x W/scale`` at ``(top, left)`` and resize back to ``H x W`` (module docstring)."""
    height, width = item["image"].shape[-2:]
    h, w = int(height / scale), int(width / scale)
    out = {}
    for key, t in item.items():
        if key == "index":
            out[key] = t
            continue
        crop = t[..., top : top + h, left : left + w]
        out[key] = _resize(crop, (height, width), bilinear=key == "image")
    if "depth" in out:
        out["depth"] = out["depth"] / scale if depth_kind == "depth" else out["depth"] * scale
    if "instance" in out:
        zoom = torch.tensor([(height - 1) / max(h - 1, 1), (width - 1) / max(w - 1, 1)]).view(2, 1, 1)
        out["instance"] = out["instance"] * zoom * out["instance_mask"]
    return out


def hflip(item: dict[str, Tensor]) -> dict[str, Tensor]:
    """Mirror left-right; normals' x and offsets' dx change sign."""
    out = {k: (t if k == "index" else t.flip(-1)) for k, t in item.items()}
    if "normal" in out:
        out["normal"] = out["normal"] * torch.tensor([-1.0, 1.0, 1.0]).view(3, 1, 1)
    if "instance" in out:
        out["instance"] = out["instance"] * torch.tensor([1.0, -1.0]).view(2, 1, 1)
    return out


class DenseDataset(Dataset):
    """A dense reader (`NpyDenseReader` or `CityscapesReader`) as a torch dataset (module docstring).

    Args:
        reader: anything with ``__len__``, ``read(index, allow_empty)``, ``tasks`` and ``depth_kind``.
        tasks: the tasks whose targets an item carries (default: all of the reader's).
        augment, seed: augmentation (off by default) and its seed; `set_epoch` changes the draws.
        skip_empty: False (default): a sample whose depth or normals are all invalid raises
            `EmptyTargetError` naming the file when it is loaded. True: every sample is read once here
            and those samples are left out; ``skipped`` lists ``(index, message)`` and a warning says
            how many (the study's loader drops such CityScapes images by a fixed index list).
    """

    def __init__(
        self,
        reader: DenseReader,
        tasks: Sequence[str] | None = None,
        augment: bool = False,
        seed: int = 0,
        skip_empty: bool = False,
    ) -> None:
        self.reader = reader
        self.tasks = tuple(reader.tasks if tasks is None else tasks)
        unknown = [t for t in self.tasks if t not in reader.tasks]
        if unknown:
            raise ValueError(f"tasks: {unknown} not in this dataset's tasks {tuple(reader.tasks)}")
        self.augment, self.seed, self.epoch = augment, seed, 0
        self.indices = list(range(len(reader)))
        self.skipped: list[tuple[int, str]] = []
        if skip_empty:
            self._drop_empty()

    def _drop_empty(self) -> None:
        keep = []
        for index in self.indices:
            try:
                self.reader.read(index)
                keep.append(index)
            except EmptyTargetError as exc:
                self.skipped.append((index, str(exc)))
        if self.skipped:
            warnings.warn(
                f"DenseDataset: skipped {len(self.skipped)} of {len(self.indices)} samples with all-invalid "
                f"depth or normals (first: {self.skipped[0][1]})",
                stacklevel=3,
            )
        self.indices = keep

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draws for a new epoch (call before iterating; workers see it)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        index = self.indices[i]
        item = sample_tensors(self.reader.read(index), self.tasks)
        item["index"] = torch.tensor(index)
        if not self.augment:
            return item
        gen = item_generator(self.seed, self.epoch, index)
        scale = SCALES[int(torch.randint(len(SCALES), (1,), generator=gen))]
        height, width = item["image"].shape[-2:]
        top = int(torch.randint(height - int(height / scale) + 1, (1,), generator=gen))
        left = int(torch.randint(width - int(width / scale) + 1, (1,), generator=gen))
        if scale != 1.0:
            item = scale_crop(item, scale, top, left, self.reader.depth_kind)
        if float(torch.rand(1, generator=gen)) < 0.5:
            item = hflip(item)
        return item
