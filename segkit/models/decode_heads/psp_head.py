"""PSPNet's pyramid pooling head (Zhao et al., 2017)."""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn as nn

from segkit.registry import MODELS
from ..layers import ConvModule, resize
from .decode_head import BaseDecodeHead


class PPM(nn.ModuleList):
    """Pyramid pooling: per scale, adaptive average pooling to ``scale x scale`` and a 1x1 ``ConvModule``;
    ``forward`` returns each branch upsampled back to the input size."""

    def __init__(self, pool_scales: Sequence[int], in_channels: int, channels: int, conv_cfg: Optional[dict],
                 norm_cfg: Optional[dict], act_cfg: Optional[dict], align_corners: bool) -> None:
        super().__init__(
            nn.Sequential(nn.AdaptiveAvgPool2d(scale),
                          ConvModule(in_channels, channels, 1, conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg))
            for scale in pool_scales)
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        return [resize(branch(x), x.shape[2:], mode='bilinear', align_corners=self.align_corners) for branch in self]


@MODELS.register_module()
class PSPHead(BaseDecodeHead):
    """Concatenate the input with its pyramid-pooled branches, fuse with a 3x3 ``bottleneck``, classify.

    Args:
        pool_scales: output sizes of the pooling branches.
    """

    def __init__(self, pool_scales: Sequence[int] = (1, 2, 3, 6), **kwargs) -> None:
        super().__init__(**kwargs)
        if not isinstance(pool_scales, (list, tuple)):
            raise TypeError(f'pool_scales must be a list or tuple, got {pool_scales!r}')
        self.pool_scales = pool_scales
        self.psp_modules = PPM(pool_scales, self.in_channels, self.channels, self.conv_cfg, self.norm_cfg,
                               self.act_cfg, self.align_corners)
        self.bottleneck = ConvModule(self.in_channels + len(pool_scales) * self.channels, self.channels, 3,
                                     padding=1, conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)

    def _forward_feature(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """The features before ``cls_seg``."""
        x = self._transform_inputs(inputs)
        return self.bottleneck(torch.cat([x, *self.psp_modules(x)], dim=1))

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.cls_seg(self._forward_feature(inputs))
