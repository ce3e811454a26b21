"""Deterministic, resumable batching.

Each epoch is a permutation drawn from (seed, epoch); rank r of w takes
every w-th batch. A position (epoch, batch index) is all resume needs: the
batches before it are skipped without loading them. Items come with their
own seed, so random crops and augmentations do not depend on worker count
or on where a run was resumed. SortaGrad (Deep Speech 2) is an option:
epoch 0 in order of length.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from torch.utils.data import Dataset


@dataclasses.dataclass
class Position:
    epoch: int = 0
    batch: int = 0  # batches of this epoch already consumed (by this rank)


def item_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class EpochBatches:
    """Batches of (index, item_seed) for one rank, from a position onward."""

    def __init__(self, n_items: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 lengths: Sequence[float] | None = None, sorta_grad: bool = False, drop_last: bool = True):
        if n_items < batch_size * world_size:
            raise ValueError(f"{n_items} items cannot fill one batch of {batch_size} on {world_size} rank(s)")
        self.n_items, self.batch_size, self.seed = n_items, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.lengths, self.sorta_grad, self.drop_last = lengths, sorta_grad, drop_last

    def order(self, epoch: int) -> np.ndarray:
        if epoch == 0 and self.sorta_grad and self.lengths is not None:
            return np.argsort(np.asarray(self.lengths), kind="stable")
        return np.random.default_rng([self.seed, epoch]).permutation(self.n_items)

    def batches_per_epoch(self) -> int:
        return self.n_items // (self.batch_size * self.world_size)

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[list[tuple[int, int]]]:
        order = self.order(epoch)
        per_rank = self.batches_per_epoch()
        for b in range(start_batch, per_rank):
            first = (b * self.world_size + self.rank) * self.batch_size
            idx = order[first:first + self.batch_size]
            yield [(int(i), item_seed(self.seed, epoch, int(i))) for i in idx]


class SeededDataset(Dataset):
    """Wraps a dataset so that item (index, seed) gets a numpy Generator.

    A dataset with `get(index, rng)` uses the generator for its random
    choices; one with only `__getitem__` ignores the seed.
    """

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        getter: Callable | None = getattr(self.dataset, "get", None)
        if getter is not None:
            return getter(index, np.random.default_rng(seed))
        return self.dataset[index]
