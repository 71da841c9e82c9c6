"""Shared by the SegFormer converters (``hf2segkit.py``, ``mit2segkit.py``).

Both sources, HF transformers and NVlabs' SegFormer, decode with per-stage *Linear* projections (with bias, no
norm or activation) and concatenate the upsampled stages as [c4, c3, c2, c1]. segkit's ``SegformerHead`` (MMSeg's
keys) expresses that with ``act_cfg=None``: each projection is a bias-free 1x1 conv followed by a BN that is
made an identity plus the Linear bias (weight 1, bias b, running mean 0, running variance 1 - eps). The fuse
conv's input channels are permuted to MMSeg's [c1, c2, c3, c4] order. (In training mode those BNs normalise
with batch statistics, so fine-tuning starts from the same weights but not the same function as the source.)
"""
from __future__ import annotations

import os
import re
import sys
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import torch

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..')))

from segkit.checkpoint import extract_state_dict, load_file, save_checkpoint  # noqa: E402
from segkit.config import Config  # noqa: E402
from segkit.visualization import default_palette  # noqa: E402

StateDict = Dict[str, torch.Tensor]
BN_EPS = 1e-5  # the BN eps of segkit's (and MMSeg's) SegformerHead

# ImageNet mean/std in 0..255 units, RGB: what the HF image processor and MMSeg's SegFormer configs use.
DATA_PREPROCESSOR = dict(type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                         bgr_to_rgb=True, pad_val=0, seg_pad_val=255)


def load_source(path: str) -> Tuple[StateDict, Optional[dict]]:
    """The tensors of ``path`` (``.safetensors``, or a torch file read with ``weights_only=True``) and the HF
    ``config`` dict a torch file may hold beside its ``state_dict`` (else None)."""
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file as load_safetensors
        if not os.path.isfile(path):
            raise FileNotFoundError(f'checkpoint file not found: {path}')
        return OrderedDict(load_safetensors(path)), None
    checkpoint = load_file(path)
    config = checkpoint.get('config') if isinstance(checkpoint, dict) else None
    state = extract_state_dict(checkpoint)
    return (OrderedDict((k, v) for k, v in state.items() if isinstance(v, torch.Tensor)),
            config if isinstance(config, dict) else None)


def rename(key: str, rules: List[Tuple[str, str]]) -> str:
    """Apply regex ``(pattern, replacement)`` rules in order."""
    for pattern, replacement in rules:
        key = re.sub(pattern, replacement, key)
    return key


def merge_qkv(state: StateDict) -> StateDict:
    """Stack the ``.q``/``.k``/``.v`` (or ``.q``/``.kv``) projections of each attention into MMSeg's
    ``attn.attn.in_proj_weight`` / ``in_proj_bias``; keys are MMSeg names with ``attn.attn.{q,k,v,kv}.`` parts."""
    out = OrderedDict()
    for key, value in state.items():
        match = re.match(r'(.*\.attn\.attn\.)(q|k|v|kv)\.(weight|bias)$', key)
        if match is None:
            out[key] = value
            continue
        prefix, part, kind = match.groups()
        if part != 'q':
            continue
        parts = [state[f'{prefix}{p}.{kind}'] for p in (('kv',) if f'{prefix}kv.{kind}' in state else ('k', 'v'))]
        out[f'{prefix}in_proj_{kind}'] = torch.cat([value, *parts], dim=0)
    return out


