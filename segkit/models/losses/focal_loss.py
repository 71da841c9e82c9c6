"""Sigmoid focal loss with ignored pixels masked out."""
from __future__ import annotations

from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from segkit.registry import MODELS
from .utils import check_reduction, validate_reduction, weight_reduce_loss


def sigmoid_focal_loss(pred: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None,
                       gamma: float = 2.0, alpha: Union[float, Sequence[float]] = 0.5,
                       class_weight: Optional[Sequence[float]] = None, reduction: str = 'mean',
                       avg_factor: Optional[float] = None) -> torch.Tensor:
    """Focal loss of (P, C) logits against (P, C) targets in [0, 1]; ``weight`` is (P, 1) or (P, C).

    ``alpha`` weighs positives (``1 - alpha`` negatives), per class when a list.
    """
    prob = pred.sigmoid()
    target = target.type_as(pred)
    alpha = pred.new_tensor(alpha)
    one_minus_pt = (1 - prob) * target + prob * (1 - target)
    focal_weight = (alpha * target + (1 - alpha) * (1 - target)) * one_minus_pt.pow(gamma)
    loss = F.binary_cross_entropy_with_logits(pred, target, reduction='none') * focal_weight
    if class_weight is not None:
        weight = pred.new_tensor(class_weight) if weight is None else weight * pred.new_tensor(class_weight)
    return weight_reduce_loss(loss, weight, reduction, avg_factor)


@MODELS.register_module()
class FocalLoss(nn.Module):
    """`Focal loss <https://arxiv.org/abs/1708.02002>`_ over per-class sigmoids (one-vs-rest per pixel).

    Args:
        use_sigmoid: must be True (only the sigmoid form exists, as in MMSeg).
        gamma: focusing exponent.
        alpha: weight of the positive term (a float, or one per class); negatives get ``1 - alpha``.
        reduction: 'none', 'mean' or 'sum'.
        class_weight: per-class weights (a list).
        loss_weight: factor on the result.
        loss_name: key under which the decode head logs it.

    Targets are either class indices (N, ...) or, as in MMSeg, per-class targets with the logits' shape
    (N, C, ...), e.g. one-hot maps or class probabilities.

    With class indices, pixels labelled ``ignore_index`` contribute 0 to every class. The 'mean' is over all
    pixel-class pairs, ignored pixels included, which is what MMSeg's CUDA path computes (its CPU path raises).
    With one output channel the positive class is label 1.

    Per-class targets are used as they are (soft values too), as MMSeg's CPU path does; its CUDA path takes
    their argmax instead, which gives the same loss for one-hot targets. As in MMSeg, a pixel is ignored when
    the argmax of its target vector equals ``ignore_index``: with the default 255 (not a class) nothing is
    ignored, and an all-zero target vector (argmax 0) is a pixel negative for every class unless
    ``ignore_index`` is 0.
    """

    def __init__(self, use_sigmoid: bool = True, gamma: float = 2.0, alpha: Union[float, List[float]] = 0.5,
                 reduction: str = 'mean', class_weight: Optional[List[float]] = None, loss_weight: float = 1.0,
                 loss_name: str = 'loss_focal') -> None:
        super().__init__()
        if not use_sigmoid:
            raise ValueError('FocalLoss: only the sigmoid form exists (use_sigmoid=True)')
        validate_reduction(reduction)
        self.use_sigmoid = use_sigmoid
        self.gamma = float(gamma)
        self.alpha = alpha if isinstance(alpha, (int, float)) else [float(a) for a in alpha]
        self.reduction = reduction
        self.class_weight = None if class_weight is None else [float(w) for w in class_weight]
        self.loss_weight = loss_weight
        self.loss_name = loss_name

    def forward(self, pred: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None,
                avg_factor: Optional[float] = None, reduction_override: Optional[str] = None,
                ignore_index: int = 255, **kwargs) -> torch.Tensor:
        """Loss of (N, C, ...) logits against (N, ...) labels or (N, C, ...) per-class targets; ``weight`` is
        per pixel (N, ...) or per element (N, C, ...) if given."""
        per_class_target = target.shape == pred.shape
        if not per_class_target and (pred.shape[0] != target.shape[0] or pred.shape[2:] != target.shape[1:]):
            raise ValueError(f'FocalLoss: logits {tuple(pred.shape)} match neither labels (N, ...) nor per-class '
                             f'targets (N, C, ...): got targets of shape {tuple(target.shape)}')
        reduction = check_reduction(reduction_override, self.reduction)
        num_classes = pred.shape[1]
        logits = pred.movedim(1, -1).reshape(-1, num_classes)
        if per_class_target:
            targets = target.movedim(1, -1).reshape(-1, num_classes).to(logits.dtype)
            valid = targets.argmax(dim=1) != ignore_index
        else:
            labels = target.reshape(-1)
            valid = labels != ignore_index
            if num_classes == 1:
                targets = (labels == 1).unsqueeze(1)
            else:
                targets = F.one_hot(torch.where(valid, labels, 0), num_classes).bool()
        element_weight = valid.unsqueeze(1).to(logits.dtype)
        if weight is not None:
            if weight.shape == pred.shape:
                weight = weight.movedim(1, -1).reshape(-1, num_classes)
            elif weight.numel() == logits.shape[0]:
                weight = weight.reshape(-1, 1)
            else:
                raise ValueError(f'FocalLoss: weight {tuple(weight.shape)} is neither per pixel '
                                 f'({logits.shape[0]} values) nor shaped like the logits {tuple(pred.shape)}')
            element_weight = element_weight * weight.to(logits.dtype)
        loss = sigmoid_focal_loss(logits, targets, element_weight, self.gamma, self.alpha, self.class_weight,
                                  reduction, avg_factor)
        if reduction == 'none':
            loss = loss.reshape(*pred.shape[:1], *pred.shape[2:], num_classes).movedim(-1, 1)
        return self.loss_weight * loss
