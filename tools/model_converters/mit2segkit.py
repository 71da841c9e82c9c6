"""Convert NVlabs' official MiT / SegFormer checkpoints to segkit (MMSeg 1.x) names.

    python tools/model_converters/mit2segkit.py SRC DST [--config-out CONFIG.py]

- ImageNet-pretrained MiT (``mit_b0.pth``...: ``patch_embed1.proj.weight``, ``block1.0.attn.q.weight``, ...):
  gives backbone weights without prefix, for ``init_cfg=dict(type='Pretrained', checkpoint=DST)`` (what MMSeg's
  ``mit2mmseg.py`` produces).
- A full SegFormer checkpoint (``backbone.*`` plus ``decode_head.linear_c{1..4}``, ``linear_fuse``,
  ``linear_pred``) gives a whole segkit model; ``--config-out`` writes its config. The linear decoder becomes
  ``SegformerHead(act_cfg=None)`` (see segformer_common.py). The config keeps MMSeg's MiT LayerNorm eps 1e-6;
  NVlabs' patch-embedding and reduction norms use 1e-5, a difference MMSeg's conversion carries as well.

Keys: ``patch_embed{i}`` -> ``layers.{i-1}.0`` (``proj`` -> ``projection``), ``block{i}.{j}`` -> ``layers.{i-1}.1.{j}``
(``attn.q`` + ``attn.kv`` -> ``attn.attn.in_proj_*``, ``attn.proj`` -> ``attn.attn.out_proj``, ``mlp.fc1``/
``dwconv.dwconv``/``fc2`` -> ``ffn.layers.0/1/4`` with 1x1-conv weights), ``norm{i}`` -> ``layers.{i-1}.2``;
the ImageNet ``head`` is dropped.
"""
from __future__ import annotations

import argparse
import re
from collections import OrderedDict
from typing import Optional, Tuple

from segformer_common import (StateDict, infer_mit, linear_decoder_to_head, load_source, merge_qkv, rename,
                              save_converted, segformer_config, write_config)


def _stage(match: 're.Match', template: str) -> str:
    return template.format(int(match.group(1)) - 1)


NVLABS_TO_MIT = [
    (r'\.attn\.q\.', '.attn.attn.q.'),
    (r'\.attn\.kv\.', '.attn.attn.kv.'),
    (r'\.attn\.proj\.', '.attn.attn.out_proj.'),
    (r'\.mlp\.fc1\.', '.ffn.layers.0.'),
    (r'\.mlp\.dwconv\.dwconv\.', '.ffn.layers.1.'),
    (r'\.mlp\.fc2\.', '.ffn.layers.4.'),
    (r'^(patch_embed\d+\.)proj\.', r'\1projection.'),
]


def convert_backbone(state: StateDict) -> StateDict:
    """NVlabs MiT tensors (no prefix) -> MMSeg MiT names."""
    out = OrderedDict()
    for key, value in state.items():
        if key.startswith('head.'):
            continue
        new_key = rename(key, NVLABS_TO_MIT)
        new_key = re.sub(r'^patch_embed(\d+)\.', lambda m: _stage(m, 'layers.{}.0.'), new_key)
        new_key = re.sub(r'^block(\d+)\.', lambda m: _stage(m, 'layers.{}.1.'), new_key)
        new_key = re.sub(r'^norm(\d+)\.', lambda m: _stage(m, 'layers.{}.2.'), new_key)
        if not new_key.startswith('layers.'):
            raise ValueError(f'unexpected key {key!r}: not an NVlabs MiT/SegFormer checkpoint?')
        if re.search(r'ffn\.layers\.[04]\.weight$', new_key):
            value = value.reshape(*value.shape, 1, 1)
        out[new_key] = value
    return merge_qkv(out)


def convert(state: StateDict) -> Tuple[StateDict, Optional[dict]]:
    """(segkit state_dict, model config or None for a backbone-only MiT checkpoint)."""
    if not any(k.startswith('backbone.') for k in state):
        return convert_backbone(state), None
    backbone = convert_backbone(OrderedDict((k[len('backbone.'):], v) for k, v in state.items()
                                            if k.startswith('backbone.')))
    backbone_cfg = infer_mit(backbone)
    backbone_cfg['drop_path_rate'] = 0.1
    num_stages = backbone_cfg['num_stages']
    head = linear_decoder_to_head(
        [(state[f'decode_head.linear_c{i + 1}.proj.weight'], state[f'decode_head.linear_c{i + 1}.proj.bias'])
         for i in range(num_stages)],
        state['decode_head.linear_fuse.conv.weight'],
        {k.split('.')[-1]: v for k, v in state.items() if k.startswith('decode_head.linear_fuse.bn.')},
        # NVlabs' head classifies with linear_pred; its conv_seg (from MMSeg 0.x's base class) is unused
        state['decode_head.linear_pred.weight'], state['decode_head.linear_pred.bias'])
    converted = OrderedDict([*((f'backbone.{k}', v) for k, v in backbone.items()),
                             *((f'decode_head.{k}', v) for k, v in head.items())])
    return converted, segformer_config(backbone_cfg, head)


def main() -> None:
    parser = argparse.ArgumentParser(description="Convert NVlabs' MiT/SegFormer checkpoints to segkit names.")
    parser.add_argument('src', help='NVlabs checkpoint (mit_b*.pth or a SegFormer segmentation checkpoint)')
    parser.add_argument('dst', help='output segkit checkpoint (.pth)')
    parser.add_argument('--config-out', help='also write a matching segkit config (.py); full SegFormer only')
    args = parser.parse_args()

    state, _ = load_source(args.src)
    converted, model_cfg = convert(state)
    if model_cfg is None and args.config_out:
        parser.error('SRC is a backbone-only MiT checkpoint: no model config to write; use DST as '
                     'init_cfg=dict(type="Pretrained", checkpoint=DST) of a MixVisionTransformer')
    save_converted(args.dst, converted, args.src)
    print(f'wrote {len(converted)} tensors to {args.dst}')
    if args.config_out:
        test_pipeline = [dict(type='LoadImageFromFile'),
                         dict(type='Resize', scale=(2048, 512), keep_ratio=True),  # MMSeg's ADE20K test scale
                         dict(type='PackSegInputs')]
        write_config(args.config_out, model_cfg, args.src, test_pipeline)
        print(f'wrote the config to {args.config_out}')


if __name__ == '__main__':
    main()
