"""Dice loss (V-Net form by default), MMSeg 1.x semantics."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from segkit.registry import MODELS
from .utils import check_reduction, validate_reduction, weight_reduce_loss


def dice_loss(pred: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None, eps: float = 1e-3,
              reduction: str = 'mean', naive_dice: bool = False, avg_factor: Optional[float] = None,
              ignore_index: Optional[int] = 255) -> torch.Tensor:
    """One Dice loss per sample from (N, C, ...) activations and same-shape one-hot targets, then reduced.

    V-Net form ``1 - 2*sum(p*t) / (sum(p^2) + sum(t^2))`` (each sum plus ``eps``), or with ``naive_dice``
    ``1 - (2*sum(p*t) + eps) / (sum(p) + sum(t) + eps)``. ``ignore_index`` drops that class *channel* (MMSeg's
    behaviour); it does not mask pixels.
    """
    num_classes = pred.shape[1]
    if ignore_index is not None and 0 <= ignore_index < num_classes:
        if num_classes == 1:
            raise ValueError(f'dice_loss: ignore_index {ignore_index} removes the only class channel')
        keep = torch.arange(num_classes, device=pred.device) != ignore_index
        pred, target = pred[:, keep], target[:, keep]
    pred = pred.flatten(1)
    target = target.flatten(1).float()
    overlap = (pred * target).sum(1)
    if naive_dice:
        dice = (2 * overlap + eps) / (pred.sum(1) + target.sum(1) + eps)
    else:
        dice = 2 * overlap / ((pred * pred).sum(1) + eps + (target * target).sum(1) + eps)
    loss = 1 - dice
    if weight is not None and weight.shape != loss.shape:
        raise ValueError(f'dice_loss: weight must hold one value per sample {tuple(loss.shape)}, '
                         f'got {tuple(weight.shape)}')
    return weight_reduce_loss(loss, weight, reduction, avg_factor)


@MODELS.register_module()
class DiceLoss(nn.Module):
    """Dice loss over all classes of each image, averaged over the batch.

    Args:
        use_sigmoid: activate the logits with a per-class sigmoid (MMSeg's default) rather than a softmax.
        activate: apply that activation here (False when the inputs are already probabilities).
        reduction: 'none', 'mean' or 'sum' over the per-image losses.
        naive_dice: use first powers in the denominator (see :func:`dice_loss`).
        loss_weight: factor on the result.
        ignore_index: a class channel left out of the loss (MMSeg semantics).
        eps: smoothing term.
        loss_name: key under which the decode head logs it.

    As in MMSeg, pixels labelled ``ignore_index`` get an all-zero one-hot target: they add nothing to the
    overlap, but their predictions still count in the denominator.
    """

    def __init__(self, use_sigmoid: bool = True, activate: bool = True, reduction: str = 'mean',
                 naive_dice: bool = False, loss_weight: float = 1.0, ignore_index: Optional[int] = 255,
                 eps: float = 1e-3, loss_name: str = 'loss_dice') -> None:
        super().__init__()
        validate_reduction(reduction)
        self.use_sigmoid = use_sigmoid
        self.activate = activate
        self.reduction = reduction
        self.naive_dice = naive_dice
        self.loss_weight = loss_weight
        self.ignore_index = ignore_index
        self.eps = eps
        self.loss_name = loss_name

    def forward(self, pred: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None,
                avg_factor: Optional[float] = None, reduction_override: Optional[str] = None,
                **kwargs) -> torch.Tensor:
        """Loss of (N, C, H, W) logits against (N, H, W) labels or (N, C, H, W) one-hot targets."""
        reduction = check_reduction(reduction_override, self.reduction)
        if pred.shape != target.shape:
            num_classes = pred.shape[1]
            # labels outside 0..C-1 (the ignore label) land in an extra class that is dropped
            target = F.one_hot(target.clamp(0, num_classes), num_classes + 1)[..., :num_classes]
            target = target.movedim(-1, 1)
        if self.activate:
            if self.use_sigmoid:
                pred = pred.sigmoid()
            elif pred.shape[1] != 1:
                pred = pred.softmax(dim=1)
        return self.loss_weight * dice_loss(pred, target, weight, eps=self.eps, reduction=reduction,
                                            naive_dice=self.naive_dice, avg_factor=avg_factor,
                                            ignore_index=self.ignore_index)
