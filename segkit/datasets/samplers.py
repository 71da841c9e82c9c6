"""Index samplers (MMEngine's ``DefaultSampler`` and ``InfiniteSampler``) that split data by rank and can
resume mid-stream: ``load_state_dict({'seed': s, 'consumed': n})`` skips the n indices this rank has
already used, without touching the data. Each index is a :class:`SampleIndex` keyed by the seed and its
position in the global stream, from which the dataset seeds that sample's augmentation."""
from __future__ import annotations

import itertools
import math
from typing import Iterator, List, Optional, Sized

import numpy as np
import torch
from torch.utils.data import Sampler

from .. import dist
from ..registry import DATA_SAMPLERS
from .sample_index import SampleIndex


def shared_random_seed() -> int:
    """A random seed drawn on rank 0 and sent to every rank (so all ranks shuffle alike)."""
    return int(dist.broadcast_object(int(np.random.randint(2 ** 31))))


class _ResumableSampler(Sampler):
    """Shared by both samplers: rank, seed and the resume offset."""

    def __init__(self, dataset: Sized, shuffle: bool, seed: Optional[int]) -> None:
        self.rank, self.world_size = dist.get_dist_info()
        self.dataset = dataset
        self.shuffle = shuffle
        self.seed = shared_random_seed() if seed is None else int(seed)
        self.consumed = 0

    def state_dict(self) -> dict:
        """``{'seed', 'consumed'}``; the runner overwrites ``consumed`` with what this rank has used."""
        return {'seed': self.seed, 'consumed': self.consumed}

    def load_state_dict(self, state: dict) -> None:
        """Restore the seed and skip ``consumed`` indices on the next pass."""
        self.seed = int(state['seed'])
        self.consumed = int(state.get('consumed', 0))

    def _permutation(self, generator: torch.Generator) -> List[int]:
        if self.shuffle:
            return torch.randperm(len(self.dataset), generator=generator).tolist()
        return list(range(len(self.dataset)))


@DATA_SAMPLERS.register_module()
class InfiniteSampler(_ResumableSampler):
    """An endless stream for iteration-based training: permutation after permutation of the dataset
    (seeded once with ``seed``), of which rank r takes positions r, r + world_size, ...

    ``consumed`` counts indices of this rank's stream; resuming with it continues the stream exactly where
    an uninterrupted run would be.
    """

    def __init__(self, dataset: Sized, shuffle: bool = True, seed: Optional[int] = None) -> None:
        super().__init__(dataset, shuffle, seed)

    def __iter__(self) -> Iterator[int]:
        size = len(self.dataset)
        generator = torch.Generator()
        generator.manual_seed(self.seed)
        start = self.rank + self.consumed * self.world_size  # position in the global stream
        skipped_epochs, offset = divmod(start, size)
        for _ in range(skipped_epochs):
            self._permutation(generator)  # advances the generator exactly as consuming the epoch would
        stream = itertools.chain.from_iterable(self._permutation(generator) for _ in itertools.count())
        positions = itertools.count(start, self.world_size)
        for position, index in zip(positions, itertools.islice(stream, offset, None, self.world_size)):
            yield SampleIndex(index, (self.seed, position))

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        """Epochs have no meaning for an endless stream."""


@DATA_SAMPLERS.register_module()
class DefaultSampler(_ResumableSampler):
    """One pass over the dataset per epoch, shuffled with ``seed + epoch``; rank r takes every
    world_size-th index starting at r.

    ``round_up=True`` repeats the first indices so that every rank gets ``ceil(N / world_size)``;
    ``round_up=False`` leaves the last ranks one short. After ``load_state_dict`` the next pass skips
    ``consumed % len(self)`` indices (the position inside the current epoch, whose number the epoch loop
    sets with ``set_epoch``).
    """

    def __init__(self, dataset: Sized, shuffle: bool = True, seed: Optional[int] = None,
                 round_up: bool = True) -> None:
        super().__init__(dataset, shuffle, seed)
        self.round_up = round_up
        self.epoch = 0

    @property
    def total_size(self) -> int:
        size = len(self.dataset)
        return math.ceil(size / self.world_size) * self.world_size if self.round_up else size

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        indices = self._permutation(generator)
        if self.round_up:
            indices = (indices * math.ceil(self.total_size / len(indices)))[:self.total_size]
        mine = indices[self.rank:self.total_size:self.world_size]
        skip, self.consumed = (self.consumed % len(mine) if mine else 0), 0
        first = self.epoch * self.total_size + self.rank + skip * self.world_size  # position in the global stream
        return (SampleIndex(index, (self.seed, first + i * self.world_size)) for i, index in enumerate(mine[skip:]))

    def __len__(self) -> int:
        return math.ceil((self.total_size - self.rank) / self.world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
