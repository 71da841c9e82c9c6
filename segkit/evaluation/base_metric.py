"""``BaseMetric``: MMEngine's base class for metrics that keep one result per sample and compute at the end."""
from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import Any, Dict, List, Optional, Sequence

import torch.distributed

from .. import dist


class BaseMetric(metaclass=ABCMeta):
    """Subclasses append what they need per sample to ``self.results`` in ``process`` and turn the whole list
    into numbers in ``compute_metrics``; ``evaluate`` gathers the lists of all ranks (in dataset order, without
    the samples the sampler repeated to even out the ranks), computes on rank 0 and shares the result.

    Metrics written for MMEngine (``from mmengine.evaluator import BaseMetric``) port by changing that import.

    Args:
        collect_device, collect_dir: accepted for MMEngine configs; results are always gathered as Python
            objects through the process group.
        prefix: prepended to every key as ``'<prefix>/<key>'``; ``default_prefix`` when not given.
    """

    default_prefix: Optional[str] = None

    def __init__(self, collect_device: str = 'cpu', prefix: Optional[str] = None,
                 collect_dir: Optional[str] = None) -> None:
        self.collect_device = collect_device
        self.prefix = prefix or self.default_prefix
        self.results: List[Any] = []
        self.dataset_meta: Optional[dict] = None

    @abstractmethod
    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Add the results of one batch to ``self.results``."""

    @abstractmethod
    def compute_metrics(self, results: list) -> Dict[str, Any]:
        """The metrics of all ``results`` (every rank's, in dataset order)."""

    def evaluate(self, size: int) -> Dict[str, Any]:
        """Metrics over the first ``size`` results of all ranks; clears ``self.results``."""
        if not self.results:
            raise RuntimeError(f'{type(self).__name__} got no results: process() must append to self.results')
        results = self.results
        if dist.is_distributed():
            parts: List[Any] = [None] * dist.get_world_size()
            torch.distributed.all_gather_object(parts, self.results)
            # rank r held samples r, r + world_size, ...: interleave them back into dataset order
            shortest = min(len(part) for part in parts)
            results = [item for group in zip(*parts) for item in group]
            results += [part[shortest] for part in parts if len(part) > shortest]  # round_up=False leftovers
        metrics = None
        if dist.is_main_process():
            metrics = self.compute_metrics(results[:size])
            if self.prefix:
                metrics = {f'{self.prefix}/{key}': value for key, value in metrics.items()}
        self.results = []
        return dist.broadcast_object(metrics)
