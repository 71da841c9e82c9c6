"""Lovasz-Softmax and Lovasz hinge losses (Berman et al., 2018), a convex surrogate of IoU."""
from __future__ import annotations

from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from segkit.registry import MODELS
from .utils import ClassWeight, check_reduction, get_class_weight, validate_reduction, weight_reduce_loss

Classes = Union[str, Sequence[int]]


def lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovasz extension of the Jaccard loss for errors sorted in decreasing order."""
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if len(gt_sorted) > 1:
        jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


def lovasz_hinge_flat(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary Lovasz hinge of flat logits against flat 0/1 labels."""
    if labels.numel() == 0:
        return logits.sum() * 0.0
    signs = 2.0 * labels.float() - 1.0
    errors_sorted, perm = torch.sort(1.0 - logits * signs, descending=True)
    return torch.dot(F.relu(errors_sorted), lovasz_grad(labels[perm].float()))


def lovasz_softmax_flat(probs: torch.Tensor, labels: torch.Tensor, classes: Classes = 'present',
                        class_weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Multi-class Lovasz-Softmax of (P, C) probabilities against (P,) labels, averaged over ``classes``."""
    if probs.numel() == 0:
        return probs.sum() * 0.0
    num_classes = probs.size(1)
    losses = []
    for c in (range(num_classes) if classes in ('all', 'present') else classes):
        fg = (labels == c).float()
        if classes == 'present' and fg.sum() == 0:
            continue
        class_pred = probs[:, 0] if num_classes == 1 else probs[:, c]
        errors_sorted, perm = torch.sort((fg - class_pred).abs(), descending=True)
        loss = torch.dot(errors_sorted, lovasz_grad(fg[perm]))
        if class_weight is not None:
            loss = loss * class_weight[c]
        losses.append(loss)
    if not losses:
        return probs.sum() * 0.0
    return torch.stack(losses).mean()


def _flatten_valid(x: torch.Tensor, labels: torch.Tensor, ignore_index: Optional[int]):
    """Flatten (N, C, H, W) or (N, H, W) values to (P, C) / (P,) with the ignored pixels removed."""
    x = x.movedim(1, -1).reshape(-1, x.shape[1]) if x.dim() == 4 else x.reshape(-1)
    labels = labels.reshape(-1)
    if ignore_index is None:
        return x, labels
    keep = labels != ignore_index
    return x[keep], labels[keep]


@MODELS.register_module()
class LovaszLoss(nn.Module):
    """Lovasz loss: multi-class Lovasz-Softmax, or the binary Lovasz hinge on one-channel logits.

    Args:
        loss_type: 'multi_class' (softmax over the logits) or 'binary' (hinge on raw logits, 0/1 labels).
        classes: 'present' (classes present in the labels), 'all', or a list of class indices to average over.
        per_image: one loss per image, then reduced with ``reduction``; otherwise one loss for the whole batch.
        reduction: 'none', 'mean' or 'sum' over the per-image losses. MMSeg insists on 'none' when
            ``per_image=False``; here it is accepted and unused (the batch loss is already a scalar).
        class_weight: per-class factors (multi-class only), a list or a ``.npy``/``.json``/``.yaml`` file.
        loss_weight: factor on the result.
        loss_name: key under which the decode head logs it.

    An image whose pixels are all ignored contributes 0.
    """

    def __init__(self, loss_type: str = 'multi_class', classes: Classes = 'present', per_image: bool = False,
                 reduction: str = 'mean', class_weight: ClassWeight = None, loss_weight: float = 1.0,
                 loss_name: str = 'loss_lovasz') -> None:
        super().__init__()
        if loss_type not in ('binary', 'multi_class'):
            raise ValueError(f"LovaszLoss: loss_type must be 'binary' or 'multi_class', got {loss_type!r}")
        if not (classes in ('all', 'present') or
                (isinstance(classes, (list, tuple)) and all(isinstance(c, int) for c in classes))):
            raise ValueError(f"LovaszLoss: classes must be 'all', 'present' or a list of ints, got {classes!r}")
        validate_reduction(reduction)
        self.loss_type = loss_type
        self.classes = classes
        self.per_image = per_image
        self.reduction = reduction
        self.class_weight = get_class_weight(class_weight)
        self.loss_weight = loss_weight
        self.loss_name = loss_name

    def _flat_loss(self, scores: torch.Tensor, labels: torch.Tensor, ignore_index: Optional[int],
                   class_weight: Optional[torch.Tensor]) -> torch.Tensor:
        scores, labels = _flatten_valid(scores, labels, ignore_index)
        if self.loss_type == 'binary':
            return lovasz_hinge_flat(scores.reshape(-1), labels)
        return lovasz_softmax_flat(scores, labels, self.classes, class_weight)

    def forward(self, cls_score: torch.Tensor, label: torch.Tensor, weight: Optional[torch.Tensor] = None,
                avg_factor: Optional[float] = None, reduction_override: Optional[str] = None,
                ignore_index: Optional[int] = 255, **kwargs) -> torch.Tensor:
        """Loss of (N, C, H, W) logits against (N, H, W) labels."""
        reduction = check_reduction(reduction_override, self.reduction)
        class_weight = None if self.class_weight is None else cls_score.new_tensor(self.class_weight)
        scores = cls_score if self.loss_type == 'binary' else F.softmax(cls_score, dim=1)
        if self.per_image:
            losses: List[torch.Tensor] = [self._flat_loss(s[None], l[None], ignore_index, class_weight)
                                          for s, l in zip(scores, label)]
            loss = weight_reduce_loss(torch.stack(losses), None, reduction, avg_factor)
        else:
            loss = self._flat_loss(scores, label, ignore_index, class_weight)
        return self.loss_weight * loss
