"""Losses (registered in ``MODELS``) and the pixel-accuracy metric the decode heads log."""
from .accuracy import accuracy
from .cross_entropy_loss import CrossEntropyLoss, binary_cross_entropy, cross_entropy
from .dice_loss import DiceLoss, dice_loss
from .focal_loss import FocalLoss, sigmoid_focal_loss
from .lovasz_loss import LovaszLoss
from .utils import get_class_weight, weight_reduce_loss

__all__ = ['CrossEntropyLoss', 'DiceLoss', 'FocalLoss', 'LovaszLoss', 'accuracy', 'binary_cross_entropy',
           'cross_entropy', 'dice_loss', 'get_class_weight', 'sigmoid_focal_loss', 'weight_reduce_loss']
