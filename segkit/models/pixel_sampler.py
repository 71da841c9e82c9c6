"""Online hard example mining (OHEM): train a decode head on its hardest pixels only."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from segkit.registry import MODELS


@MODELS.register_module()
class OHEMPixelSampler:
    """Per-pixel 0/1 loss weights that keep the hard pixels of a batch.

    Built by a decode head from ``sampler=dict(type='OHEMPixelSampler', thresh=..., min_kept=...)``, which
    passes itself as ``context`` (the sampler reads its ``losses`` and ``ignore_index``).

    Args:
        context: the decode head.
        thresh: keep the non-ignored pixels whose probability of the true class is below this; when fewer than
            ``min_kept`` x batch size pass, the threshold is raised to that many pixels' probability. Without
            ``thresh``, keep the ``min_kept`` x batch size non-ignored pixels with the highest loss.
        min_kept: pixels kept at least, per image of the batch (counted over the whole batch, as MMSeg).
    """

    def __init__(self, context: nn.Module, thresh: Optional[float] = None, min_kept: int = 100000) -> None:
        if min_kept <= 1:
            raise ValueError(f'OHEMPixelSampler: min_kept must be > 1, got {min_kept}')
        self.context = context
        self.thresh = thresh
        self.min_kept = min_kept

    @torch.no_grad()
    def sample(self, seg_logits: torch.Tensor, seg_label: torch.Tensor) -> torch.Tensor:
        """(N, H, W) float weights, 1 for kept pixels, from (N, C, H, W) logits and (N, H, W) labels."""
        if seg_logits.shape[2:] != seg_label.shape[-2:]:
            raise ValueError(f'OHEMPixelSampler: logits {tuple(seg_logits.shape)} and labels '
                             f'{tuple(seg_label.shape)} differ in size')
        seg_label = seg_label.long()
        ignore_index = self.context.ignore_index
        batch_kept = self.min_kept * seg_label.size(0)
        valid = seg_label != ignore_index
        seg_weight = seg_logits.new_zeros(seg_label.shape)
        valid_weight = seg_weight[valid]
        if self.thresh is not None:
            prob = F.softmax(seg_logits, dim=1)
            prob = prob.gather(1, torch.where(valid, seg_label, 0).unsqueeze(1)).squeeze(1)[valid]
            sorted_prob = prob.sort().values
            min_threshold = sorted_prob[min(batch_kept, sorted_prob.numel() - 1)] if sorted_prob.numel() else 0.0
            valid_weight[prob < max(min_threshold, self.thresh)] = 1.0
        else:
            losses = sum(loss(seg_logits, seg_label, weight=None, ignore_index=ignore_index,
                              reduction_override='none') for loss in self.context.losses)
            valid_weight[losses[valid].sort(descending=True).indices[:batch_kept]] = 1.0
        seg_weight[valid] = valid_weight
        return seg_weight
