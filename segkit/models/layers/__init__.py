"""Building blocks shared by backbones, necks and heads."""
from .conv_module import ConvModule, build_activation_layer
from .drop_path import DropPath
from .norm import SyncBatchNorm, build_norm_layer
from .resize import resize

__all__ = ['ConvModule', 'DropPath', 'SyncBatchNorm', 'build_activation_layer', 'build_norm_layer', 'resize']
