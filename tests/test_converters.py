"""HF and NVlabs SegFormer checkpoint converters: key mapping, inferred architecture, reproduced HF logits."""
import json
import re
import subprocess
import sys
from collections import OrderedDict

import pytest
import torch

from conftest import REPO_ROOT, load_reference
from segkit.apis import init_model
from segkit.checkpoint import load_file
from segkit.registry import MODELS

sys.path.insert(0, str(REPO_ROOT / 'tools' / 'model_converters'))
import hf2segkit  # noqa: E402
import mit2segkit  # noqa: E402
from segformer_common import infer_mit  # noqa: E402

pytestmark = pytest.mark.filterwarnings('ignore:CrossEntropyLoss. avg_non_ignore')

# transformers 5.x renames of the Hub (4.x) names, as in transformers' conversion_mapping.py
HF4_TO_HF5 = [
    (r'encoder\.patch_embeddings\.(\d+)\.', r'stages.\1.patch_embeddings.'),
    (r'encoder\.block\.(\d+)\.', r'stages.\1.blocks.'),
    (r'encoder\.layer_norm\.(\d+)', r'stages.\1.layer_norm'),
    (r'attention\.self\.query', 'attention.q_proj'), (r'attention\.self\.key', 'attention.k_proj'),
    (r'attention\.self\.value', 'attention.v_proj'),
    (r'attention\.self\.sr', 'attention.sequence_reduction.sequence_reduction'),
    (r'attention\.self\.layer_norm', 'attention.sequence_reduction.layer_norm'),
    (r'attention\.output\.dense', 'attention.o_proj'), (r'mlp\.dense1', 'mlp.fc1'), (r'mlp\.dense2', 'mlp.fc2'),
    (r'layer_norm_1', 'layernorm_before'), (r'layer_norm_2', 'layernorm_after'),
    (r'decode_head\.linear_c', 'decode_head.linear_projections'),
]


@pytest.fixture(scope='module')
def hf_ref():
    return load_reference('hf_segformer_b0_hub.pt')


def test_hf_cli_reproduces_hf_logits(hf_ref, tmp_path):
    """The Hub layout (model.safetensors + config.json) -> segkit checkpoint + config -> HF's logits."""
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in hf_ref['state_dict'].items()}, str(tmp_path / 'model.safetensors'))
    (tmp_path / 'config.json').write_text(json.dumps(hf_ref['config']))
    dst, cfg_out = tmp_path / 'segkit.pth', tmp_path / 'segformer_hf.py'
    subprocess.run([sys.executable, str(REPO_ROOT / 'tools/model_converters/hf2segkit.py'),
                    str(tmp_path / 'model.safetensors'), str(dst), '--config-out', str(cfg_out)],
                   check=True, capture_output=True, cwd=tmp_path)
    model = init_model(str(cfg_out), str(dst))
    with torch.no_grad():
        logits = model(hf_ref['input'], mode='tensor')
    assert logits.shape == hf_ref['logits'].shape
    assert (logits - hf_ref['logits']).abs().max() < 1e-4
    assert model.dataset_meta['classes'][18] == 'LABEL_18'
    assert model.cfg.model.backbone.norm_cfg.eps == 1e-5 and model.cfg.model.decode_head.act_cfg is None
    assert model.cfg.test_pipeline[1] == dict(type='Resize', scale=(512, 512), keep_ratio=False)


def test_hf_torch_file_and_5x_names_give_the_same_weights(hf_ref, tmp_path):
    state = hf_ref['state_dict']
    src = str(tmp_path / 'pytorch_model.bin')
    torch.save(dict(state_dict=state, config=hf_ref['config']), src)
    loaded, embedded = hf2segkit.load_source(src)
    hf_config = hf2segkit.read_hf_config(src, None, embedded)  # no config.json beside: the embedded one
    assert hf2segkit.class_names(hf_config, 19)[18] == 'LABEL_18'
    converted, model_cfg = hf2segkit.convert(loaded, hf_config)
    renamed = OrderedDict()
    for key, value in state.items():
        for pattern, replacement in HF4_TO_HF5:
            key = re.sub(pattern, replacement, key)
        renamed[key] = value
    assert any('stages.0.blocks.0.attention.q_proj' in k for k in renamed)
    converted_5x, model_cfg_5x = hf2segkit.convert(renamed, hf_config)
    assert model_cfg_5x == model_cfg and list(converted_5x) == list(converted)
    for key in converted:
        assert torch.equal(converted[key], converted_5x[key]), key
    # the names and shapes are exactly those of MMSeg's SegFormer-B0 (19 classes)
    mmseg = load_reference('segformer_b0.pt')['state_dict']
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in mmseg.items()}


def test_hf_backbone_only_checkpoint(hf_ref, tmp_path):
    backbone_state = {k: v for k, v in hf_ref['state_dict'].items() if k.startswith('segformer.')}
    converted, model_cfg = hf2segkit.convert(backbone_state)
    assert model_cfg is None and 'layers.0.0.projection.weight' in converted
    backbone = MODELS.build(dict(infer_mit(converted), norm_cfg=dict(type='LN', eps=1e-5)))
    backbone.load_state_dict(converted, strict=True)
    with pytest.raises(ValueError, match='no SegFormer encoder'):
        hf2segkit.convert({'decode_head.classifier.weight': torch.zeros(1)})


