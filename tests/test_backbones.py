"""Backbones: MMSeg 1.2.2 parity (outputs, state-dict keys, parameter counts) and training-time behaviour."""
import logging
import math

import pytest
import torch
import torch.nn as nn
import torch.utils.checkpoint

from segkit.checkpoint import extract_state_dict, load_state_dict
from segkit.models.backbones import MixVisionTransformer, ResNet, ResNetV1c, ResNetV1d
from segkit.registry import MODELS

from conftest import load_reference

TINY_MIT = dict(embed_dims=8, num_stages=2, num_layers=[2, 1], num_heads=[1, 2], patch_sizes=[7, 3], strides=[4, 2],
                sr_ratios=[2, 1], out_indices=(0, 1))
TINY_RESNET = dict(depth=18, base_channels=4, stem_channels=8, num_stages=2, strides=(1, 2), dilations=(1, 1),
                   out_indices=(0, 1))
MIT_PRESETS = {'b0': (32, [2, 2, 2, 2]), 'b1': (64, [2, 2, 2, 2]), 'b2': (64, [3, 4, 6, 3]),
               'b3': (64, [3, 4, 18, 3]), 'b4': (64, [3, 8, 27, 3]), 'b5': (64, [3, 6, 40, 3])}
# MMSeg's R50-D8 backbone (configs/_base_/models/pspnet_r50-d8.py, fcn_r50-d8.py).
R50_D8 = dict(depth=50, dilations=(1, 1, 2, 4), strides=(1, 2, 1, 1), contract_dilation=True)


def _reference_backbone(name):
    ref = load_reference(f'{name}.pt')
    cfg = dict(ref['model_cfg']['backbone'])
    cfg.pop('init_cfg', None)
    cfg.pop('pretrained', None)
    model = MODELS.build(cfg)
    load_state_dict(model, extract_state_dict(ref['state_dict'], prefix='backbone.'), strict=True)
    return model.eval(), ref


@pytest.mark.parametrize('name', ['segformer_b0', 'pspnet_small', 'fcn_small'])
def test_matches_mmseg_features(name):
    model, ref = _reference_backbone(name)
    with torch.no_grad():
        feats = model(ref['input'])
        slide_feats = model(ref['slide_input'])
    assert len(feats) == len(ref['feats'])
    for ours, theirs in zip(feats, ref['feats']):
        assert ours.shape == theirs.shape
        assert (ours - theirs).abs().max().item() <= 1e-5
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    # An odd-sized image: each level is the input size divided by the level's stride, rounded up.
    in_h, in_w = ref['input'].shape[2:]
    slide_h, slide_w = ref['slide_input'].shape[2:]
    for ours, theirs in zip(slide_feats, ref['feats']):
        stride_h, stride_w = in_h // theirs.shape[2], in_w // theirs.shape[3]
        assert ours.shape == (1, theirs.shape[1], math.ceil(slide_h / stride_h), math.ceil(slide_w / stride_w))
        assert torch.isfinite(ours).all()


def _param_counts():
    counts = load_reference('param_counts.json')
    return {config.split('/')[-1].split('_')[1]: entry['backbone'] for config, entry in counts.items()
            if 'ade20k' in config}


@pytest.mark.parametrize('preset', sorted(MIT_PRESETS))
def test_mit_parameter_counts_match_mmseg(preset):
    expected = _param_counts()[f'mit-{preset}']
    embed_dims, num_layers = MIT_PRESETS[preset]
    with torch.device('meta'):
        model = MixVisionTransformer(embed_dims=embed_dims, num_layers=num_layers, num_heads=[1, 2, 5, 8])
    assert sum(p.numel() for p in model.parameters()) == expected


def test_resnet50_d8_parameter_count_matches_mmseg():
    counts = load_reference('param_counts.json')
    expected = {entry['backbone'] for config, entry in counts.items() if 'r50-d8' in config}
    with torch.device('meta'):
        model = ResNetV1c(**R50_D8)
    assert expected == {sum(p.numel() for p in model.parameters())}


def test_state_dict_keys_of_variants_match_mmseg():
    # Counts and names from MMSeg 1.2.2 models built with the same arguments.
    resnet = ResNet(depth=50).state_dict()
    assert len(resnet) == 318
    assert {'conv1.weight', 'bn1.running_var', 'layer1.0.conv3.weight', 'layer1.0.bn3.weight',
            'layer1.0.downsample.0.weight', 'layer1.0.downsample.1.running_mean', 'layer4.2.bn3.bias'} <= set(resnet)
    v1d = ResNetV1d(depth=34, base_channels=16, stem_channels=32).state_dict()
    assert len(v1d) == 234
    assert {'stem.6.weight', 'stem.7.num_batches_tracked', 'layer2.0.downsample.1.weight',
            'layer2.0.downsample.2.running_var'} <= set(v1d)
    assert v1d['layer2.0.downsample.1.weight'].shape == (32, 16, 1, 1)
    mit = MixVisionTransformer(embed_dims=32, num_layers=[2, 2, 2, 2], num_heads=[1, 2, 5, 8], qkv_bias=False)
    keys = set(mit.state_dict())
    assert len(keys) == 144
    assert 'layers.0.1.0.attn.attn.in_proj_weight' in keys and 'layers.3.2.weight' in keys
    assert not any(k.endswith(('in_proj_bias', 'out_proj.bias')) for k in keys)
    assert not any(k.startswith('layers.3.1.0.attn.sr') for k in keys)  # sr_ratio 1: no reduction layers


