"""SegFormer's all-MLP decoder (Xie et al., 2021)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from segkit.registry import MODELS
from ..layers import ConvModule, resize
from .decode_head import BaseDecodeHead


@MODELS.register_module()
class SegformerHead(BaseDecodeHead):
    """Project each stage to ``channels`` (1x1 conv + norm + ``act_cfg``), upsample all to the first stage's
    size, concatenate in stage order, fuse with a 1x1 conv + norm + ReLU, classify.

    ``act_cfg=None`` leaves the per-stage projections linear, as in the HF/NVlabs decoder (see
    ``tools/model_converters/hf2segkit.py``).

    Args:
        interpolate_mode: upsampling mode of the projected stage features.
    """

    def __init__(self, interpolate_mode: str = 'bilinear', **kwargs) -> None:
        super().__init__(input_transform='multiple_select', **kwargs)
        self.interpolate_mode = interpolate_mode
        self.convs = nn.ModuleList(
            ConvModule(c, self.channels, 1, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg) for c in self.in_channels)
        self.fusion_conv = ConvModule(self.channels * len(self.in_channels), self.channels, 1,
                                      norm_cfg=self.norm_cfg)

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        inputs = self._transform_inputs(inputs)
        size = inputs[0].shape[2:]
        outs = [resize(conv(x), size, mode=self.interpolate_mode, align_corners=self.align_corners)
                for conv, x in zip(self.convs, inputs)]
        return self.cls_seg(self.fusion_conv(torch.cat(outs, dim=1)))
