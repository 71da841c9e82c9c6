"""Necks: MMSeg 1.2.2 state-dict keys and output shapes, the top-down / resize computations, and init."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from segkit.models.necks import FPN, MultiLevelNeck
from segkit.registry import MODELS

IN_CHANNELS = [8, 16, 32, 64]


def _pyramid(channels=IN_CHANNELS, batch=2, height=32, width=40):
    return [torch.randn(batch, c, height // 2 ** i, width // 2 ** i) for i, c in enumerate(channels)]


def _conv_keys(prefix, count, with_bn=False):
    parts = ['conv.weight', 'bn.weight', 'bn.bias', 'bn.running_mean', 'bn.running_var',
             'bn.num_batches_tracked'] if with_bn else ['conv.weight', 'conv.bias']
    return [f'{prefix}.{i}.{part}' for i in range(count) for part in parts]


# (config, expected state-dict keys, expected output shapes), as MMSeg 1.2.2 builds them.
FPN_CASES = [
    (dict(in_channels=IN_CHANNELS, out_channels=8, num_outs=4),
     _conv_keys('lateral_convs', 4) + _conv_keys('fpn_convs', 4),
     [(2, 8, 32, 40), (2, 8, 16, 20), (2, 8, 8, 10), (2, 8, 4, 5)]),
    (dict(in_channels=IN_CHANNELS, out_channels=8, num_outs=6, add_extra_convs='on_input', norm_cfg=dict(type='BN'),
          no_norm_on_lateral=True, start_level=1),
     _conv_keys('lateral_convs', 3) + _conv_keys('fpn_convs', 6, with_bn=True),
     [(2, 8, 16, 20), (2, 8, 8, 10), (2, 8, 4, 5), (2, 8, 2, 3), (2, 8, 1, 2), (2, 8, 1, 1)]),
    (dict(in_channels=IN_CHANNELS[:3], out_channels=8, num_outs=5),  # extra levels by max pooling
     _conv_keys('lateral_convs', 3) + _conv_keys('fpn_convs', 3),
     [(2, 8, 32, 40), (2, 8, 16, 20), (2, 8, 8, 10), (2, 8, 4, 5), (2, 8, 2, 3)]),
    (dict(in_channels=IN_CHANNELS, out_channels=8, num_outs=2, start_level=1, end_level=3),
     _conv_keys('lateral_convs', 2) + _conv_keys('fpn_convs', 2),
     [(2, 8, 16, 20), (2, 8, 8, 10)]),
    (dict(in_channels=IN_CHANNELS[:3], out_channels=8, num_outs=3, upsample_cfg=dict(scale_factor=2, mode='bilinear')),
     _conv_keys('lateral_convs', 3) + _conv_keys('fpn_convs', 3),
     [(2, 8, 32, 40), (2, 8, 16, 20), (2, 8, 8, 10)]),
]


@pytest.mark.parametrize('cfg, keys, shapes', FPN_CASES)
def test_fpn_keys_and_shapes_match_mmseg(cfg, keys, shapes):
    neck = MODELS.build(dict(type='FPN', **cfg)).eval()
    assert list(neck.state_dict()) == keys
    with torch.no_grad():
        outs = neck(_pyramid(cfg['in_channels']))
    assert isinstance(outs, tuple) and [tuple(o.shape) for o in outs] == shapes


def test_fpn_extra_convs_on_input_read_the_backbone_feature():
    neck = FPN(IN_CHANNELS, 8, num_outs=5, add_extra_convs=True, extra_convs_on_inputs=True).eval()
    assert neck.add_extra_convs == 'on_input' and neck.fpn_convs[4].conv.in_channels == 64
    inputs = _pyramid()
    with torch.no_grad():
        assert torch.allclose(neck(inputs)[4], neck.fpn_convs[4](inputs[3]))
    assert FPN(IN_CHANNELS, 8, num_outs=5, add_extra_convs=True).add_extra_convs == 'on_output'


def test_fpn_top_down_pathway():
    torch.manual_seed(0)
    neck = FPN(IN_CHANNELS[:3], 4, num_outs=3).eval()
    inputs = _pyramid(IN_CHANNELS[:3], batch=1, height=12, width=20)
    laterals = [F.conv2d(x, conv.conv.weight, conv.conv.bias) for x, conv in zip(inputs, neck.lateral_convs)]
    laterals[1] = laterals[1] + F.interpolate(laterals[2], size=laterals[1].shape[2:], mode='nearest')
    laterals[0] = laterals[0] + F.interpolate(laterals[1], size=laterals[0].shape[2:], mode='nearest')
    expected = [F.conv2d(x, conv.conv.weight, conv.conv.bias, padding=1) for x, conv in zip(laterals, neck.fpn_convs)]
    with torch.no_grad():
        for ours, theirs in zip(neck(inputs), expected):
            torch.testing.assert_close(ours, theirs)


def _assert_xavier_uniform(module):
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    assert convs
    for m in convs:
        fan_in, fan_out = m.weight[0].numel(), m.weight.shape[0] * m.weight[0, 0].numel()
        bound = (6 / (fan_in + fan_out)) ** 0.5
        assert 0.5 * bound < m.weight.abs().max() <= bound and torch.all(m.bias == 0)


def test_fpn_init_weights():
    neck = FPN(IN_CHANNELS, 8, num_outs=4)
    for p in neck.parameters():
        nn.init.constant_(p, 5.0)
    neck.init_weights()  # default init_cfg: Xavier-uniform convs, zero biases
    _assert_xavier_uniform(neck)
    untouched = FPN(IN_CHANNELS, 8, num_outs=4, init_cfg=None)
    before = {k: v.clone() for k, v in untouched.state_dict().items()}
    untouched.init_weights()
    assert all(torch.equal(before[k], v) for k, v in untouched.state_dict().items())


def test_fpn_rejects_bad_arguments():
    with pytest.raises(ValueError, match='add_extra_convs'):
        FPN(IN_CHANNELS, 8, num_outs=5, add_extra_convs='on_nothing')
    with pytest.raises(ValueError, match='num_outs'):
        FPN(IN_CHANNELS, 8, num_outs=2)
    with pytest.raises(ValueError, match='4 input levels'):
        FPN(IN_CHANNELS, 8, num_outs=4)(_pyramid()[:3])


def test_multilevel_neck_keys_shapes_and_computation():
    neck = MultiLevelNeck([8], 16, norm_cfg=dict(type='BN'), act_cfg=dict(type='ReLU')).eval()
    assert list(neck.state_dict()) == _conv_keys('lateral_convs', 1, with_bn=True) + _conv_keys('convs', 4, True)
    x = torch.randn(2, 8, 16, 20)
    with torch.no_grad():
        outs = neck([x])
        assert [tuple(o.shape) for o in outs] == [(2, 16, 8, 10), (2, 16, 16, 20), (2, 16, 32, 40), (2, 16, 64, 80)]
        lateral = neck.lateral_convs[0](x)
        torch.testing.assert_close(outs[2], neck.convs[2](F.interpolate(lateral, scale_factor=2, mode='bilinear')))

    per_scale = MultiLevelNeck([8, 8, 8, 8], 16, scales=[4, 2, 1, 0.5]).eval()
    assert list(per_scale.state_dict()) == _conv_keys('lateral_convs', 4) + _conv_keys('convs', 4)
    with torch.no_grad():
        outs = per_scale(_pyramid([8] * 4))
    assert [tuple(o.shape) for o in outs] == [(2, 16, 128, 160), (2, 16, 32, 40), (2, 16, 8, 10), (2, 16, 2, 2)]
    with pytest.raises(ValueError, match='one per scale'):
        MultiLevelNeck([8, 8], 16)


def test_multilevel_neck_init_weights_is_xavier_uniform():
    neck = MultiLevelNeck([8], 16)
    for p in neck.parameters():
        nn.init.constant_(p, 5.0)
    neck.init_weights()
    _assert_xavier_uniform(neck)
