"""``collate``: batch packed samples as lists, without stacking (images may differ in size)."""
from __future__ import annotations

from typing import Any, Dict, List, Sequence


def collate(samples: Sequence[Dict[str, Any]]) -> Dict[str, List[Any]]:
    """``[{'inputs': t, 'data_samples': d}, ...]`` -> ``{'inputs': [t, ...], 'data_samples': [d, ...]}``.

    Test-time-augmented samples hold a list of views per key; their batch is grouped by view, as MMEngine's
    ``pseudo_collate`` does: ``{'inputs': [[view 0 of each image], [view 1 of each image], ...], ...}``.
    """
    if not samples:
        raise ValueError('collate: empty batch')
    batch = {}
    for key in samples[0]:
        values = [sample[key] for sample in samples]
        if isinstance(values[0], list):
            if len({len(v) for v in values}) != 1:
                raise ValueError(f'collate: samples have different numbers of {key!r} views')
            values = [list(view) for view in zip(*values)]
        batch[key] = values
    return batch
