"""ResNet backbones (ResNet, ResNetV1c, ResNetV1d) with MMSeg's arguments and state-dict keys.

Segmentation variants dilate the last stages instead of striding them (e.g. ``strides=(1, 2, 1, 1)``,
``dilations=(1, 1, 2, 4)`` for an output stride of 8, the "D8" models).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Type, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from torch.nn.modules.batchnorm import _BatchNorm

from segkit.registry import MODELS

from ..layers import build_conv_layer, build_norm_layer, initialize, resolve_init_cfg
from ..layers.weight_init import InitCfg


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection. Only the first conv is dilated, as in MMSeg."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: Optional[nn.Module] = None, style: str = 'pytorch', with_cp: bool = False,
                 conv_cfg: Optional[dict] = None, norm_cfg: dict = dict(type='BN')) -> None:
        super().__init__()
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, planes, postfix=1)
        self.norm2_name, norm2 = build_norm_layer(norm_cfg, planes, postfix=2)
        self.conv1 = build_conv_layer(conv_cfg, inplanes, planes, 3, stride=stride, padding=dilation,
                                      dilation=dilation, bias=False)
        self.add_module(self.norm1_name, norm1)
        self.conv2 = build_conv_layer(conv_cfg, planes, planes, 3, padding=1, bias=False)
        self.add_module(self.norm2_name, norm2)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.with_cp = with_cp

    @property
    def norm1(self) -> nn.Module:
        return getattr(self, self.norm1_name)

    @property
    def norm2(self) -> nn.Module:
        return getattr(self, self.norm2_name)

    @property
    def last_norm(self) -> nn.Module:
        """The norm closing the residual branch (zeroed by ``zero_init_residual``)."""
        return self.norm2

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return out + (x if self.downsample is None else self.downsample(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return self.relu(cp.checkpoint(self._residual, x, use_reentrant=False))
        return self.relu(self._residual(x))


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x4 channels) with a residual connection.

    ``style='pytorch'`` strides the 3x3 conv, ``'caffe'`` the first 1x1 conv.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: Optional[nn.Module] = None, style: str = 'pytorch', with_cp: bool = False,
                 conv_cfg: Optional[dict] = None, norm_cfg: dict = dict(type='BN')) -> None:
        super().__init__()
        if style not in ('pytorch', 'caffe'):
            raise ValueError(f"ResNet style must be 'pytorch' or 'caffe', got {style!r}")
        conv1_stride, conv2_stride = (1, stride) if style == 'pytorch' else (stride, 1)
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, planes, postfix=1)
        self.norm2_name, norm2 = build_norm_layer(norm_cfg, planes, postfix=2)
        self.norm3_name, norm3 = build_norm_layer(norm_cfg, planes * self.expansion, postfix=3)
        self.conv1 = build_conv_layer(conv_cfg, inplanes, planes, 1, stride=conv1_stride, bias=False)
        self.add_module(self.norm1_name, norm1)
        self.conv2 = build_conv_layer(conv_cfg, planes, planes, 3, stride=conv2_stride, padding=dilation,
                                      dilation=dilation, bias=False)
        self.add_module(self.norm2_name, norm2)
        self.conv3 = build_conv_layer(conv_cfg, planes, planes * self.expansion, 1, bias=False)
        self.add_module(self.norm3_name, norm3)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.with_cp = with_cp

    @property
    def norm1(self) -> nn.Module:
        return getattr(self, self.norm1_name)

    @property
    def norm2(self) -> nn.Module:
        return getattr(self, self.norm2_name)

    @property
    def norm3(self) -> nn.Module:
        return getattr(self, self.norm3_name)

    @property
    def last_norm(self) -> nn.Module:
        """The norm closing the residual branch (zeroed by ``zero_init_residual``)."""
        return self.norm3

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.relu(self.norm2(self.conv2(out)))
        out = self.norm3(self.conv3(out))
        return out + (x if self.downsample is None else self.downsample(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return self.relu(cp.checkpoint(self._residual, x, use_reentrant=False))
        return self.relu(self._residual(x))


Block = Union[Type[BasicBlock], Type[Bottleneck]]


class ResLayer(nn.Sequential):
    """One ResNet stage: ``num_blocks`` blocks, the first one striding and (if shapes change) downsampling.

    ``downsample`` is ``[AvgPool2d (avg_down only), 1x1 conv, norm]``. The first block's dilation is
    ``multi_grid[0]`` if given, else ``dilation // 2`` with ``contract_dilation``, else ``dilation``; the others use
    ``multi_grid[i]`` or ``dilation`` (extra ``multi_grid`` entries are ignored).
    """

    def __init__(self, block: Block, inplanes: int, planes: int, num_blocks: int, stride: int = 1,
                 dilation: int = 1, avg_down: bool = False, conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN'), multi_grid: Optional[Sequence[int]] = None,
                 contract_dilation: bool = False, style: str = 'pytorch', with_cp: bool = False) -> None:
        out_channels = planes * block.expansion
        downsample = None
        if stride != 1 or inplanes != out_channels:
            pool = [nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False)] if avg_down else []
            downsample = nn.Sequential(
                *pool,
                build_conv_layer(conv_cfg, inplanes, out_channels, 1, stride=1 if avg_down else stride, bias=False),
                build_norm_layer(norm_cfg, out_channels)[1])
        if multi_grid is not None and len(multi_grid) < num_blocks:
            raise ValueError(f'multi_grid {tuple(multi_grid)} needs a dilation for each of the {num_blocks} blocks '
                             f'of the last stage')
        if multi_grid is not None:
            dilations = list(multi_grid[:num_blocks])
        else:
            first = dilation // 2 if dilation > 1 and contract_dilation else dilation
            dilations = [first] + [dilation] * (num_blocks - 1)
        common = dict(style=style, with_cp=with_cp, conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        blocks = [block(inplanes, planes, stride, dilations[0], downsample, **common)]
        blocks += [block(out_channels, planes, 1, d, None, **common) for d in dilations[1:]]
        super().__init__(*blocks)


@MODELS.register_module()
class ResNet(nn.Module):
    """ResNet (`arXiv:1512.03385 <https://arxiv.org/abs/1512.03385>`_), MMSeg's ``ResNet`` (a.k.a. V1b).

    ``deep_stem`` replaces the 7x7 stem conv by three 3x3 convs (``stem.{0,3,6}``), ``avg_down`` downsamples
    shortcuts by average pooling before their 1x1 conv. ``frozen_stages=k`` freezes the stem and stages 1..k
    (no gradients, norms in eval mode); ``norm_eval`` keeps every BatchNorm in eval mode during training.
    ``multi_grid`` sets per-block dilations of the last stage; ``contract_dilation`` halves the first block's
    dilation in dilated stages. ``forward`` returns a tuple with the outputs of the stages in ``out_indices``.
    ``dcn``, ``stage_with_dcn`` and ``plugins`` exist for config compatibility; only their defaults are supported.
    """

    arch_settings = {
        18: (BasicBlock, (2, 2, 2, 2)),
        34: (BasicBlock, (3, 4, 6, 3)),
        50: (Bottleneck, (3, 4, 6, 3)),
        101: (Bottleneck, (3, 4, 23, 3)),
        152: (Bottleneck, (3, 8, 36, 3)),
    }

    def __init__(self, depth: int, in_channels: int = 3, stem_channels: int = 64, base_channels: int = 64,
                 num_stages: int = 4, strides: Sequence[int] = (1, 2, 2, 2), dilations: Sequence[int] = (1, 1, 1, 1),
                 out_indices: Sequence[int] = (0, 1, 2, 3), style: str = 'pytorch', deep_stem: bool = False,
                 avg_down: bool = False, frozen_stages: int = -1, conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN', requires_grad=True), norm_eval: bool = False,
                 dcn: Optional[dict] = None, stage_with_dcn: Sequence[bool] = (False, False, False, False),
                 plugins: Optional[list] = None, multi_grid: Optional[Sequence[int]] = None,
                 contract_dilation: bool = False, with_cp: bool = False, zero_init_residual: bool = True,
                 pretrained: Optional[str] = None, init_cfg: InitCfg = None) -> None:
        super().__init__()
        name = type(self).__name__
        if depth not in self.arch_settings:
            raise KeyError(f'{name}: invalid depth {depth}; choose one of {sorted(self.arch_settings)}')
        if dcn is not None or plugins is not None:
            raise NotImplementedError(f'{name}: deformable convolutions (dcn) and plugins are not supported; '
                                      f'set dcn=None and plugins=None')
        if not 1 <= num_stages <= 4:
            raise ValueError(f'{name}: num_stages must be in 1..4, got {num_stages}')
        if len(strides) != num_stages or len(dilations) != num_stages:
            raise ValueError(f'{name}: strides {tuple(strides)} and dilations {tuple(dilations)} need one entry '
                             f'per stage (num_stages={num_stages})')
        out_indices = tuple(out_indices)
        if not out_indices or not all(0 <= i < num_stages for i in out_indices):
            raise ValueError(f'{name}: out_indices {out_indices} must be stage indices in [0, {num_stages})')
        self.init_cfg = resolve_init_cfg(init_cfg, pretrained, name)
        self.depth = depth
        self.out_indices = out_indices
        self.deep_stem = deep_stem
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.zero_init_residual = zero_init_residual
        self.block, stage_blocks = self.arch_settings[depth]
        self.stage_blocks = stage_blocks[:num_stages]

        self._make_stem_layer(in_channels, stem_channels, conv_cfg, norm_cfg)
        self.res_layers = []
        inplanes = stem_channels
        for i, num_blocks in enumerate(self.stage_blocks):
            planes = base_channels * 2 ** i
            layer = ResLayer(self.block, inplanes, planes, num_blocks, strides[i], dilations[i], avg_down,
                             conv_cfg, norm_cfg, multi_grid if i == num_stages - 1 else None, contract_dilation,
                             style, with_cp)
            inplanes = planes * self.block.expansion
            self.add_module(f'layer{i + 1}', layer)
            self.res_layers.append(f'layer{i + 1}')
        self.feat_dim = inplanes
        self._freeze_stages()

    def _make_stem_layer(self, in_channels: int, stem_channels: int, conv_cfg: Optional[dict],
                         norm_cfg: dict) -> None:
        if self.deep_stem:
            half = stem_channels // 2
            self.stem = nn.Sequential(
                build_conv_layer(conv_cfg, in_channels, half, 3, stride=2, padding=1, bias=False),
                build_norm_layer(norm_cfg, half)[1],
                nn.ReLU(inplace=True),
                build_conv_layer(conv_cfg, half, half, 3, stride=1, padding=1, bias=False),
                build_norm_layer(norm_cfg, half)[1],
                nn.ReLU(inplace=True),
                build_conv_layer(conv_cfg, half, stem_channels, 3, stride=1, padding=1, bias=False),
                build_norm_layer(norm_cfg, stem_channels)[1],
                nn.ReLU(inplace=True))
        else:
            self.conv1 = build_conv_layer(conv_cfg, in_channels, stem_channels, 7, stride=2, padding=3, bias=False)
            self.norm1_name, norm1 = build_norm_layer(norm_cfg, stem_channels, postfix=1)
            self.add_module(self.norm1_name, norm1)
            self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    @property
    def norm1(self) -> nn.Module:
        return getattr(self, self.norm1_name)

    def _frozen_modules(self) -> list:
        if self.frozen_stages < 0:
            return []
        stem = [self.stem] if self.deep_stem else [self.conv1, self.norm1]
        return stem + [getattr(self, f'layer{i}') for i in range(1, self.frozen_stages + 1)]

    def _freeze_stages(self) -> None:
        for m in self._frozen_modules():
            m.eval()
            for param in m.parameters():
                param.requires_grad = False

    def init_weights(self) -> None:
        """Load ``init_cfg`` if set; otherwise MMSeg's default: Kaiming-normal (fan_out) convs, norms 1 / 0,
        and with ``zero_init_residual`` the last norm of every block zeroed, so each block starts as identity."""
        if self.init_cfg is not None:
            initialize(self, self.init_cfg)
            return
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (_BatchNorm, nn.GroupNorm)) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)) and m.last_norm.weight is not None:
                    nn.init.zeros_(m.last_norm.weight)
                    nn.init.zeros_(m.last_norm.bias)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = self.stem(x) if self.deep_stem else self.relu(self.norm1(self.conv1(x)))
        x = self.maxpool(x)
        outs = []
        for i, layer_name in enumerate(self.res_layers):
            x = getattr(self, layer_name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def train(self, mode: bool = True) -> 'ResNet':
        """Switch mode, keeping frozen stages (and, with ``norm_eval``, every BatchNorm) in eval mode."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self


@MODELS.register_module()
class ResNetV1c(ResNet):
    """ResNet with a deep stem: three 3x3 convs instead of one 7x7 (`arXiv:1812.01187`, "Bag of Tricks")."""

    def __init__(self, **kwargs) -> None:
        super().__init__(deep_stem=True, avg_down=False, **kwargs)


@MODELS.register_module()
class ResNetV1d(ResNet):
    """ResNetV1c plus average-pool downsampling in the shortcut of striding blocks."""

    def __init__(self, **kwargs) -> None:
        super().__init__(deep_stem=True, avg_down=True, **kwargs)
