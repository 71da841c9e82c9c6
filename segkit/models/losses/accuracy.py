"""Pixel accuracy in percent, as logged by the decode heads (``acc_seg``)."""
from __future__ import annotations

from typing import List, Optional, Tuple, Union

import torch

from .utils import EPS


def accuracy(pred: torch.Tensor, target: torch.Tensor, topk: Union[int, Tuple[int, ...]] = 1,
             thresh: Optional[float] = None,
             ignore_index: Optional[int] = None) -> Union[torch.Tensor, List[torch.Tensor]]:
    """Percentage of (non-ignored) pixels whose label is among the ``topk`` highest scores.

    ``pred`` is (N, C, ...) scores, ``target`` (N, ...) labels. With ``thresh``, a hit also needs a score above
    it. Returns a 0-d tensor, or a list of them when ``topk`` is a tuple.
    """
    ks = (topk,) if isinstance(topk, int) else tuple(topk)
    if pred.size(0) == 0:
        zeros = [pred.new_tensor(0.0) for _ in ks]
        return zeros[0] if isinstance(topk, int) else zeros
    if pred.ndim != target.ndim + 1 or pred.size(0) != target.size(0):
        raise ValueError(f'accuracy: pred {tuple(pred.shape)} must be target {tuple(target.shape)} plus a class axis')
    if max(ks) > pred.size(1):
        raise ValueError(f'accuracy: topk {max(ks)} exceeds the {pred.size(1)} classes')
    scores, labels = pred.topk(max(ks), dim=1)
    correct = labels == target.unsqueeze(1)
    if thresh is not None:
        correct &= scores > thresh
    if ignore_index is not None:
        valid = target != ignore_index
        correct = correct & valid.unsqueeze(1)
        total = valid.sum()
    else:
        total = target.numel()
    results = [correct[:, :k].sum().float().add(EPS).mul(100.0 / (total + EPS)) for k in ks]
    return results[0] if isinstance(topk, int) else results