def infer_mit(backbone: StateDict, num_heads: Optional[List[int]] = None,
              strides: Optional[List[int]] = None) -> dict:
    """``MixVisionTransformer`` arguments read from the shapes of MMSeg-named backbone weights.

    Stage ``i`` has ``embed_dims * num_heads[i]`` channels in MMSeg's MiT, so without ``num_heads`` the heads
    are the stage widths divided by the first stage's (true of B0..B5: 1, 2, 5, 8).
    """
    stages = sorted({int(m.group(1)) for k in backbone for m in [re.match(r'layers\.(\d+)\.0\.projection\.weight$', k)]
                     if m})
    if not stages:
        raise ValueError('no MiT patch embeddings (layers.N.0.projection.weight) found: not a SegFormer checkpoint?')
    dims = [backbone[f'layers.{i}.0.projection.weight'].shape[0] for i in stages]
    embed_dims = dims[0]
    if num_heads is None:
        if any(d % embed_dims for d in dims):
            raise ValueError(f'stage widths {dims} are not multiples of the first; pass the HF config for num_heads')
        num_heads = [d // embed_dims for d in dims]
    if [embed_dims * h for h in num_heads] != dims:
        raise ValueError(f'stage widths {dims} do not equal embed_dims {embed_dims} x num_heads {num_heads}, which '
                         f"MMSeg's MixVisionTransformer requires")
    num_layers = [len({k.split('.')[3] for k in backbone if k.startswith(f'layers.{i}.1.')}) for i in stages]
    mlp_ratios = {backbone[f'layers.{i}.1.0.ffn.layers.0.weight'].shape[0] // d for i, d in zip(stages, dims)}
    if len(mlp_ratios) != 1:
        raise ValueError(f'MMSeg\'s MixVisionTransformer has one mlp_ratio, the checkpoint has {sorted(mlp_ratios)}')
    sr_key = 'layers.{}.1.0.attn.sr.weight'
    return dict(
        type='MixVisionTransformer',
        in_channels=backbone['layers.0.0.projection.weight'].shape[1],
        embed_dims=embed_dims,
        num_stages=len(stages),
        num_layers=num_layers,
        num_heads=list(num_heads),
        patch_sizes=[backbone[f'layers.{i}.0.projection.weight'].shape[-1] for i in stages],
        strides=list(strides) if strides is not None else [4, 2, 2, 2][:len(stages)],
        sr_ratios=[backbone[sr_key.format(i)].shape[-1] if sr_key.format(i) in backbone else 1 for i in stages],
        out_indices=tuple(stages),
        mlp_ratio=mlp_ratios.pop(),
        qkv_bias='layers.0.1.0.attn.attn.in_proj_bias' in backbone)


def linear_decoder_to_head(projections: List[Tuple[torch.Tensor, torch.Tensor]], fuse_weight: torch.Tensor,
                           fuse_bn: StateDict, cls_weight: torch.Tensor, cls_bias: torch.Tensor) -> StateDict:
    """``SegformerHead(act_cfg=None)`` weights from a linear decoder.

    ``projections`` are the per-stage Linear ``(weight, bias)`` in stage order c1..c4; ``fuse_weight`` is the
    fuse conv over the [c4, ..., c1] concatenation; ``fuse_bn`` its BN state (``weight``, ``bias``,
    ``running_mean``, ``running_var``[, ``num_batches_tracked``]).
    """
    head = OrderedDict()
    for i, (weight, bias) in enumerate(projections):
        head[f'convs.{i}.conv.weight'] = weight.reshape(*weight.shape, 1, 1)
        head[f'convs.{i}.bn.weight'] = torch.ones_like(bias)
        head[f'convs.{i}.bn.bias'] = bias
        head[f'convs.{i}.bn.running_mean'] = torch.zeros_like(bias)
        head[f'convs.{i}.bn.running_var'] = torch.full_like(bias, 1.0 - BN_EPS)
        head[f'convs.{i}.bn.num_batches_tracked'] = torch.tensor(0)
    blocks = fuse_weight.chunk(len(projections), dim=1)
    head['fusion_conv.conv.weight'] = torch.cat(blocks[::-1], dim=1)
    for name in ('weight', 'bias', 'running_mean', 'running_var'):
        head[f'fusion_conv.bn.{name}'] = fuse_bn[name]
    head['fusion_conv.bn.num_batches_tracked'] = fuse_bn.get('num_batches_tracked', torch.tensor(0))
    head['conv_seg.weight'] = cls_weight
    head['conv_seg.bias'] = cls_bias
    return head


def segformer_config(backbone_cfg: dict, head: StateDict, dropout_ratio: float = 0.1) -> dict:
    """A segkit model config for the converted weights (``head``: ``decode_head.*`` keys without the prefix)."""
    num_stages = backbone_cfg['num_stages']
    return dict(
        type='EncoderDecoder',
        data_preprocessor=DATA_PREPROCESSOR,
        backbone=backbone_cfg,
        decode_head=dict(
            type='SegformerHead',
            in_channels=[backbone_cfg['embed_dims'] * h for h in backbone_cfg['num_heads']],
            in_index=list(range(num_stages)),
            channels=head['fusion_conv.conv.weight'].shape[0],
            dropout_ratio=dropout_ratio,
            num_classes=head['conv_seg.weight'].shape[0],
            norm_cfg=dict(type='SyncBN', requires_grad=True),
            act_cfg=None,  # linear per-stage projections (see this module's docstring)
            align_corners=False,
            loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
        train_cfg=dict(),
        test_cfg=dict(mode='whole'))


def write_config(path: str, model: dict, source: str, test_pipeline: List[dict]) -> None:
    """Write a config file with ``model`` and ``test_pipeline`` (enough for ``init_model``/``inference_model``)."""
    header = (f'# segkit config written by tools/model_converters for {os.path.basename(source)}.\n'
              f'# decode_head act_cfg=None (with identity BNs in the checkpoint) is the source\'s linear decoder.\n'
              f'# Add datasets, schedule and runtime (e.g. _base_ files) to train with it.\n')
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        f.write(header + Config(dict(model=model, test_pipeline=test_pipeline)).pretty_text)


def save_converted(dst: str, state_dict: StateDict, source: str, classes: Optional[List[str]] = None) -> None:
    """Save ``state_dict`` as a segkit checkpoint; ``classes`` (with a generated palette) go to its meta."""
    meta = dict(converted_from=os.path.basename(source))
    if classes is not None:
        meta['dataset_meta'] = dict(classes=list(classes), palette=default_palette(len(classes)).tolist())
    save_checkpoint(dict(state_dict=state_dict, meta=meta), dst)
