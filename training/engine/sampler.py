"""Deterministic data order: the batches of epoch e are a function of (seed, e) only.

That is what makes `--resume` exact: a run resumed at step k rebuilds epoch k // steps_per_epoch and
skips the batches already consumed, without any sampler state in the checkpoint. Under data
parallelism every rank draws the same permutation and takes its own contiguous slice of each global
batch, so the union over ranks of one step is exactly the global batch a single process would see.
"""

from __future__ import annotations

from collections.abc import Iterator

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
