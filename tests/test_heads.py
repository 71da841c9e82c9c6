"""Decode heads: MMSeg key names and outputs, input selection, loss composition, OHEM, binary heads."""
import pytest
import torch
import torch.nn.functional as F

from conftest import load_reference
from segkit.models.decode_heads import BaseDecodeHead, FCNHead, PSPHead, SegformerHead
from segkit.registry import MODELS

pytestmark = pytest.mark.filterwarnings('ignore:CrossEntropyLoss. avg_non_ignore')


def build_head(cfg: dict) -> BaseDecodeHead:
    return MODELS.build(dict(cfg))


@pytest.mark.parametrize('name', ['segformer_b0', 'pspnet_small', 'fcn_small'])
def test_heads_match_mmseg_keys_and_logits(name):
    """Each head strict-loads MMSeg's weights and reproduces its logits from MMSeg's backbone features."""
    ref = load_reference(f'{name}.pt')
    parts = [('decode_head', 'decode_logits'), ('auxiliary_head', 'aux_logits')]
    for part, logits_key in parts:
        if part not in ref['model_cfg']:
            continue
        head = build_head(ref['model_cfg'][part]).eval()
        prefix = f'{part}.'
        state = {k[len(prefix):]: v for k, v in ref['state_dict'].items() if k.startswith(prefix)}
        assert sorted(head.state_dict()) == sorted(state)
        head.load_state_dict(state, strict=True)
        with torch.no_grad():
            out = head(ref['feats'])
        torch.testing.assert_close(out, ref[logits_key], atol=1e-5, rtol=1e-4)


def test_mmseg_key_names():
    seg = SegformerHead(in_channels=[8, 16], in_index=[0, 1], channels=4, num_classes=3,
                        norm_cfg=dict(type='BN'))
    psp = PSPHead(in_channels=8, channels=4, num_classes=3, norm_cfg=dict(type='BN'))
    fcn = FCNHead(in_channels=8, channels=4, num_classes=3, norm_cfg=dict(type='BN'))
    assert {'convs.0.conv.weight', 'convs.1.bn.running_var', 'fusion_conv.conv.weight', 'fusion_conv.bn.bias',
            'conv_seg.weight'} <= set(seg.state_dict())
    assert {'psp_modules.0.1.conv.weight', 'psp_modules.3.1.bn.weight', 'bottleneck.conv.weight',
            'conv_seg.bias'} <= set(psp.state_dict())
    assert {'convs.0.conv.weight', 'convs.1.bn.weight', 'conv_cat.conv.weight'} <= set(fcn.state_dict())


def test_segformer_head_act_cfg_none_makes_projections_linear():
    head = SegformerHead(in_channels=[4, 4], in_index=[0, 1], channels=6, num_classes=2, out_channels=2,
                         norm_cfg=dict(type='BN'), act_cfg=None, dropout_ratio=0).eval()
    assert not head.convs[0].with_activation and head.fusion_conv.with_activation
    x = torch.randn(1, 4, 5, 5)
    projected = head.convs[0](x)
    expected = F.batch_norm(F.conv2d(x, head.convs[0].conv.weight), head.convs[0].bn.running_mean,
                            head.convs[0].bn.running_var, head.convs[0].bn.weight, head.convs[0].bn.bias)
    torch.testing.assert_close(projected, expected)
    assert projected.min() < 0  # no ReLU


def test_fcn_head_variants():
    x = [torch.randn(2, 8, 9, 9)]
    no_convs = FCNHead(in_channels=8, channels=8, num_convs=0, concat_input=False, num_classes=3, in_index=0)
    assert isinstance(no_convs.convs, torch.nn.Identity) and not hasattr(no_convs, 'conv_cat')
    assert no_convs(x).shape == (2, 3, 9, 9)
    dilated = FCNHead(in_channels=8, channels=4, num_convs=2, dilation=2, num_classes=3, in_index=0)
    assert dilated.convs[0].conv.dilation == (2, 2) and dilated.convs[0].conv.padding == (2, 2)
    assert dilated(x).shape == (2, 3, 9, 9)
    with pytest.raises(ValueError, match='num_convs=0'):
        FCNHead(in_channels=8, channels=4, num_convs=0, num_classes=3, in_index=0)


def test_input_transforms():
    feats = [torch.randn(1, 2, 8, 8), torch.randn(1, 3, 4, 4), torch.randn(1, 5, 2, 2)]
    concat = FCNHead(in_channels=[2, 5], in_index=[0, 2], input_transform='resize_concat', channels=4,
                     num_classes=3, num_convs=1)
    assert concat.in_channels == 7
    selected = concat._transform_inputs(feats)
    assert selected.shape == (1, 7, 8, 8)
    torch.testing.assert_close(selected[:, :2], feats[0])
    torch.testing.assert_close(selected[:, 2:], F.interpolate(feats[2], (8, 8), mode='bilinear'))
    multi = SegformerHead(in_channels=[2, 3], in_index=[0, 1], channels=4, num_classes=3)
    assert [t.shape[1] for t in multi._transform_inputs(feats)] == [2, 3]
    single = FCNHead(in_channels=3, in_index=1, channels=4, num_classes=3)
    assert single._transform_inputs(feats) is feats[1]
    with pytest.raises(TypeError, match='in_channels and in_index'):
        FCNHead(in_channels=[2, 3], in_index=1, channels=4, num_classes=3)
    with pytest.raises(ValueError, match='input_transform'):
        FCNHead(in_channels=[2], in_index=[0], input_transform='sum', channels=4, num_classes=3)


