"""``build_dataloader``: a ``torch.utils.data.DataLoader`` from an MMSeg ``*_dataloader`` config."""
from __future__ import annotations

import functools
from typing import Callable, Iterator, Optional

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, default_collate

from .. import dist
from ..registry import DATA_SAMPLERS, DATASETS
from .collate import collate

_COLLATE_FUNCTIONS = {'pseudo_collate': collate, 'default_collate': default_collate}


def _label_samples(batch) -> Iterator[dict]:
    """The data-sample dicts of a collated batch holding a ``gt_sem_seg`` tensor (TTA batches: nested lists)."""
    items = batch.get('data_samples') if isinstance(batch, dict) else None
    for item in items if isinstance(items, list) else []:
        for sample in item if isinstance(item, list) else [item]:
            if isinstance(sample, dict) and isinstance(sample.get('gt_sem_seg'), torch.Tensor):
                yield sample


def _collate_for_transfer(collate_fn: Callable, samples: list):
    """``collate_fn``, then, inside a loader worker, int64 label maps holding only 0..255 become uint8.

    Whatever a worker returns crosses to the main process through freshly allocated shared memory, whose
    cost grows with the bytes (page faults: about a millisecond per MB on virtual machines); as uint8 a
    label map is an eighth of its int64 size. ``SegDataLoader`` widens it back on arrival.
    """
    batch = collate_fn(samples)
    if torch.utils.data.get_worker_info() is not None:
        for sample in _label_samples(batch):
            label = sample['gt_sem_seg']
            if label.dtype == torch.int64 and label.numel():
                low, high = torch.aminmax(label)
                if low >= 0 and high <= 255:
                    sample['gt_sem_seg'] = label.to(torch.uint8)
    return batch


class SegDataLoader(DataLoader):
    """A ``DataLoader`` whose batches hold int64 ``gt_sem_seg`` maps as the batch contract says, however
    they travelled from the workers (see ``_collate_for_transfer``)."""

    def __iter__(self) -> Iterator:
        for batch in super().__iter__():
            for sample in _label_samples(batch):
                if sample['gt_sem_seg'].dtype == torch.uint8:
                    # numpy widens on this thread alone: a multi-threaded torch op here would leave OpenMP
                    # threads spinning on the cores the workers need (1 worker: 145 -> 230 samples/s)
                    sample['gt_sem_seg'] = torch.from_numpy(sample['gt_sem_seg'].numpy().astype(np.int64))
            yield batch


def _worker_init(worker_id: int) -> None:
    """Keep OpenCV single-threaded inside loader workers: the workers are the parallelism, and OpenCV's
    own thread pool in each of them would oversubscribe the cores."""
    cv2.setNumThreads(0)


def _collate_fn(cfg) -> Callable:
    if cfg is None:
        return collate
    if callable(cfg):
        return cfg
    name = cfg.get('type') if isinstance(cfg, dict) else cfg
    if name not in _COLLATE_FUNCTIONS:
        raise ValueError(f'collate_fn {cfg!r} is not supported: use pseudo_collate (default) or default_collate')
    return _COLLATE_FUNCTIONS[name]


def build_dataloader(cfg: dict, seed: Optional[int] = None) -> SegDataLoader:
    """Build the dataset (a ``DATASETS`` config dict or an object), its sampler and the loader.

    ``cfg`` holds ``dataset``, ``sampler=dict(type=...)`` and DataLoader arguments (``batch_size``,
    ``num_workers``, ``persistent_workers``, ``pin_memory``, ``drop_last``, ...). ``seed`` is the sampler's
    default seed and seeds the loader's generator (offset by rank): every worker of every rank then starts
    from its own, reproducible seed for ``numpy``, ``random`` and ``torch`` (PyTorch derives them from
    that generator and the worker id), and a new epoch's workers draw new ones. Label maps cross from the
    workers as uint8 and reach the caller as int64 (see ``SegDataLoader``).
    """
    cfg = dict(cfg)  # the builders below copy what they change; a dataset object is used as is
    if 'dataset' not in cfg or 'sampler' not in cfg:
        raise KeyError(f'a dataloader config needs "dataset" and "sampler" (e.g. sampler=dict(type='
                       f'"InfiniteSampler", shuffle=True)); got keys {sorted(cfg)}')
    dataset = cfg.pop('dataset')
    if isinstance(dataset, dict):
        dataset = DATASETS.build(dataset)
    sampler = DATA_SAMPLERS.build(cfg.pop('sampler'), default_args=dict(dataset=dataset, seed=seed))
    if cfg.pop('batch_sampler', None) is not None:
        raise NotImplementedError('batch_sampler configs are not supported; use sampler and batch_size')
    collate_fn = functools.partial(_collate_for_transfer, _collate_fn(cfg.pop('collate_fn', None)))
    num_workers = cfg.pop('num_workers', 0)
    persistent_workers = cfg.pop('persistent_workers', False) and num_workers > 0
    generator = None
    if seed is not None:
        generator = torch.Generator()
        generator.manual_seed(seed + dist.get_rank())
    return SegDataLoader(dataset, sampler=sampler, num_workers=num_workers, persistent_workers=persistent_workers,
                         collate_fn=collate_fn, worker_init_fn=_worker_init, generator=generator, **cfg)
