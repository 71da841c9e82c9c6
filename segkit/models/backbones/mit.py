"""Mix Vision Transformer (MiT), the SegFormer encoder, with MMSeg's arguments and state-dict keys.

Each of the four stages is ``layers.{i} = [patch embedding, transformer blocks, LayerNorm]``. Tokens flow as
``(N, L, C)`` tensors; the convolutions (spatial reduction, Mix-FFN, the next patch embedding) see them as
``(N, C, H, W)`` views in channels-last memory layout, so going between the two layouts costs no copy.
Stage outputs are therefore NCHW tensors with channels-last strides (use ``reshape``, not ``view``, on them).
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp

from segkit.registry import MODELS

from ..layers import DropPath, build_activation_layer, build_norm_layer, initialize, resolve_init_cfg
from ..layers.weight_init import InitCfg

HWShape = Tuple[int, int]


def nlc_to_nchw(x: torch.Tensor, hw_shape: HWShape) -> torch.Tensor:
    """``(N, H*W, C)`` -> ``(N, C, H, W)``: a channels-last view of a contiguous input, no copy."""
    return x.unflatten(1, hw_shape).permute(0, 3, 1, 2)


def nchw_to_nlc(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N, H*W, C)``: a view; contiguous when ``x`` is channels-last."""
    return x.flatten(2).transpose(1, 2)


class PatchEmbed(nn.Module):
    """Overlapping patch embedding: a strided convolution (``projection``) then a norm over channels (``norm``)."""

    def __init__(self, in_channels: int, embed_dims: int, kernel_size: int, stride: int,
                 norm_cfg: dict) -> None:
        super().__init__()
        self.projection = nn.Conv2d(in_channels, embed_dims, kernel_size, stride, padding=kernel_size // 2)
        self.norm = build_norm_layer(norm_cfg, embed_dims)[1]

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, HWShape]:
        x = self.projection(x)
        hw_shape = (x.shape[2], x.shape[3])
        return self.norm(nchw_to_nlc(x)), hw_shape


class AttentionProjections(nn.Module):
    """The weights of ``nn.MultiheadAttention`` under its names, without its forward.

    ``in_proj_weight`` stacks the query, key and value projections (``3C x C``); ``out_proj`` maps the heads back.
    As in ``nn.MultiheadAttention(bias=False)``, ``qkv_bias=False`` drops the output projection's bias too.
    """

    def __init__(self, embed_dims: int, bias: bool) -> None:
        super().__init__()
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dims, embed_dims))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dims)) if bias else None
        self.out_proj = nn.Linear(embed_dims, embed_dims, bias=bias)
        nn.init.xavier_uniform_(self.in_proj_weight)
        if bias:
            nn.init.zeros_(self.out_proj.bias)


