"""Convert a HF transformers SegFormer checkpoint to a segkit checkpoint and config.

    python tools/model_converters/hf2segkit.py SRC DST [--config-out CONFIG.py] [--hf-config config.json]

SRC is ``model.safetensors``, ``pytorch_model.bin`` or a torch file of a ``SegformerForSemanticSegmentation``
(transformers 4.x Hub names ``segformer.encoder.block.0.0.attention.self.query.weight`` or 5.x names
``segformer.stages.0.blocks.0.attention.q_proj.weight``), read with ``weights_only=True``. The MiT size (B0..B5),
decoder width and class count come from the tensor shapes; the HF ``config.json`` (``--hf-config``, else the
one beside SRC, else a ``config`` entry in a torch file) adds the head counts, strides and class names.
Backbone-only checkpoints (``SegformerModel``, ``SegformerForImageClassification``) give MiT weights without
the ``backbone.`` prefix, for ``init_cfg=dict(type='Pretrained', checkpoint=DST)``.

The written config reproduces HF's logits: LayerNorm eps 1e-5 (HF's, MMSeg uses 1e-6), the linear decoder as
``SegformerHead(act_cfg=None)`` (see segformer_common.py), ImageNet normalisation of RGB input, and HF's
image-processor resize to 512x512 in the test pipeline.
"""
from __future__ import annotations

import argparse
import json
import os
import re
from collections import OrderedDict
from typing import Optional

from segformer_common import (StateDict, infer_mit, linear_decoder_to_head, load_source, merge_qkv, rename,
                              save_converted, segformer_config, write_config)

# transformers 5.x names -> 4.x (Hub) names, the reverse of transformers' own checkpoint conversion mapping
HF5_TO_HF4 = [
    (r'^(segformer\.)?stages\.(\d+)\.patch_embeddings\.', r'\1encoder.patch_embeddings.\2.'),
    (r'^(segformer\.)?stages\.(\d+)\.blocks\.', r'\1encoder.block.\2.'),
    (r'^(segformer\.)?stages\.(\d+)\.layer_norm\.', r'\1encoder.layer_norm.\2.'),
    (r'attention\.q_proj\.', 'attention.self.query.'),
    (r'attention\.k_proj\.', 'attention.self.key.'),
    (r'attention\.v_proj\.', 'attention.self.value.'),
    (r'attention\.o_proj\.', 'attention.output.dense.'),
    (r'attention\.sequence_reduction\.sequence_reduction\.', 'attention.self.sr.'),
    (r'attention\.sequence_reduction\.layer_norm\.', 'attention.self.layer_norm.'),
    (r'mlp\.fc1\.', 'mlp.dense1.'),
    (r'mlp\.fc2\.', 'mlp.dense2.'),
    (r'layernorm_before\.', 'layer_norm_1.'),
    (r'layernorm_after\.', 'layer_norm_2.'),
    (r'^decode_head\.linear_projections\.', 'decode_head.linear_c.'),
]

# 4.x encoder names -> MMSeg MixVisionTransformer names (q/k/v merged afterwards)
HF4_TO_MIT = [
    (r'^encoder\.patch_embeddings\.(\d+)\.proj\.', r'layers.\1.0.projection.'),
    (r'^encoder\.patch_embeddings\.(\d+)\.layer_norm\.', r'layers.\1.0.norm.'),
    (r'^encoder\.block\.(\d+)\.(\d+)\.', r'layers.\1.1.\2.'),
    (r'^encoder\.layer_norm\.(\d+)\.', r'layers.\1.2.'),
    (r'\.layer_norm_1\.', '.norm1.'),
    (r'\.layer_norm_2\.', '.norm2.'),
    (r'\.attention\.self\.query\.', '.attn.attn.q.'),
    (r'\.attention\.self\.key\.', '.attn.attn.k.'),
    (r'\.attention\.self\.value\.', '.attn.attn.v.'),
    (r'\.attention\.output\.dense\.', '.attn.attn.out_proj.'),
    (r'\.attention\.self\.sr\.', '.attn.sr.'),
    (r'\.attention\.self\.layer_norm\.', '.attn.norm.'),
    (r'\.mlp\.dense1\.', '.ffn.layers.0.'),
    (r'\.mlp\.dwconv\.dwconv\.', '.ffn.layers.1.'),
    (r'\.mlp\.dense2\.', '.ffn.layers.4.'),
]


def convert_backbone(encoder: StateDict) -> StateDict:
    """HF 4.x ``encoder.*`` tensors -> MMSeg MiT names; MLP Linear weights become 1x1 conv weights."""
    out = OrderedDict()
    for key, value in encoder.items():
        new_key = rename(key, HF4_TO_MIT)
        if re.search(r'ffn\.layers\.[04]\.weight$', new_key):
            value = value.reshape(*value.shape, 1, 1)
        out[new_key] = value
    return merge_qkv(out)


