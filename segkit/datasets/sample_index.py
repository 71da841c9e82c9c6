"""Per-sample random seeds, so that a sample's augmentation depends on its place in the sampler's stream only.

segkit's samplers yield :class:`SampleIndex` values: ints (datasets use them as plain indices) that also carry
the sampler's seed and the sample's position in the global stream. ``BaseSegDataset`` runs its pipeline under
:func:`sample_random_state`, which seeds ``random``, ``numpy`` and torch's CPU generator from that pair. The
augmentation of the n-th sample is then the same with 0, 1 or 8 loader workers, and a resumed run (whose
sampler restarts at its saved position) draws exactly what an uninterrupted run would have drawn.
"""
from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Iterator, Tuple

import numpy as np
import torch
from torch.utils.data import get_worker_info


class SampleIndex(int):
    """A dataset index that also carries ``key = (sampler seed, position in the global stream)``."""

    key: Tuple[int, int]

    def __new__(cls, index: int, key: Tuple[int, int]) -> 'SampleIndex':
        obj = super().__new__(cls, index)
        obj.key = key
        return obj

    def __reduce__(self):  # keeps the key when sent to a loader worker
        return SampleIndex, (int(self), self.key)

    def __repr__(self) -> str:
        return int.__repr__(self)


def reindex(idx: int, index: int) -> int:
    """``index`` with ``idx``'s seed key, if it has one (what a dataset wrapper passes to the dataset it wraps)."""
    return SampleIndex(index, idx.key) if isinstance(idx, SampleIndex) else index


@contextmanager
def sample_random_state(idx: int) -> Iterator[None]:
    """Seed python's ``random``, numpy's global generator and torch's CPU generator from ``idx.key``.

    In a loader worker the generators are simply reseeded. In the main process (``num_workers=0``) their
    states are put back afterwards, so the model's own random numbers (dropout, drop-path) do not depend
    on the data. A plain int changes nothing.
    """
    key = getattr(idx, 'key', None)
    if key is None:
        yield
        return
    saved = None
    if get_worker_info() is None:
        saved = random.getstate(), np.random.get_state(), torch.default_generator.get_state()
    numpy_seed, python_seed, torch_seed = (int(w) for w in np.random.SeedSequence(key).generate_state(3))
    np.random.seed(numpy_seed)
    random.seed(python_seed)
    torch.default_generator.manual_seed(torch_seed)
    try:
        yield
    finally:
        if saved is not None:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            torch.default_generator.set_state(saved[2])
