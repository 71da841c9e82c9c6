"""Feature Pyramid Network neck with MMSeg's arguments and state-dict keys."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from segkit.registry import MODELS

from ..layers import ConvModule, initialize, resize
from ..layers.weight_init import InitCfg


@MODELS.register_module()
class FPN(nn.Module):
    """FPN (`arXiv:1612.03144 <https://arxiv.org/abs/1612.03144>`_): top-down fusion of backbone levels.

    Inputs ``start_level .. end_level-1`` (``end_level=-1``: through the last) each get a 1x1 lateral conv
    (``lateral_convs``); every lateral is added to the upsampled (``upsample_cfg``, nearest by default) sum from the
    level above, then a 3x3 conv (``fpn_convs``) gives the output. Up to ``num_outs`` outputs, extra coarser levels
    come from stride-2 max pooling, or with ``add_extra_convs`` from stride-2 3x3 convs appended to ``fpn_convs``
    and fed by ``'on_input'`` (the last used backbone level), ``'on_lateral'`` or ``'on_output'``
    (``True`` means ``'on_input'`` if ``extra_convs_on_inputs`` else ``'on_output'``).
    """

    def __init__(self, in_channels: List[int], out_channels: int, num_outs: int, start_level: int = 0,
                 end_level: int = -1, add_extra_convs: Union[bool, str] = False, extra_convs_on_inputs: bool = False,
                 relu_before_extra_convs: bool = False, no_norm_on_lateral: bool = False,
                 conv_cfg: Optional[dict] = None, norm_cfg: Optional[dict] = None, act_cfg: Optional[dict] = None,
                 upsample_cfg: dict = dict(mode='nearest'),
                 init_cfg: InitCfg = dict(type='Xavier', layer='Conv2d', distribution='uniform')) -> None:
        super().__init__()
        if not isinstance(in_channels, (list, tuple)):
            raise TypeError(f'FPN: in_channels must be a list of ints, got {in_channels!r}')
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        self.num_ins = len(in_channels)
        self.num_outs = num_outs
        self.relu_before_extra_convs = relu_before_extra_convs
        self.upsample_cfg = dict(upsample_cfg)
        self.init_cfg = init_cfg
        self.start_level = start_level
        self.backbone_end_level = self.num_ins if end_level == -1 else end_level
        if end_level == -1 and num_outs < self.num_ins - start_level:
            raise ValueError(f'FPN: num_outs={num_outs} is fewer than the {self.num_ins - start_level} input levels '
                             f'from start_level={start_level}')
        if end_level != -1 and (end_level > self.num_ins or num_outs != end_level - start_level):
            raise ValueError(f'FPN: end_level={end_level} needs end_level <= {self.num_ins} (inputs) and '
                             f'num_outs == end_level - start_level (got num_outs={num_outs})')
        if isinstance(add_extra_convs, str) and add_extra_convs not in ('on_input', 'on_lateral', 'on_output'):
            raise ValueError(f"FPN: add_extra_convs must be a bool or one of 'on_input', 'on_lateral', "
                             f"'on_output', got {add_extra_convs!r}")
        if add_extra_convs is True:
            add_extra_convs = 'on_input' if extra_convs_on_inputs else 'on_output'
        self.add_extra_convs = add_extra_convs

        conv_args = dict(conv_cfg=conv_cfg, act_cfg=act_cfg, inplace=False)
        self.lateral_convs = nn.ModuleList()
        self.fpn_convs = nn.ModuleList()
        for i in range(start_level, self.backbone_end_level):
            self.lateral_convs.append(ConvModule(in_channels[i], out_channels, 1,
                                                 norm_cfg=None if no_norm_on_lateral else norm_cfg, **conv_args))
            self.fpn_convs.append(ConvModule(out_channels, out_channels, 3, padding=1, norm_cfg=norm_cfg,
                                             **conv_args))
        extra_levels = num_outs - self.backbone_end_level + start_level
        if add_extra_convs:
            for i in range(extra_levels):
                extra_in = (in_channels[self.backbone_end_level - 1] if i == 0 and add_extra_convs == 'on_input'
                            else out_channels)
                self.fpn_convs.append(ConvModule(extra_in, out_channels, 3, stride=2, padding=1, norm_cfg=norm_cfg,
                                                 **conv_args))

    def init_weights(self) -> None:
        """Apply ``init_cfg`` (default: Xavier-uniform convs, zero biases); ``None`` keeps the layers' own init."""
        if self.init_cfg is not None:
            initialize(self, self.init_cfg)

    def forward(self, inputs: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        if len(inputs) != self.num_ins:
            raise ValueError(f'FPN: expected {self.num_ins} input levels, got {len(inputs)}')
        laterals = [conv(inputs[i + self.start_level]) for i, conv in enumerate(self.lateral_convs)]
        for i in range(len(laterals) - 1, 0, -1):
            size = None if 'scale_factor' in self.upsample_cfg else laterals[i - 1].shape[2:]
            laterals[i - 1] = laterals[i - 1] + resize(laterals[i], size=size, **self.upsample_cfg)
        outs = [self.fpn_convs[i](lateral) for i, lateral in enumerate(laterals)]
        num_used = len(laterals)
        if self.num_outs > num_used and not self.add_extra_convs:
            for _ in range(self.num_outs - num_used):
                outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        elif self.num_outs > num_used:
            source = {'on_input': inputs[self.backbone_end_level - 1], 'on_lateral': laterals[-1],
                      'on_output': outs[-1]}[self.add_extra_convs]
            outs.append(self.fpn_convs[num_used](source))
            for i in range(num_used + 1, self.num_outs):
                outs.append(self.fpn_convs[i](F.relu(outs[-1]) if self.relu_before_extra_convs else outs[-1]))
        return tuple(outs)
