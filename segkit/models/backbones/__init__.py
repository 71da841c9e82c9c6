"""Backbones, registered in ``MODELS`` under MMSeg's names."""
from .mit import MixVisionTransformer
from .resnet import ResNet, ResNetV1c, ResNetV1d

__all__ = ['MixVisionTransformer', 'ResNet', 'ResNetV1c', 'ResNetV1d']
