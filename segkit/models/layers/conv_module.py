"""Conv -> norm -> activation block with MMCV ``ConvModule``'s state-dict names (``conv``, ``bn``/``gn``)."""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
import torch.nn as nn

from segkit.registry import UnknownTypeError

from .norm import build_norm_layer

ACTIVATIONS = {'ReLU': nn.ReLU, 'GELU': nn.GELU, 'LeakyReLU': nn.LeakyReLU, 'PReLU': nn.PReLU,
               'Sigmoid': nn.Sigmoid, 'Tanh': nn.Tanh, 'SiLU': nn.SiLU, 'Swish': nn.SiLU, 'HSwish': nn.Hardswish}

NO_INPLACE_ACTIVATIONS = ('GELU', 'Sigmoid', 'Tanh', 'PReLU')  # their torch modules take no ``inplace``


def build_activation_layer(cfg: dict) -> nn.Module:
    """An activation from an ``act_cfg`` like ``dict(type='ReLU', inplace=True)`` (``inplace`` dropped if unused)."""
    cfg = dict(cfg)
    act_type = cfg.pop('type')
    if act_type not in ACTIVATIONS:
        raise UnknownTypeError(f'unknown activation type {act_type!r}; choose one of {sorted(ACTIVATIONS)}', act_type)
    if act_type in NO_INPLACE_ACTIVATIONS:
        cfg.pop('inplace', None)
    return ACTIVATIONS[act_type](**cfg)


def build_conv_layer(cfg: Optional[dict], *args, **kwargs) -> nn.Conv2d:
    """``nn.Conv2d(*args, **kwargs)``; ``cfg`` is MMCV's ``conv_cfg``, of which only plain convolution exists here."""
    if cfg not in (None, dict(type='Conv2d'), dict(type='Conv')):
        raise ValueError(f'unsupported conv_cfg {cfg}: only plain Conv2d (conv_cfg=None) is available')
    return nn.Conv2d(*args, **kwargs)


class ConvModule(nn.Module):
    """A 2-D convolution followed by optional normalisation and activation.

    ``bias='auto'`` drops the conv bias when a norm layer follows, as MMCV does.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Union[int, Tuple[int, int]],
                 stride: int = 1, padding: int = 0, dilation: int = 1, groups: int = 1,
                 bias: Union[bool, str] = 'auto', conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = None, act_cfg: Optional[dict] = dict(type='ReLU'),
                 inplace: bool = True) -> None:
        super().__init__()
        self.with_norm = norm_cfg is not None
        self.with_activation = act_cfg is not None
        if bias == 'auto':
            bias = not self.with_norm
        self.conv = build_conv_layer(conv_cfg, in_channels, out_channels, kernel_size, stride, padding, dilation,
                                     groups, bias=bias)
        self.norm_name = None
        if self.with_norm:
            self.norm_name, norm = build_norm_layer(norm_cfg, out_channels)
            self.add_module(self.norm_name, norm)
        if self.with_activation:
            act_cfg = dict(act_cfg)
            if act_cfg['type'] not in NO_INPLACE_ACTIVATIONS:
                act_cfg.setdefault('inplace', inplace)
            self.activate = build_activation_layer(act_cfg)
        self.act_cfg = act_cfg
        self.init_weights()

    @property
    def norm(self) -> Optional[nn.Module]:
        return getattr(self, self.norm_name) if self.norm_name else None

    def init_weights(self) -> None:
        """MMCV's default, also applied at construction: Kaiming-normal (fan_out) conv, norm weight 1 / bias 0."""
        leaky = self.with_activation and self.act_cfg['type'] == 'LeakyReLU'
        nonlinearity, slope = ('leaky_relu', self.act_cfg.get('negative_slope', 0.01)) if leaky else ('relu', 0)
        nn.init.kaiming_normal_(self.conv.weight, a=slope, mode='fan_out', nonlinearity=nonlinearity)
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)
        if self.with_norm and getattr(self.norm, 'weight', None) is not None:
            nn.init.ones_(self.norm.weight)
            nn.init.zeros_(self.norm.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm_act(self.conv(x))

    def norm_act(self, x: torch.Tensor) -> torch.Tensor:
        """What follows the convolution: the norm and the activation, where configured."""
        if self.with_norm:
            x = self.norm(x)
        if self.with_activation:
            x = self.activate(x)
        return x
