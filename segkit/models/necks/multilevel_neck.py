"""MultiLevelNeck: turns one-resolution features (e.g. from a ViT) into a pyramid, with MMSeg's keys."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from segkit.registry import MODELS

from ..layers import ConvModule, resize


@MODELS.register_module()
class MultiLevelNeck(nn.Module):
    """Per input a 1x1 conv (``lateral_convs``); per output ``i`` a bilinear resize by ``scales[i]`` and a 3x3 conv
    (``convs``). A single input feeds every output; otherwise there is one input per scale."""

    def __init__(self, in_channels: List[int], out_channels: int, scales: Sequence[float] = (0.5, 1, 2, 4),
                 norm_cfg: Optional[dict] = None, act_cfg: Optional[dict] = None) -> None:
        super().__init__()
        if not isinstance(in_channels, (list, tuple)):
            raise TypeError(f'MultiLevelNeck: in_channels must be a list of ints, got {in_channels!r}')
        if len(in_channels) not in (1, len(scales)):
            raise ValueError(f'MultiLevelNeck: {len(in_channels)} inputs for {len(scales)} scales; give one input '
                             f'or one per scale')
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        self.scales = list(scales)
        self.num_outs = len(scales)
        self.lateral_convs = nn.ModuleList(
            ConvModule(c, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg) for c in in_channels)
        self.convs = nn.ModuleList(
            ConvModule(out_channels, out_channels, 3, padding=1, norm_cfg=norm_cfg, act_cfg=act_cfg)
            for _ in scales)

    def init_weights(self) -> None:
        """MMSeg's init: Xavier-uniform conv weights, zero biases."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, inputs: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        if len(inputs) != len(self.in_channels):
            raise ValueError(f'MultiLevelNeck: expected {len(self.in_channels)} inputs, got {len(inputs)}')
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        if len(laterals) == 1:
            laterals = laterals * self.num_outs
        return tuple(conv(resize(x, scale_factor=scale, mode='bilinear'))
                     for conv, x, scale in zip(self.convs, laterals, self.scales))