def test_resnet_dilations_follow_contract_dilation_and_multi_grid():
    model = ResNetV1c(**R50_D8, multi_grid=(1, 2, 4))
    assert [block.conv2.dilation[0] for block in model.layer3] == [1] + [2] * 5  # first block contracted
    assert [block.conv2.dilation[0] for block in model.layer4] == [1, 2, 4]
    assert model.layer2[0].conv2.stride == (2, 2) and model.layer3[0].conv2.stride == (1, 1)
    caffe = ResNet(depth=50, style='caffe')
    assert caffe.layer2[0].conv1.stride == (2, 2) and caffe.layer2[0].conv2.stride == (1, 1)


def test_out_indices_and_output_types():
    x = torch.randn(1, 3, 32, 32)
    resnet = ResNet(**dict(TINY_RESNET, out_indices=(1,))).eval()
    outs = resnet(x)
    assert isinstance(outs, tuple) and len(outs) == 1 and outs[0].shape == (1, 8, 4, 4)
    mit = MixVisionTransformer(**dict(TINY_MIT, out_indices=(1,))).eval()
    outs = mit(x)
    assert isinstance(outs, list) and len(outs) == 1 and outs[0].shape == (1, 16, 4, 4)


def _assert_same_outputs_and_grads(make_model, x, seed=0):
    results = []
    for with_cp in (False, True):
        model = make_model(with_cp).train()
        torch.manual_seed(seed)
        outs = model(x)
        sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in outs).backward()
        results.append(([o.detach() for o in outs], {n: p.grad for n, p in model.named_parameters()}))
    (outs_a, grads_a), (outs_b, grads_b) = results
    for a, b in zip(outs_a, outs_b):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize('cls, cfg', [(MixVisionTransformer, dict(TINY_MIT, drop_path_rate=0.5)),
                                      (ResNetV1c, TINY_RESNET), (ResNet, dict(TINY_RESNET, depth=50))])
def test_with_cp_matches_plain_forward_and_backward(cls, cfg, monkeypatch):
    torch.manual_seed(0)
    state = cls(**cfg).state_dict()

    def make_model(with_cp):
        model = cls(**cfg, with_cp=with_cp)
        model.load_state_dict(state)
        return model

    calls = []
    real_checkpoint = torch.utils.checkpoint.checkpoint
    monkeypatch.setattr(torch.utils.checkpoint, 'checkpoint',
                        lambda *args, **kwargs: calls.append(1) or real_checkpoint(*args, **kwargs))
    _assert_same_outputs_and_grads(make_model, torch.randn(2, 3, 32, 32))
    assert calls, 'with_cp=True never went through torch.utils.checkpoint'


