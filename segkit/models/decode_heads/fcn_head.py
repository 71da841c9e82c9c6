"""Fully convolutional head (Long et al., 2015), also the usual auxiliary head."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from segkit.registry import MODELS
from ..layers import ConvModule
from .decode_head import BaseDecodeHead


@MODELS.register_module()
class FCNHead(BaseDecodeHead):
    """``num_convs`` conv blocks, optionally concatenated with the input and fused (``conv_cat``), classify.

    Args:
        num_convs: conv blocks (0 passes the input through; then ``in_channels`` must equal ``channels``).
        kernel_size: their kernel size.
        concat_input: concatenate input and conv output and fuse them with ``conv_cat``.
        dilation: dilation of the conv blocks.
    """

    def __init__(self, num_convs: int = 2, kernel_size: int = 3, concat_input: bool = True, dilation: int = 1,
                 **kwargs) -> None:
        if num_convs < 0 or not isinstance(dilation, int) or dilation < 1:
            raise ValueError(f'FCNHead: need num_convs >= 0 and an int dilation >= 1, '
                             f'got num_convs={num_convs}, dilation={dilation!r}')
        super().__init__(**kwargs)
        self.num_convs = num_convs
        self.concat_input = concat_input
        self.kernel_size = kernel_size
        if num_convs == 0 and self.in_channels != self.channels:
            raise ValueError(f'FCNHead: num_convs=0 needs in_channels == channels, '
                             f'got {self.in_channels} and {self.channels}')
        padding = (kernel_size // 2) * dilation
        blocks = [ConvModule(self.in_channels if i == 0 else self.channels, self.channels, kernel_size,
                             padding=padding, dilation=dilation, conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg,
                             act_cfg=self.act_cfg) for i in range(num_convs)]
        self.convs = nn.Sequential(*blocks) if blocks else nn.Identity()
        if concat_input:
            self.conv_cat = ConvModule(self.in_channels + self.channels, self.channels, kernel_size,
                                       padding=kernel_size // 2, conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg,
                                       act_cfg=self.act_cfg)

    def _forward_feature(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """The features before ``cls_seg``."""
        x = self._transform_inputs(inputs)
        feats = self.convs(x)
        if self.concat_input:
            feats = self.conv_cat(torch.cat([x, feats], dim=1))
        return feats

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.cls_seg(self._forward_feature(inputs))
