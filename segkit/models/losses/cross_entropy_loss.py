"""Softmax and sigmoid (binary) cross-entropy with MMSeg's averaging rules."""
from __future__ import annotations

import warnings
from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from segkit.registry import MODELS
from .utils import ClassWeight, check_reduction, get_class_weight, validate_reduction, weight_reduce_loss


def cross_entropy(pred: torch.Tensor, label: torch.Tensor, weight: Optional[torch.Tensor] = None,
                  class_weight: Optional[torch.Tensor] = None, reduction: str = 'mean',
                  avg_factor: Optional[Union[float, torch.Tensor]] = None, ignore_index: int = -100,
                  avg_non_ignore: bool = False) -> torch.Tensor:
    """Softmax cross-entropy of (N, C, ...) logits against (N, ...) labels; ignored pixels contribute 0.

    The 'mean' divides by: the pixel count, ignored pixels included (``avg_non_ignore=False``, MMSeg's
    default), or the non-ignored pixel count (``avg_non_ignore=True``). With ``class_weight`` it divides by
    the summed class weights of the non-ignored pixels, as ``F.cross_entropy(weight=..., ignore_index=...)``.
    """
    loss = F.cross_entropy(pred, label, weight=class_weight, reduction='none', ignore_index=ignore_index)
    if avg_factor is None and reduction == 'mean':
        valid = label != ignore_index
        if class_weight is not None:
            avg_factor = class_weight[label[valid]].sum()
        elif avg_non_ignore:
            avg_factor = valid.sum()
        else:
            avg_factor = label.numel()
    if weight is not None:
        weight = weight.float()
    return weight_reduce_loss(loss, weight, reduction, avg_factor)


def binary_cross_entropy(pred: torch.Tensor, label: torch.Tensor, weight: Optional[torch.Tensor] = None,
                         class_weight: Optional[torch.Tensor] = None, reduction: str = 'mean',
                         avg_factor: Optional[Union[float, torch.Tensor]] = None, ignore_index: int = -100,
                         avg_non_ignore: bool = False) -> torch.Tensor:
    """Sigmoid cross-entropy: per class against one-hot labels, or, for one-channel logits, against 0/1 labels.

    Ignored (and negative) labels get weight 0; the 'mean' counts them unless ``avg_non_ignore``.
    ``class_weight`` is the positive-class weight (``pos_weight``).
    """
    if pred.size(1) == 1:
        labelled = label[label != ignore_index]
        if labelled.numel() and labelled.max() > 1:
            raise ValueError(f'one-channel (sigmoid) logits need 0/1 labels, got a label {int(labelled.max())}')
        pred = pred.squeeze(1)
    valid = (label >= 0) & (label != ignore_index)
    if pred.dim() != label.dim():
        target = torch.zeros_like(pred)
        target.scatter_(1, torch.where(valid, label, 0).unsqueeze(1), 1.0)
        valid = valid.unsqueeze(1).expand_as(pred)
        if weight is not None:
            weight = weight.unsqueeze(1)
        if class_weight is not None:  # one positive weight per class channel
            class_weight = class_weight.view(-1, *[1] * (pred.dim() - 2))
    else:
        target = label.float()
    valid = valid.float()
    element_weight = valid if weight is None else valid * weight.float()
    if reduction == 'mean' and avg_factor is None and avg_non_ignore:
        avg_factor = valid.sum()
    loss = F.binary_cross_entropy_with_logits(pred, target, pos_weight=class_weight, reduction='none')
    return weight_reduce_loss(loss, element_weight, reduction, avg_factor)


@MODELS.register_module()
class CrossEntropyLoss(nn.Module):
    """Cross-entropy loss (softmax, or sigmoid with ``use_sigmoid=True``).

    Args:
        use_sigmoid: per-class sigmoid (binary) cross-entropy instead of softmax.
        use_mask: MMDetection's instance-mask variant; not available in segkit (must be False).
        reduction: 'none', 'mean' or 'sum'.
        class_weight: per-class weights, a list or a ``.npy``/``.json``/``.yaml`` file.
        loss_weight: factor on the result.
        loss_name: key under which the decode head logs it (keys containing ``loss`` are optimised).
        avg_non_ignore: average over the non-ignored pixels only (torch's convention) instead of all pixels.

    Semantics where MMSeg 1.2.2 itself raises (class weights with ignored pixels present): the mean is the
    class-weighted mean over the non-ignored pixels, i.e. ``F.cross_entropy(logits, labels, weight=class_weight,
    ignore_index=ignore_index)``, whatever ``avg_non_ignore``. Without ignored pixels this is MMSeg's value.
    """

    def __init__(self, use_sigmoid: bool = False, use_mask: bool = False, reduction: str = 'mean',
                 class_weight: ClassWeight = None, loss_weight: float = 1.0, loss_name: str = 'loss_ce',
                 avg_non_ignore: bool = False) -> None:
        super().__init__()
        if use_mask:
            raise ValueError('CrossEntropyLoss: use_mask=True (instance-mask cross-entropy) is not supported')
        validate_reduction(reduction)
        self.use_sigmoid = use_sigmoid
        self.reduction = reduction
        self.loss_weight = loss_weight
        self.class_weight = get_class_weight(class_weight)
        self.avg_non_ignore = avg_non_ignore
        self.loss_name = loss_name
        if not avg_non_ignore and reduction == 'mean':
            warnings.warn('CrossEntropyLoss: avg_non_ignore=False averages over all pixels, ignored ones included '
                          '(MMSeg default); set avg_non_ignore=True for the mean over non-ignored pixels')

    def extra_repr(self) -> str:
        return f'use_sigmoid={self.use_sigmoid}, avg_non_ignore={self.avg_non_ignore}, loss_name={self.loss_name!r}'

    def forward(self, cls_score: torch.Tensor, label: torch.Tensor, weight: Optional[torch.Tensor] = None,
                avg_factor: Optional[float] = None, reduction_override: Optional[str] = None,
                ignore_index: int = -100, **kwargs) -> torch.Tensor:
        """Loss of (N, C, H, W) logits against (N, H, W) labels; ``weight`` is an optional per-pixel weight."""
        reduction = check_reduction(reduction_override, self.reduction)
        class_weight = None if self.class_weight is None else cls_score.new_tensor(self.class_weight)
        criterion = binary_cross_entropy if self.use_sigmoid else cross_entropy
        return self.loss_weight * criterion(cls_score, label, weight, class_weight=class_weight, reduction=reduction,
                                            avg_factor=avg_factor, ignore_index=ignore_index,
                                            avg_non_ignore=self.avg_non_ignore)