def to_nvlabs(hf_state):
    """NVlabs' SegFormer names for the HF reference weights (q + kv, Linear MLP, linear_c1..4/linear_fuse)."""
    out = OrderedDict()
    for hf_key, value in hf_state.items():
        key = hf_key.replace('segformer.encoder.', 'backbone.')
        m = re.match(r'backbone\.patch_embeddings\.(\d+)\.(proj|layer_norm)\.(\w+)', key)
        if m:
            out[f'backbone.patch_embed{int(m[1]) + 1}.{"proj" if m[2] == "proj" else "norm"}.{m[3]}'] = value
            continue
        m = re.match(r'backbone\.layer_norm\.(\d+)\.(\w+)', key)
        if m:
            out[f'backbone.norm{int(m[1]) + 1}.{m[2]}'] = value
            continue
        m = re.match(r'backbone\.block\.(\d+)\.(\d+)\.(.*)', key)
        if m:
            prefix, rest = f'backbone.block{int(m[1]) + 1}.{m[2]}.', m[3]
            if rest.startswith('attention.self.key.'):
                kind = rest.split('.')[-1]
                value_key = hf_key.replace('attention.self.key.', 'attention.self.value.')
                out[prefix + f'attn.kv.{kind}'] = torch.cat([value, hf_state[value_key]])
                continue
            if rest.startswith('attention.self.value.'):
                continue
            for old, new in (('layer_norm_1', 'norm1'), ('layer_norm_2', 'norm2'), ('attention.self.query', 'attn.q'),
                             ('attention.output.dense', 'attn.proj'), ('attention.self.sr', 'attn.sr'),
                             ('attention.self.layer_norm', 'attn.norm'), ('mlp.dense1', 'mlp.fc1'),
                             ('mlp.dense2', 'mlp.fc2')):
                rest = rest.replace(old, new)
            out[prefix + rest] = value
            continue
        m = re.match(r'decode_head\.linear_c\.(\d+)\.proj\.(\w+)', key)
        if m:
            out[f'decode_head.linear_c{int(m[1]) + 1}.proj.{m[2]}'] = value
            continue
        key = key.replace('decode_head.linear_fuse.', 'decode_head.linear_fuse.conv.')
        key = key.replace('decode_head.batch_norm.', 'decode_head.linear_fuse.bn.')
        out[key.replace('decode_head.classifier.', 'decode_head.linear_pred.')] = value
    out['decode_head.conv_seg.weight'] = torch.zeros(19, 256, 1, 1)  # NVlabs' unused base-class classifier
    return out


def test_mit2segkit_matches_hf_conversion(hf_ref, tmp_path):
    """The same weights under NVlabs' names convert to the same segkit checkpoint."""
    from_hf, _ = hf2segkit.convert(hf_ref['state_dict'])
    nvlabs = to_nvlabs(hf_ref['state_dict'])
    torch.save(dict(state_dict=nvlabs, meta={}), tmp_path / 'segformer.b0.pth')
    subprocess.run([sys.executable, str(REPO_ROOT / 'tools/model_converters/mit2segkit.py'),
                    str(tmp_path / 'segformer.b0.pth'), str(tmp_path / 'out.pth'), '--config-out',
                    str(tmp_path / 'cfg.py')], check=True, capture_output=True)
    converted = load_file(str(tmp_path / 'out.pth'))['state_dict']
    assert list(converted) == list(from_hf)
    for key in from_hf:
        assert torch.equal(converted[key], from_hf[key]), key
    assert init_model(str(tmp_path / 'cfg.py'), str(tmp_path / 'out.pth')).cfg.model.decode_head.num_classes == 19

    # an ImageNet MiT checkpoint (no prefix, with a classification head) gives prefix-free backbone weights
    mit = {k[len('backbone.'):]: v for k, v in nvlabs.items() if k.startswith('backbone.')}
    mit['head.weight'] = torch.zeros(1000, 256)
    backbone, model_cfg = mit2segkit.convert(mit)
    assert model_cfg is None
    assert backbone.keys() == {k[len('backbone.'):] for k in from_hf if k.startswith('backbone.')}
    with pytest.raises(ValueError, match='unexpected key'):
        mit2segkit.convert({'something.else': torch.zeros(1)})


@pytest.mark.parametrize('embed_dims,num_layers', [(32, [2, 2, 2, 2]), (64, [3, 6, 40, 3])])
def test_infer_mit_reads_the_architecture_from_shapes(embed_dims, num_layers):
    cfg = dict(type='MixVisionTransformer', in_channels=3, embed_dims=embed_dims, num_stages=4,
               num_layers=num_layers, num_heads=[1, 2, 5, 8], patch_sizes=[7, 3, 3, 3], strides=[4, 2, 2, 2],
               sr_ratios=[8, 4, 2, 1], out_indices=(0, 1, 2, 3), mlp_ratio=4, qkv_bias=True)
    with torch.device('meta'):
        state = MODELS.build(cfg).state_dict()
    assert infer_mit(state) == cfg