def test_mit_drop_path_is_identity_in_eval_and_active_in_train():
    torch.manual_seed(0)
    plain = MixVisionTransformer(**TINY_MIT)
    dropped = MixVisionTransformer(**dict(TINY_MIT, drop_path_rate=0.9))
    dropped.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for a, b in zip(plain.eval()(x), dropped.eval()(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.manual_seed(1)
        trained = dropped.train()(x)
    assert any(not torch.allclose(a, b) for a, b in zip(plain(x), trained))


def test_mit_stochastic_depth_grows_linearly_like_mmseg():
    model = MixVisionTransformer(**dict(TINY_MIT, drop_path_rate=0.3))
    rates = [block.attn.drop_path.drop_prob for _, blocks, _ in model.layers for block in blocks]
    assert rates == pytest.approx([0.0, 0.15, 0.3])
    assert [block.ffn.drop_path.drop_prob for block in model.layers[1][1]] == pytest.approx([0.3])


def _batch_norms(module):
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


def test_frozen_stages_stop_gradients_and_statistics():
    model = ResNetV1c(**dict(TINY_RESNET, frozen_stages=1)).train()
    frozen = [model.stem, model.layer1]
    assert not any(p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in model.layer2.parameters())
    assert not any(bn.training for m in frozen for bn in _batch_norms(m))
    assert all(bn.training for bn in _batch_norms(model.layer2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model(torch.randn(2, 3, 32, 32))
    after = model.state_dict()
    for key in before:
        changed = not torch.equal(before[key], after[key])
        if key.endswith('running_mean'):
            assert changed == key.startswith('layer2'), key


@pytest.mark.parametrize('norm_eval', [True, False])
def test_norm_eval_keeps_batchnorm_statistics_in_train_mode(norm_eval):
    model = ResNet(**dict(TINY_RESNET, norm_eval=norm_eval)).train()
    assert model.training and model.layer1.training
    assert all(bn.training != norm_eval for bn in _batch_norms(model))
    before = model.layer1[0].bn1.running_mean.clone()
    model(torch.randn(2, 3, 32, 32))
    assert torch.equal(before, model.layer1[0].bn1.running_mean) == norm_eval


def test_default_init_weights_follow_mmseg():
    torch.manual_seed(0)
    resnet = ResNet(depth=50, base_channels=16, stem_channels=16)
    for m in resnet.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight)
    resnet.init_weights()
    last_norms = {f'{name}.bn3' for name, m in resnet.named_modules() if name.count('.') == 1 and 'layer' in name}
    for name, m in resnet.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == (0.0 if name in last_norms else 1.0)) and torch.all(m.bias == 0), name
    conv = resnet.layer4[0].conv2  # kaiming normal, fan_out
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (9 * conv.out_channels)), rel=0.1)
    assert all(torch.all(b.bn2.weight == 1) for b in ResNet(depth=18, zero_init_residual=False).layer1)

    mit = MixVisionTransformer(embed_dims=32, num_layers=[1, 1, 1, 1], num_heads=[1, 2, 5, 8])
    mit.init_weights()
    out_proj = mit.layers[3][1][0].attn.attn.out_proj
    assert out_proj.weight.std().item() == pytest.approx(0.02, rel=0.1)
    fc1 = mit.layers[3][1][0].ffn.layers[0]
    assert fc1.weight.std().item() == pytest.approx(math.sqrt(2 / fc1.out_channels), rel=0.1)
    norms = [m for m in mit.modules() if isinstance(m, nn.LayerNorm)]
    assert all(m.eps == 1e-6 and torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in norms)
    assert all(torch.all(m.bias == 0) for m in mit.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))


@pytest.mark.parametrize('cls, cfg', [(MixVisionTransformer, TINY_MIT), (ResNetV1d, TINY_RESNET)])
def test_pretrained_init_cfg_loads_a_local_file(cls, cfg, tmp_path, caplog):
    torch.manual_seed(0)
    source = cls(**cfg)
    full = source.state_dict()
    path = tmp_path / 'pretrained.pth'
    torch.save(full, path)
    model = cls(**cfg, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    for key, value in model.state_dict().items():
        assert torch.equal(value, full[key]), key

    # A whole-segmentor checkpoint with prefix, missing one tensor: the rest loads and the gap is logged.
    missing = next(iter(full))
    segmentor = {'state_dict': {f'backbone.{k}': v for k, v in full.items() if k != missing}}
    torch.save(segmentor, tmp_path / 'segmentor.pth')
    model = cls(**cfg, init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'segmentor.pth'),
                                     prefix='backbone.'))
    with caplog.at_level(logging.WARNING, logger='segkit'):
        model.init_weights()
    assert missing in caplog.text
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], full[k]) for k in full if k != missing)

    with pytest.warns(DeprecationWarning, match='pretrained'):
        model = cls(**cfg, pretrained=str(path))
    assert model.init_cfg == dict(type='Pretrained', checkpoint=str(path))


@pytest.mark.parametrize('cls, cfg, url', [
    (MixVisionTransformer, TINY_MIT, 'https://download.openmmlab.com/mmsegmentation/v0.5/pretrain/mit_b0.pth'),
    (ResNetV1c, TINY_RESNET, 'open-mmlab://resnet50_v1c')])
def test_url_checkpoint_raises_a_clear_error(cls, cfg, url):
    model = cls(**cfg, init_cfg=dict(type='Pretrained', checkpoint=url))
    with pytest.raises(FileNotFoundError, match='never downloads') as info:
        model.init_weights()
    assert url in str(info.value) and 'init_cfg' in str(info.value)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(NotImplementedError, match='dcn'):
        ResNet(depth=50, dcn=dict(type='DCNv2', deform_groups=1), stage_with_dcn=(False, True, True, True))
    with pytest.raises(KeyError, match='depth 42'):
        ResNet(depth=42)
    with pytest.raises(ValueError, match='out_indices'):
        ResNet(depth=18, out_indices=(4,))
    with pytest.raises(ValueError, match='num_stages'):
        MixVisionTransformer(num_stages=3)
    with pytest.raises(ValueError, match='not both'):
        ResNet(depth=18, pretrained='a.pth', init_cfg=dict(type='Pretrained', checkpoint='b.pth'))
