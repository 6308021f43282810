"""Deterministic data order: the batches of epoch e are a function of (seed, e) only.

That is what makes `--resume` exact: a run resumed at step k rebuilds epoch k // steps_per_epoch and
skips the batches already consumed, without any sampler state in the checkpoint. Under data
parallelism every rank draws the same permutation and takes its own contiguous slice of each global
batch, so the union over ranks of one step is exactly the global batch a single process would see.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of epoch `epoch`'s permutation (and of its data-loader generator)."""
    return (seed * 1_000_003 + epoch * 7919 + 17) % (2**63 - 1)


class EpochBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Index batches of one epoch for one rank; drops the incomplete last global batch."""

    def __init__(
        self,
        num_samples: int,
        global_batch: int,
        seed: int,
        epoch: int,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
        shuffle: bool = True,
    ) -> None:
        if global_batch % world_size:
            raise ValueError(
                f"train.batch_size: the global batch {global_batch} must be divisible by the "
                f"number of processes {world_size}"
            )
        if num_samples < global_batch:
            raise ValueError(
                f"train.batch_size: the training split has {num_samples} images, fewer than one "
                f"global batch of {global_batch}"
            )
        self.num_samples, self.global_batch = num_samples, global_batch
        self.seed, self.epoch, self.rank, self.world_size = seed, epoch, rank, world_size
        self.start_batch, self.shuffle = start_batch, shuffle

    @staticmethod
    def batches_per_epoch(num_samples: int, global_batch: int) -> int:
        return num_samples // global_batch

    def __len__(self) -> int:
        return max(0, self.num_samples // self.global_batch - self.start_batch)

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
            order = torch.randperm(self.num_samples, generator=g).tolist()
        else:
            order = list(range(self.num_samples))
        per_rank = self.global_batch // self.world_size
        for b in range(self.start_batch, self.num_samples // self.global_batch):
            start = b * self.global_batch + self.rank * per_rank
            yield order[start : start + per_rank]


def _worker_init(worker_id: int) -> None:
    # numpy/random in workers follow torch's per-worker seed (itself derived from the epoch generator)
    import random

    import numpy as np

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class TrainLoader:
    """The training batches of each epoch: this rank's slices of the (seed, epoch) permutation."""

    def __init__(
        self,
        dataset: torch.utils.data.Dataset[Any],
        collate: Callable[[list[Any]], Any],
        global_batch: int,
        seed: int,
        num_workers: int = 0,
        pin_memory: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.dataset, self.collate, self.global_batch, self.seed = dataset, collate, global_batch, seed
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.rank, self.world_size = rank, world_size
        self.num_samples = len(dataset)  # type: ignore[arg-type]  # map-style datasets have __len__

    @property
    def batches_per_epoch(self) -> int:
        return EpochBatchSampler.batches_per_epoch(self.num_samples, self.global_batch)

    def epoch_seed(self, epoch: int) -> int:
        return epoch_seed(self.seed, epoch)

    def epoch(self, epoch: int, start_batch: int = 0) -> torch.utils.data.DataLoader[Any]:
        """The batches of `epoch` from batch `start_batch` on (a resumed run skips the consumed ones)."""
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)  # augmentation draws depend on (seed, epoch, index)
        sampler = EpochBatchSampler(
            self.num_samples, self.global_batch, self.seed, epoch, self.rank, self.world_size, start_batch
        )
        return torch.utils.data.DataLoader(
            self.dataset, batch_sampler=sampler, collate_fn=self.collate, num_workers=self.num_workers,
            pin_memory=self.pin_memory, generator=torch.Generator().manual_seed(self.epoch_seed(epoch)),
            worker_init_fn=_worker_init if self.num_workers > 0 else None,
        )  # fmt: skip