def convert(state: StateDict, hf_config: Optional[dict] = None) -> tuple:
    """(segkit state_dict, model config or None for backbone-only sources) from HF tensors."""
    state = OrderedDict((rename(k, HF5_TO_HF4), v) for k, v in state.items())
    encoder = OrderedDict((re.sub(r'^segformer\.', '', k), v) for k, v in state.items()
                          if k.startswith(('segformer.encoder.', 'encoder.')))
    if not encoder:
        raise ValueError('no SegFormer encoder weights (segformer.encoder.* or segformer.stages.*) in the source')
    backbone = convert_backbone(encoder)
    hf_config = hf_config or {}
    if hf_config.get('hidden_act', 'gelu') != 'gelu':
        raise ValueError(f'hidden_act {hf_config["hidden_act"]!r} is not supported (MiT uses GELU)')
    backbone_cfg = infer_mit(backbone, hf_config.get('num_attention_heads'), hf_config.get('strides'))
    backbone_cfg.update(drop_path_rate=hf_config.get('drop_path_rate', 0.1), norm_cfg=dict(type='LN', eps=1e-5))
    if 'decode_head.classifier.weight' not in state:
        return backbone, None
    num_stages = backbone_cfg['num_stages']
    head = linear_decoder_to_head(
        [(state[f'decode_head.linear_c.{i}.proj.weight'], state[f'decode_head.linear_c.{i}.proj.bias'])
         for i in range(num_stages)],
        state['decode_head.linear_fuse.weight'],
        {k.split('.')[-1]: v for k, v in state.items() if k.startswith('decode_head.batch_norm.')},
        state['decode_head.classifier.weight'], state['decode_head.classifier.bias'])
    converted = OrderedDict([*((f'backbone.{k}', v) for k, v in backbone.items()),
                             *((f'decode_head.{k}', v) for k, v in head.items())])
    return converted, segformer_config(backbone_cfg, head, hf_config.get('classifier_dropout_prob', 0.1))


def read_hf_config(src: str, explicit: Optional[str], embedded: Optional[dict]) -> Optional[dict]:
    """The HF config: ``explicit``, else ``config.json`` beside ``src``, else the one embedded in ``src``."""
    path = explicit or os.path.join(os.path.dirname(os.path.abspath(src)), 'config.json')
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    if explicit:
        raise FileNotFoundError(f'--hf-config {explicit} not found')
    return embedded


def class_names(hf_config: Optional[dict], num_classes: int) -> Optional[list]:
    """Class names from the HF config's ``id2label`` (None when absent or of another length)."""
    id2label = (hf_config or {}).get('id2label')
    if not id2label or len(id2label) != num_classes:
        return None
    return [id2label.get(i, id2label.get(str(i))) for i in range(num_classes)]


def main() -> None:
    parser = argparse.ArgumentParser(description='Convert a HF transformers SegFormer checkpoint to segkit.')
    parser.add_argument('src', help='model.safetensors, pytorch_model.bin or a torch checkpoint')
    parser.add_argument('dst', help='output segkit checkpoint (.pth)')
    parser.add_argument('--config-out', help='also write a matching segkit config (.py) here')
    parser.add_argument('--hf-config', help='the HF config.json (default: config.json beside SRC, if any)')
    args = parser.parse_args()

    state, embedded_config = load_source(args.src)
    hf_config = read_hf_config(args.src, args.hf_config, embedded_config)
    converted, model_cfg = convert(state, hf_config)
    if model_cfg is None:
        if args.config_out:
            parser.error('SRC has no decode head (a backbone-only checkpoint): no model config to write; use DST '
                         'as init_cfg=dict(type="Pretrained", checkpoint=DST) of a MixVisionTransformer')
        save_converted(args.dst, converted, args.src)
        print(f'wrote MiT backbone weights ({len(converted)} tensors) to {args.dst}')
        return
    num_classes = model_cfg['decode_head']['num_classes']
    save_converted(args.dst, converted, args.src, class_names(hf_config, num_classes))
    print(f'wrote {len(converted)} tensors to {args.dst} ({num_classes} classes)')
    if args.config_out:
        test_pipeline = [dict(type='LoadImageFromFile'),
                         dict(type='Resize', scale=(512, 512), keep_ratio=False),  # HF image processor default
                         dict(type='PackSegInputs')]
        write_config(args.config_out, model_cfg, args.src, test_pipeline)
        print(f'wrote the config to {args.config_out}')


if __name__ == '__main__':
    main()
