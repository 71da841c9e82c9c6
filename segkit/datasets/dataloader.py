"""``build_dataloader``: a ``torch.utils.data.DataLoader`` from an MMSeg ``*_dataloader`` config."""
from __future__ import annotations

from typing import Callable, Optional

import cv2
import torch
from torch.utils.data import DataLoader, default_collate

from .. import dist
from ..registry import DATA_SAMPLERS, DATASETS
from .collate import collate

_COLLATE_FUNCTIONS = {'pseudo_collate': collate, 'default_collate': default_collate}


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


def build_dataloader(cfg: dict, seed: Optional[int] = None) -> DataLoader:
    """Build the dataset (a ``DATASETS`` config dict or an object), its sampler and the loader.

    ``cfg`` holds ``dataset``, ``sampler=dict(type=...)`` and DataLoader arguments (``batch_size``,
    ``num_workers``, ``persistent_workers``, ``pin_memory``, ``drop_last``, ...). ``seed`` is the sampler's
    default seed; segkit's samplers key each index with it and the index's stream position, from which
    ``BaseSegDataset`` seeds that sample's augmentation. ``seed`` also seeds the loader's generator (offset by
    rank), so that in a dataset without per-sample seeding every worker of every rank starts from its own,
    reproducible seed for ``numpy``, ``random`` and ``torch`` (PyTorch derives them from that generator and the
    worker id), and a new epoch's workers draw new ones.
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
    collate_fn = _collate_fn(cfg.pop('collate_fn', None))
    num_workers = cfg.pop('num_workers', 0)
    persistent_workers = cfg.pop('persistent_workers', False) and num_workers > 0
    generator = None
    if seed is not None:
        generator = torch.Generator()
        generator.manual_seed(seed + dist.get_rank())
    return DataLoader(dataset, sampler=sampler, num_workers=num_workers, persistent_workers=persistent_workers,
                      collate_fn=collate_fn, worker_init_fn=_worker_init, generator=generator, **cfg)
