"""Shared layers: ConvModule, DropPath, resize and init_cfg handling."""
import logging
import math

import pytest
import torch
import torch.nn as nn

from segkit.models.layers import (ConvModule, DropPath, build_conv_layer, initialize, load_pretrained, resize,
                                  resolve_init_cfg)


def test_conv_module_names_bias_and_default_init():
    with_bn = ConvModule(16, 64, 3, padding=1, norm_cfg=dict(type='BN'))
    assert list(with_bn.state_dict()) == ['conv.weight', 'bn.weight', 'bn.bias', 'bn.running_mean',
                                          'bn.running_var', 'bn.num_batches_tracked']
    assert with_bn.conv.weight.std().item() == pytest.approx(math.sqrt(2 / (9 * 64)), rel=0.1)  # Kaiming, fan_out
    with_gn = ConvModule(4, 8, 1, norm_cfg=dict(type='GN', num_groups=2), act_cfg=None)
    assert list(with_gn.state_dict()) == ['conv.weight', 'gn.weight', 'gn.bias'] and not hasattr(with_gn, 'activate')
    plain = ConvModule(4, 8, 1)
    assert list(plain.state_dict()) == ['conv.weight', 'conv.bias'] and torch.all(plain.conv.bias == 0)
    x = torch.randn(1, 4, 5, 5)
    assert torch.all(plain(x) >= 0)  # ReLU
    assert ConvModule(4, 8, 1, bias=True, norm_cfg=dict(type='BN')).conv.bias is not None


def test_conv_module_init_weights_resets_conv_and_norm():
    module = ConvModule(8, 8, 3, norm_cfg=dict(type='BN'), act_cfg=dict(type='LeakyReLU', negative_slope=0.2))
    for p in module.parameters():
        nn.init.constant_(p, 3.0)
    module.init_weights()
    assert torch.all(module.bn.weight == 1) and torch.all(module.bn.bias == 0)
    gain = math.sqrt(2 / (1 + 0.2 ** 2))
    assert module.conv.weight.std().item() == pytest.approx(gain / math.sqrt(9 * 8), rel=0.15)


def test_build_conv_layer_rejects_unsupported_types():
    assert isinstance(build_conv_layer(dict(type='Conv2d'), 3, 4, 3), nn.Conv2d)
    with pytest.raises(ValueError, match='DCNv2'):
        build_conv_layer(dict(type='DCNv2'), 3, 4, 3)


def test_drop_path():
    x = torch.randn(64, 3, 4)
    layer = DropPath(0.25)
    assert layer.eval()(x) is x
    assert DropPath(0.0).train()(x) is x
    torch.manual_seed(0)
    out = layer.train()(x)
    ratio = out / x  # per sample: all 0 (dropped) or all 1/keep (kept, rescaled)
    per_sample = ratio.flatten(1)
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample))
    kept = per_sample[:, 0] != 0
    assert 0 < kept.sum() < len(kept)
    torch.testing.assert_close(per_sample[kept, 0], torch.full((int(kept.sum()),), 1 / 0.75))


def test_resize():
    x = torch.randn(1, 2, 4, 6)
    assert resize(x, size=(4, 6)) is x
    out = resize(x, size=(8, 12), mode='nearest', align_corners=True)  # align_corners is ignored for nearest
    assert torch.equal(out[..., ::2, ::2], x)
    assert resize(x, scale_factor=0.5, mode='bilinear').shape == (1, 2, 2, 3)


def _small_net():
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Linear(4, 4))


def test_initialize_applies_by_layer_type_and_override():
    net = _small_net()
    for p in net.parameters():
        nn.init.constant_(p, 7.0)
    initialize(net, [dict(type='Constant', val=2.0, bias=0.5, layer='Conv2d'),
                     dict(type='Constant', val=1.0, layer='_BatchNorm')])  # a base-class name matches subclasses
    assert torch.all(net[0].weight == 2) and torch.all(net[0].bias == 0.5)
    assert torch.all(net[1].weight == 1) and torch.all(net[1].bias == 0)
    assert torch.all(net[2].weight == 7)  # not listed: untouched
    initialize(net, dict(type='Normal', std=0.01, layer='Conv2d', override=dict(name='2')))
    assert net[2].weight.std().item() == pytest.approx(0.01, rel=0.3) and torch.all(net[2].bias == 0)
    initialize(net, dict(type='Kaiming', layer='Conv2d', override=dict(name='2', type='Constant', val=3.0)))
    assert torch.all(net[2].weight == 3)
    with pytest.raises(KeyError, match='Magic'):
        initialize(net, dict(type='Magic', layer='Conv2d'))
    with pytest.raises(KeyError, match='head'):
        initialize(net, dict(type='Constant', val=0.0, override=dict(name='head')))


def test_pretrained_runs_last_and_loads_non_strictly(tmp_path, caplog):
    source = _small_net()
    state = source.state_dict()
    del state['2.bias']
    path = tmp_path / 'weights.pth'
    torch.save({'state_dict': state, 'meta': {}}, path)
    net = _small_net()
    with caplog.at_level(logging.WARNING, logger='segkit'):
        initialize(net, [dict(type='Pretrained', checkpoint=str(path)), dict(type='Constant', val=0.0, layer='Conv2d')])
    assert torch.equal(net[0].weight, source[0].weight)  # the checkpoint wins over the Constant init
    assert '2.bias' in caplog.text


def test_load_pretrained_errors_are_clear(tmp_path):
    net = _small_net()
    with pytest.raises(FileNotFoundError, match='never downloads'):
        load_pretrained(net, 'https://example.com/weights.pth')
    with pytest.raises(FileNotFoundError, match='not found'):
        load_pretrained(net, str(tmp_path / 'absent.pth'))


def test_resolve_init_cfg():
    assert resolve_init_cfg(None, None, 'Net') is None
    with pytest.warns(DeprecationWarning):
        assert resolve_init_cfg(None, 'w.pth', 'Net') == dict(type='Pretrained', checkpoint='w.pth')
    with pytest.raises(ValueError, match='Net'):
        resolve_init_cfg(dict(type='Pretrained', checkpoint='a.pth'), 'b.pth', 'Net')
    with pytest.raises(TypeError, match='Net'):
        resolve_init_cfg(None, 3, 'Net')
