"""Building blocks shared by backbones, necks and heads."""
from .conv_module import ConvModule, build_activation_layer, build_conv_layer
from .drop_path import DropPath
from .norm import SyncBatchNorm, build_norm_layer
from .resize import resize
from .weight_init import initialize, load_pretrained, resolve_init_cfg

__all__ = ['ConvModule', 'DropPath', 'SyncBatchNorm', 'build_activation_layer', 'build_conv_layer', 'build_norm_layer',
           'initialize', 'load_pretrained', 'resize', 'resolve_init_cfg']
