"""Dataset wrappers from MMEngine: ``ConcatDataset`` (several datasets in a row) and ``RepeatDataset``."""
from __future__ import annotations

import bisect
from typing import List, Optional, Sequence, Tuple, Union

from torch.utils.data import ConcatDataset as _TorchConcatDataset
from torch.utils.data import Dataset

from ..registry import DATASETS
from .sample_index import reindex


def _build(dataset: Union[Dataset, dict]) -> Dataset:
    return DATASETS.build(dataset) if isinstance(dataset, dict) else dataset


@DATASETS.register_module()
class ConcatDataset(_TorchConcatDataset):
    """Datasets (objects or config dicts) one after another; their ``metainfo`` must agree except for the
    keys in ``ignore_keys``, and the first one's is reported."""

    def __init__(self, datasets: Sequence[Union[Dataset, dict]],
                 ignore_keys: Optional[Union[str, List[str]]] = None) -> None:
        built = [_build(d) for d in datasets]
        ignore = {ignore_keys} if isinstance(ignore_keys, str) else set(ignore_keys or [])
        first = built[0].metainfo
        for i, dataset in enumerate(built[1:], 2):
            meta = dataset.metainfo
            for key in (set(first) | set(meta)) - ignore:
                if first.get(key) != meta.get(key):
                    raise ValueError(f'ConcatDataset: metainfo[{key!r}] of dataset {i} differs from dataset 1 '
                                     f'({meta.get(key)!r} vs {first.get(key)!r}); add it to ignore_keys if intended')
        self._metainfo = first
        super().__init__(built)

    @property
    def metainfo(self) -> dict:
        return dict(self._metainfo)

    dataset_meta = metainfo

    def full_init(self) -> None:
        for dataset in self.datasets:
            if hasattr(dataset, 'full_init'):
                dataset.full_init()

    def _locate(self, idx: int) -> Tuple[int, int]:
        """(which dataset, index inside it) of ``idx``."""
        if idx < 0:
            idx += len(self)
        which = bisect.bisect_right(self.cumulative_sizes, idx)
        offset = self.cumulative_sizes[which - 1] if which else 0
        return which, idx - offset

    def __getitem__(self, idx: int) -> dict:
        which, local = self._locate(idx)
        return self.datasets[which][reindex(idx, local)]

    def get_data_info(self, idx: int) -> dict:
        which, local = self._locate(idx)
        return self.datasets[which].get_data_info(local)


@DATASETS.register_module()
class RepeatDataset(Dataset):
    """``dataset`` repeated ``times`` times (fewer, longer epochs for a small dataset)."""

    def __init__(self, dataset: Union[Dataset, dict], times: int, lazy_init: bool = False) -> None:
        self.dataset = _build(dataset)
        self.times = times
        if not lazy_init:
            self.full_init()

    @property
    def metainfo(self) -> dict:
        return self.dataset.metainfo

    dataset_meta = metainfo

    def full_init(self) -> None:
        if hasattr(self.dataset, 'full_init'):
            self.dataset.full_init()

    def __len__(self) -> int:
        return self.times * len(self.dataset)

    def __getitem__(self, idx: int) -> dict:
        return self.dataset[reindex(idx, idx % len(self.dataset))]

    def get_data_info(self, idx: int) -> dict:
        return self.dataset.get_data_info(idx % len(self.dataset))