class EfficientMultiheadAttention(nn.Module):
    """Multi-head self-attention whose keys and values come from a map shrunk ``sr_ratio`` times per side.

    The shrinking is a ``sr_ratio``-strided conv (``sr``) followed by ``norm``. Attention itself runs in
    ``F.scaled_dot_product_attention``. Returns ``identity + drop_path(dropout(attention))``.
    """

    def __init__(self, embed_dims: int, num_heads: int, attn_drop: float = 0.0, proj_drop: float = 0.0,
                 drop_path: float = 0.0, qkv_bias: bool = True, norm_cfg: dict = dict(type='LN', eps=1e-6),
                 sr_ratio: int = 1) -> None:
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims {embed_dims} is not divisible by num_heads {num_heads}')
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.attn_drop = attn_drop
        self.sr_ratio = sr_ratio
        self.attn = AttentionProjections(embed_dims, qkv_bias)
        self.proj_drop = nn.Dropout(proj_drop)
        self.drop_path = DropPath(drop_path)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(embed_dims, embed_dims, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = build_norm_layer(norm_cfg, embed_dims)[1]

    def _split_heads(self, x: torch.Tensor, parts: int) -> torch.Tensor:
        """``(N, L, parts*C)`` -> ``(parts, N, heads, L, C/heads)``."""
        return x.unflatten(-1, (parts, self.num_heads, -1)).permute(2, 0, 3, 1, 4)

    def forward(self, x: torch.Tensor, hw_shape: HWShape, identity: torch.Tensor) -> torch.Tensor:
        weight, bias = self.attn.in_proj_weight, self.attn.in_proj_bias
        if self.sr_ratio > 1:
            c = self.embed_dims
            kv_tokens = self.norm(nchw_to_nlc(self.sr(nlc_to_nchw(x, hw_shape))))
            q = self._split_heads(F.linear(x, weight[:c], None if bias is None else bias[:c]), 1)[0]
            k, v = self._split_heads(F.linear(kv_tokens, weight[c:], None if bias is None else bias[c:]), 2)
        else:
            q, k, v = self._split_heads(F.linear(x, weight, bias), 3)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        out = self.attn.out_proj(out.transpose(1, 2).flatten(2))
        return identity + self.drop_path(self.proj_drop(out))


class MixFFN(nn.Module):
    """Feed-forward block with a 3x3 depth-wise conv between its two 1x1 convs (positional information).

    ``layers`` = [1x1 conv, 3x3 depth-wise conv, activation, dropout, 1x1 conv, dropout], as in MMSeg.
    Returns ``identity + drop_path(ffn(x))``.
    """

    def __init__(self, embed_dims: int, feedforward_channels: int, act_cfg: dict = dict(type='GELU'),
                 ffn_drop: float = 0.0, drop_path: float = 0.0) -> None:
        super().__init__()
        drop = nn.Dropout(ffn_drop)
        self.layers = nn.Sequential(
            nn.Conv2d(embed_dims, feedforward_channels, kernel_size=1),
            nn.Conv2d(feedforward_channels, feedforward_channels, kernel_size=3, padding=1,
                      groups=feedforward_channels),
            build_activation_layer(act_cfg),
            drop,
            nn.Conv2d(feedforward_channels, embed_dims, kernel_size=1),
            drop)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, hw_shape: HWShape, identity: torch.Tensor) -> torch.Tensor:
        out = nchw_to_nlc(self.layers(nlc_to_nchw(x, hw_shape)))
        return identity + self.drop_path(out)


class TransformerEncoderLayer(nn.Module):
    """Pre-norm block: ``x + attn(norm1(x))``, then ``x + ffn(norm2(x))``; ``with_cp`` recomputes it in backward."""

    def __init__(self, embed_dims: int, num_heads: int, feedforward_channels: int, drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0, qkv_bias: bool = True,
                 act_cfg: dict = dict(type='GELU'), norm_cfg: dict = dict(type='LN', eps=1e-6),
                 sr_ratio: int = 1, with_cp: bool = False) -> None:
        super().__init__()
        self.norm1 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.attn = EfficientMultiheadAttention(embed_dims, num_heads, attn_drop_rate, drop_rate, drop_path_rate,
                                                qkv_bias, norm_cfg, sr_ratio)
        self.norm2 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.ffn = MixFFN(embed_dims, feedforward_channels, act_cfg, drop_rate, drop_path_rate)
        self.with_cp = with_cp

    def _inner_forward(self, x: torch.Tensor, hw_shape: HWShape) -> torch.Tensor:
        x = self.attn(self.norm1(x), hw_shape, identity=x)
        return self.ffn(self.norm2(x), hw_shape, identity=x)

    def forward(self, x: torch.Tensor, hw_shape: HWShape) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._inner_forward, x, hw_shape, use_reentrant=False)
        return self._inner_forward(x, hw_shape)