def test_out_channels_rules():
    with pytest.warns(UserWarning, match='binary'):
        FCNHead(in_channels=4, channels=4, num_classes=2)
    with pytest.raises(ValueError, match='out_channels'):
        FCNHead(in_channels=4, channels=4, num_classes=5, out_channels=3)
    with pytest.warns(UserWarning, match='0.3'):
        binary = FCNHead(in_channels=4, channels=4, num_classes=2, out_channels=1)
    assert binary.threshold == 0.3 and binary.conv_seg.out_channels == 1


def _samples(labels):
    return [dict(gt_sem_seg=label) for label in labels]


def test_loss_composition_and_accuracy():
    """Losses sharing a loss_name are summed; acc_seg is the percentage of non-ignored pixels right."""
    head = FCNHead(in_channels=4, channels=4, num_classes=3, num_convs=1, concat_input=False, dropout_ratio=0,
                   loss_decode=[dict(type='CrossEntropyLoss', loss_weight=1.0),
                                dict(type='CrossEntropyLoss', loss_weight=0.5),
                                dict(type='DiceLoss', loss_weight=2.0)])
    logits = torch.randn(2, 3, 4, 4)
    labels = torch.randint(0, 3, (2, 8, 8))
    labels[0, :2] = 255
    losses = head.loss_by_feat(logits, _samples(labels))
    assert set(losses) == {'loss_ce', 'loss_dice', 'acc_seg'}
    resized = F.interpolate(logits, (8, 8), mode='bilinear')
    ce = F.cross_entropy(resized, labels, ignore_index=255, reduction='sum') / labels.numel()
    torch.testing.assert_close(losses['loss_ce'], 1.5 * ce)
    valid = labels != 255
    expected_acc = 100.0 * (resized.argmax(1) == labels)[valid].float().mean()
    torch.testing.assert_close(losses['acc_seg'], expected_acc)


def test_loss_and_predict_entry_points():
    head = PSPHead(in_channels=4, channels=4, num_classes=3, pool_scales=(1, 2), in_index=-1)
    feats = [torch.randn(2, 4, 6, 6)]
    losses = head.loss(feats, _samples(torch.randint(0, 3, (2, 24, 24))), train_cfg={})
    assert losses['loss_ce'].requires_grad
    out = head.predict(feats, [dict(img_shape=(20, 22), pad_shape=(24, 24))] * 2, test_cfg={})
    assert out.shape == (2, 3, 24, 24)  # the padded size wins over img_shape
    out = head.predict(feats, [dict(img_shape=(20, 22))] * 2, test_cfg={})
    assert out.shape == (2, 3, 20, 22)


def test_binary_head_accuracy_uses_threshold():
    with pytest.warns(UserWarning):
        head = FCNHead(in_channels=4, channels=4, num_classes=2, out_channels=1, threshold=0.6,
                       loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=True))
    logits = torch.logit(torch.tensor([0.1, 0.55, 0.65, 0.9])).view(1, 1, 1, 4)
    labels = torch.tensor([[[0, 1, 1, 255]]])
    losses = head.loss_by_feat(logits, _samples(labels))
    # predictions (p > 0.6): 0, 0, 1, (1 ignored) -> 2 of 3 right
    torch.testing.assert_close(losses['acc_seg'], torch.tensor(200.0 / 3))
    expected = F.binary_cross_entropy_with_logits(logits.view(-1)[:3], labels.view(-1)[:3].float(),
                                                  reduction='sum') / 4
    torch.testing.assert_close(losses['loss_ce'], expected)


def test_ohem_keeps_hardest_pixels():
    head = FCNHead(in_channels=4, channels=4, num_classes=3, sampler=dict(type='OHEMPixelSampler', min_kept=5))
    logits = torch.randn(1, 3, 4, 4)
    labels = torch.randint(0, 3, (1, 4, 4))
    labels[0, 0] = 255
    weight = head.sampler.sample(logits, labels)
    losses = F.cross_entropy(logits, labels, ignore_index=255, reduction='none')
    kept = weight.bool()
    assert kept.sum() == 5 and not kept[0, 0].any()
    assert losses[kept].min() >= losses[~kept & (labels != 255)].max()


def test_ohem_threshold_mode():
    head = FCNHead(in_channels=4, channels=4, num_classes=2,
                   sampler=dict(type='OHEMPixelSampler', thresh=0.7, min_kept=2))
    # probability of the true class per pixel: 0.9, 0.8, 0.6, 0.3
    p = torch.tensor([0.9, 0.8, 0.6, 0.3])
    logits = torch.stack([torch.zeros(4), torch.logit(p)]).view(1, 2, 1, 4)
    labels = torch.ones(1, 1, 4, dtype=torch.long)
    assert head.sampler.sample(logits, labels).tolist() == [[[0.0, 0.0, 1.0, 1.0]]]
    # min_kept=3 raises the threshold to the 4th lowest probability, keeping 3 pixels
    head.sampler.min_kept = 3
    assert head.sampler.sample(logits, labels).tolist() == [[[0.0, 1.0, 1.0, 1.0]]]
    weighted = head.loss_by_feat(logits, _samples(labels))['loss_ce']
    expected = F.cross_entropy(logits, labels, reduction='none')[0, 0, 1:].sum() / 4
    torch.testing.assert_close(weighted, expected)


def test_init_weights_follows_init_cfg():
    head = PSPHead(in_channels=16, channels=64, num_classes=50, norm_cfg=dict(type='BN'))
    torch.nn.init.constant_(head.conv_seg.bias, 3.0)
    head.bottleneck.bn.weight.data.fill_(5.0)
    head.init_weights()
    assert head.conv_seg.bias.abs().max() == 0
    assert 0.005 < head.conv_seg.weight.std() < 0.015
    assert head.bottleneck.bn.weight.eq(1).all()  # ConvModule's own init ran
