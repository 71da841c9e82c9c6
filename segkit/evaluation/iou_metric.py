"""``IoUMetric``: MMSeg's mIoU / mDice / mFscore, from running per-class pixel counts."""
from __future__ import annotations

import logging
import os
import os.path as osp
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Union

import cv2
import numpy as np
import torch

from .. import dist
from ..registry import METRICS

logger = logging.getLogger('segkit')

_ALLOWED = ('mIoU', 'mDice', 'mFscore')


def _histogram(values: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Pixel count per class of ``values`` (values outside [0, num_classes) are not counted)."""
    values = values[(values >= 0) & (values < num_classes)]
    return torch.bincount(values, minlength=num_classes)


def intersect_and_union(pred: torch.Tensor, label: torch.Tensor, num_classes: int,
                        ignore_index: int) -> torch.Tensor:
    """(4, num_classes) int64 counts for one image: intersection, union, predicted and labelled pixels.

    Pixels labelled ``ignore_index`` are left out entirely.
    """
    pred, label = pred.long(), label.long()  # before comparing: uint8 255 would equal an ignore_index of -1
    keep = label != ignore_index
    pred, label = pred[keep], label[keep]
    area_intersect = _histogram(pred[pred == label], num_classes)
    area_pred = _histogram(pred, num_classes)
    area_label = _histogram(label, num_classes)
    return torch.stack([area_intersect, area_pred + area_label - area_intersect, area_pred, area_label]).cpu()


def totals_to_metrics(totals: torch.Tensor, metrics: Sequence[str], nan_to_num: Optional[float] = None,
                      beta: float = 1) -> Dict[str, np.ndarray]:
    """Per-class fractions (NaN where undefined, e.g. a class absent from the labels) and ``aAcc``."""
    intersect, union, pred, label = totals.double().numpy()
    with np.errstate(divide='ignore', invalid='ignore'):
        results = OrderedDict(aAcc=intersect.sum() / label.sum())
        for metric in metrics:
            if metric == 'mIoU':
                results['IoU'] = intersect / union
                results['Acc'] = intersect / label
            elif metric == 'mDice':
                results['Dice'] = 2 * intersect / (pred + label)
                results['Acc'] = intersect / label
            elif metric == 'mFscore':
                precision = intersect / pred
                recall = intersect / label
                results['Fscore'] = (1 + beta ** 2) * precision * recall / (beta ** 2 * precision + recall)
                results['Precision'] = precision
                results['Recall'] = recall
    if nan_to_num is not None:
        results = OrderedDict((k, np.nan_to_num(v, nan=nan_to_num)) for k, v in results.items())
    return results


@METRICS.register_module()
class IoUMetric:
    """Semantic-segmentation metrics over a whole split (MMSeg's ``IoUMetric``).

    ``process`` adds each image's per-class counts to running totals (a (4, C) tensor: memory does not
    grow with the dataset); ``evaluate`` sums them over ranks and returns percentages rounded to 2
    decimals: ``aAcc`` and the means of the per-class values (``mIoU``, ``mAcc``, ``mDice``, ``mFscore``,
    ``mPrecision``, ``mRecall``). An undefined per-class value (NaN: the Acc of a class absent from the
    labels, the IoU of a class absent from labels and predictions) is left out of its mean.
    A per-class table goes to the 'segkit' logger (the runner logs the summary). ``dataset_meta`` (with
    ``classes``) must be set first.

    Args:
        ignore_index: label value left out of every count.
        iou_metrics: any of 'mIoU', 'mDice', 'mFscore'.
        nan_to_num: replace NaN per-class values by this number before averaging.
        beta: weight of recall in the F-score.
        collect_device: 'cpu' or 'gpu': where the totals are summed across ranks.
        output_dir: write each prediction as a label PNG named after its image (+1 when the sample had
            ``reduce_zero_label``, giving the dataset's original ids).
        format_only: only write the PNGs (e.g. for a test server); needs no ``gt_sem_seg``.
        prefix: prepended as ``'prefix/key'`` to the returned names.
    """

    def __init__(self, ignore_index: int = 255, iou_metrics: Union[str, List[str]] = ('mIoU',),
                 nan_to_num: Optional[float] = None, beta: float = 1, collect_device: str = 'cpu',
                 output_dir: Optional[str] = None, format_only: bool = False, prefix: Optional[str] = None) -> None:
        metrics = [iou_metrics] if isinstance(iou_metrics, str) else list(iou_metrics)
        unknown = set(metrics) - set(_ALLOWED)
        if unknown:
            raise KeyError(f'iou_metrics {sorted(unknown)} are not supported; choose from {_ALLOWED}')
        if collect_device not in ('cpu', 'gpu'):
            raise ValueError(f"collect_device must be 'cpu' or 'gpu', got {collect_device!r}")
        if format_only and not output_dir:
            raise ValueError('format_only=True needs an output_dir to write the predictions to')
        self.ignore_index = ignore_index
        self.metrics = metrics
        self.nan_to_num = nan_to_num
        self.beta = beta
        self.collect_device = collect_device
        self.output_dir = output_dir
        self.format_only = format_only
        self.prefix = prefix
        self.dataset_meta: Optional[dict] = None
        if output_dir:
            os.makedirs(output_dir, exist_ok=True)
        self.reset()

    def reset(self) -> None:
        """Forget the counts of the images processed so far."""
        self._totals: Optional[torch.Tensor] = None
        self._last_counts: Optional[torch.Tensor] = None
        self._num_images = 0

    @property
    def num_classes(self) -> int:
        if not self.dataset_meta or not self.dataset_meta.get('classes'):
            raise RuntimeError('IoUMetric needs dataset_meta with the class names: '
                               'set metric.dataset_meta = dataset.metainfo before processing')
        return len(self.dataset_meta['classes'])

    def process(self, data_batch: Optional[dict], data_samples: Sequence[dict]) -> None:
        """Add the counts of each predicted sample (``pred_sem_seg`` against ``gt_sem_seg``)."""
        num_classes = self.num_classes
        for sample in data_samples:
            pred = sample['pred_sem_seg'].squeeze()
            if not self.format_only:
                counts = intersect_and_union(pred, sample['gt_sem_seg'].squeeze().to(pred.device),
                                             num_classes, self.ignore_index)
                self._totals = counts if self._totals is None else self._totals + counts
                self._last_counts = counts
                self._num_images += 1
            if self.output_dir:
                self._write_png(pred, sample)

    def _write_png(self, pred: torch.Tensor, sample: dict) -> None:
        mask = pred.cpu().numpy()
        if sample.get('reduce_zero_label', False):
            mask = mask + 1
        name = osp.splitext(osp.basename(sample['img_path']))[0]
        cv2.imwrite(osp.join(self.output_dir, f'{name}.png'), mask.astype(np.uint8))

    def _summed_totals(self, size: Optional[int]) -> torch.Tensor:
        """Totals over ranks, without the duplicates ``DefaultSampler(round_up=True)`` appends.

        Padding adds at most one sample per rank, always its last one; ``size`` (the dataset length) says
        how many this rank really owns, so an extra last sample is subtracted.
        """
        totals = self._totals if self._totals is not None else torch.zeros(4, self.num_classes, dtype=torch.int64)
        if size is not None:
            rank, world_size = dist.get_dist_info()
            owned = len(range(rank, size, world_size))
            if self._num_images == owned + 1:
                totals = totals - self._last_counts
            elif self._num_images != owned:
                logger.warning(f'IoUMetric: rank {rank} processed {self._num_images} images, expected {owned} '
                               f'of a dataset of {size}')
        if dist.is_distributed():
            use_cuda = self.collect_device == 'gpu' or torch.distributed.get_backend() == 'nccl'
            totals = dist.all_reduce_sum(totals.cuda() if use_cuda else totals.clone()).cpu()
        return totals

    def evaluate(self, size: Optional[int] = None) -> Dict[str, float]:
        """The metrics over everything processed since the last ``evaluate``; resets the counts."""
        if self.format_only:
            self.reset()
            logger.info(f'IoUMetric: predictions written to {self.output_dir}')
            return {}
        totals = self._summed_totals(size)
        self.reset()
        per_class = totals_to_metrics(totals, self.metrics, self.nan_to_num, self.beta)
        summary = {}
        for key, values in per_class.items():
            name = key if key == 'aAcc' else 'm' + key
            mean = np.nanmean(values) if np.isfinite(values).any() else float('nan')
            summary[name] = round(float(mean) * 100, 2)
        per_class.pop('aAcc')
        self._log_table(per_class)
        if self.prefix:
            summary = {f'{self.prefix}/{k}': v for k, v in summary.items()}
        return summary

    def _log_table(self, per_class: Dict[str, np.ndarray]) -> None:
        names = [str(c) for c in self.dataset_meta['classes']]
        width = max(len(n) for n in names + ['Class'])
        lines = ['Class'.ljust(width) + ''.join(f'{k:>11}' for k in per_class)]
        for i, name in enumerate(names):
            lines.append(name.ljust(width) + ''.join(f'{v[i] * 100:>11.2f}' for v in per_class.values()))
        logger.info('per class results:\n' + '\n'.join(lines))