@MODELS.register_module()
class MixVisionTransformer(nn.Module):
    """The SegFormer backbone (`SegFormer <https://arxiv.org/abs/2105.15203>`_), MMSeg's ``MixVisionTransformer``.

    Stage ``i`` has ``embed_dims * num_heads[i]`` channels, ``num_layers[i]`` blocks, a patch embedding with
    kernel ``patch_sizes[i]`` and stride ``strides[i]``, and attention keys/values reduced by ``sr_ratios[i]``.
    Stochastic depth grows linearly from 0 to ``drop_path_rate`` over all blocks. ``forward`` returns the
    feature maps of the stages in ``out_indices`` as a list of ``(N, C_i, H_i, W_i)`` tensors.

    Presets (MMSeg's configs), all with ``num_heads=[1, 2, 5, 8]``: B0 ``embed_dims=32, num_layers=[2, 2, 2, 2]``;
    B1..B5 ``embed_dims=64``, ``num_layers`` [2, 2, 2, 2], [3, 4, 6, 3], [3, 4, 18, 3], [3, 8, 27, 3], [3, 6, 40, 3].
    """

    def __init__(self, in_channels: int = 3, embed_dims: int = 64, num_stages: int = 4,
                 num_layers: Sequence[int] = (3, 4, 6, 3), num_heads: Sequence[int] = (1, 2, 4, 8),
                 patch_sizes: Sequence[int] = (7, 3, 3, 3), strides: Sequence[int] = (4, 2, 2, 2),
                 sr_ratios: Sequence[int] = (8, 4, 2, 1), out_indices: Sequence[int] = (0, 1, 2, 3),
                 mlp_ratio: int = 4, qkv_bias: bool = True, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, act_cfg: dict = dict(type='GELU'),
                 norm_cfg: dict = dict(type='LN', eps=1e-6), pretrained: Optional[str] = None,
                 init_cfg: InitCfg = None, with_cp: bool = False) -> None:
        super().__init__()
        per_stage = dict(num_layers=num_layers, num_heads=num_heads, patch_sizes=patch_sizes, strides=strides,
                         sr_ratios=sr_ratios)
        wrong = {name: list(value) for name, value in per_stage.items() if len(value) != num_stages}
        if wrong:
            raise ValueError(f'MixVisionTransformer: num_stages={num_stages} but these per-stage settings have '
                             f'another length: {wrong}')
        out_indices = tuple(out_indices)
        if not out_indices or not all(0 <= i < num_stages for i in out_indices):
            raise ValueError(f'MixVisionTransformer: out_indices {out_indices} must be stage indices in '
                             f'[0, {num_stages})')
        self.init_cfg = resolve_init_cfg(init_cfg, pretrained, 'MixVisionTransformer')
        self.embed_dims = embed_dims
        self.num_stages = num_stages
        self.num_layers = list(num_layers)
        self.num_heads = list(num_heads)
        self.out_indices = out_indices
        self.with_cp = with_cp

        block_drop_path = torch.linspace(0, drop_path_rate, sum(num_layers), device='cpu').tolist()
        self.layers = nn.ModuleList()
        for i, num_layer in enumerate(num_layers):
            dims = embed_dims * num_heads[i]
            first = sum(num_layers[:i])
            blocks = nn.ModuleList(
                TransformerEncoderLayer(dims, num_heads[i], mlp_ratio * dims, drop_rate, attn_drop_rate,
                                        block_drop_path[first + j], qkv_bias, act_cfg, norm_cfg, sr_ratios[i],
                                        with_cp)
                for j in range(num_layer))
            patch_embed = PatchEmbed(in_channels, dims, patch_sizes[i], strides[i], norm_cfg)
            self.layers.append(nn.ModuleList([patch_embed, blocks, build_norm_layer(norm_cfg, dims)[1]]))
            in_channels = dims

    def init_weights(self) -> None:
        """Load ``init_cfg`` if set; otherwise MMSeg's scheme: truncated-normal (std 0.02) linear weights,
        normal conv weights with std sqrt(2 / fan_out), LayerNorm 1 / 0, zero biases."""
        if self.init_cfg is not None:
            initialize(self, self.init_cfg)
            return
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
            elif isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, std=math.sqrt(2.0 / fan_out))
            else:
                continue
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        # channels-last from the start: the first patch embedding's tokens are then a view, not a transposed copy
        # (same values; the first stage runs 2-4x faster on CPU)
        x = x.contiguous(memory_format=torch.channels_last)
        outs = []
        for i, (patch_embed, blocks, norm) in enumerate(self.layers):
            x, hw_shape = patch_embed(x)
            for block in blocks:
                x = block(x, hw_shape)
            x = nlc_to_nchw(norm(x), hw_shape)
            if i in self.out_indices:
                outs.append(x)
        return outs
