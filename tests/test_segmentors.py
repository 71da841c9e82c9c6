"""Segmentors and the data preprocessor: MMSeg parity, slide inference, post-processing, losses, TTA."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import REPO_ROOT, load_reference
from segkit.checkpoint import CheckpointError, load_state_dict
from segkit.config import Config
from segkit.models import SegDataPreProcessor, SegTTAModel
from segkit.models.decode_heads import BaseCascadeDecodeHead
from segkit.registry import MODELS

pytestmark = pytest.mark.filterwarnings('ignore:CrossEntropyLoss. avg_non_ignore', 'ignore:SyncBN')
TOL = dict(atol=1e-5, rtol=1e-4)


def reference_model(name):
    ref = load_reference(f'{name}.pt')
    model = MODELS.build(copy.deepcopy(ref['model_cfg']))
    load_state_dict(model, ref['state_dict'], strict=True)
    return model.eval(), ref


@pytest.mark.parametrize('name', ['segformer_b0', 'pspnet_small', 'fcn_small'])
def test_full_model_parity(name):
    model, ref = reference_model(name)
    with torch.no_grad():
        feats = model.extract_feat(ref['input'])
        torch.testing.assert_close(model.decode_head(feats), ref['decode_logits'], **TOL)
        if ref['aux_logits'] is not None:
            torch.testing.assert_close(model.auxiliary_head(feats), ref['aux_logits'], **TOL)
        torch.testing.assert_close(model(ref['input'], mode='tensor'), ref['decode_logits'], **TOL)
        whole = model.encode_decode(ref['input'], [dict(img_shape=ref['input'].shape[2:])])
        torch.testing.assert_close(whole, ref['whole_logits'], **TOL)
        slide_input = ref['slide_input']
        metas = [dict(ori_shape=slide_input.shape[2:], img_shape=slide_input.shape[2:])]
        for windows_per_pass in (1, 4):
            model.test_cfg = dict(mode='slide', **ref['slide_cfg'], slide_batch_size=windows_per_pass)
            torch.testing.assert_close(model.inference(slide_input, metas), ref['slide_logits'], **TOL)
    assert metas[0]['img_shape'] == slide_input.shape[2:]  # metas are not mutated


def test_slide_batches_images_and_windows():
    """Several images and several windows per pass give what one window of one image at a time gives."""
    model = MODELS.build(tiny_cfg()).eval()
    images = torch.randn(2, 3, 40, 52)
    metas = [dict(ori_shape=(40, 52))] * 2
    with torch.no_grad():
        model.test_cfg = dict(mode='slide', crop_size=(24, 32), stride=(16, 16), slide_batch_size=1)
        single = torch.cat([model.inference(img[None], metas[:1]) for img in images])
        model.test_cfg['slide_batch_size'] = 3
        torch.testing.assert_close(model.inference(images, metas), single, **TOL)
        # a crop larger than the image runs the whole image once
        model.test_cfg = dict(mode='slide', crop_size=(64, 64), stride=(32, 32))
        whole = model.encode_decode(images, [dict(img_shape=(40, 52))] * 2)
        torch.testing.assert_close(model.inference(images, metas), whole, **TOL)


MMSEG_CONFIGS = ['segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py',
                 'segformer/segformer_mit-b1_8xb2-160k_ade20k-512x512.py',
                 'segformer/segformer_mit-b2_8xb2-160k_ade20k-512x512.py',
                 'segformer/segformer_mit-b3_8xb2-160k_ade20k-512x512.py',
                 'segformer/segformer_mit-b4_8xb2-160k_ade20k-512x512.py',
                 'segformer/segformer_mit-b5_8xb2-160k_ade20k-512x512.py',
                 'segformer/segformer_mit-b0_8xb1-160k_cityscapes-1024x1024.py',
                 'pspnet/pspnet_r50-d8_4xb4-160k_ade20k-512x512.py',
                 'fcn/fcn_r50-d8_4xb4-160k_ade20k-512x512.py',
                 'pspnet/pspnet_r50-d8_4xb2-80k_cityscapes-512x1024.py']


@pytest.mark.parametrize('config', MMSEG_CONFIGS)
def test_param_counts_match_mmseg(config):
    counts = load_reference('param_counts.json')[config]
    cfg = Config.fromfile(str(REPO_ROOT / 'configs' / config))
    with torch.device('meta'):  # shapes only: no memory, no init cost
        model = MODELS.build(cfg.model)

    def n(module):
        return sum(p.numel() for p in module.parameters()) if module is not None else 0
    got = dict(total=n(model), backbone=n(model.backbone), decode_head=n(model.decode_head),
               auxiliary_head=n(getattr(model, 'auxiliary_head', None)), num_keys=len(model.state_dict()))
    assert got == counts


def test_base_model_configs_build():
    for name in ('segformer_mit-b0.py', 'pspnet_r50-d8.py', 'fcn_r50-d8.py'):
        cfg = Config.fromfile(str(REPO_ROOT / 'configs/_base_/models' / name))
        assert cfg.model.decode_head.norm_cfg.type == 'SyncBN'
        cfg.model.pretrained = None
        with torch.device('meta'):
            model = MODELS.build(cfg.model)
        assert model.data_preprocessor.channel_conversion


def tiny_cfg(**overrides):
    cfg = dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[10.0, 20.0, 30.0], std=[2.0, 4.0, 8.0],
                               bgr_to_rgb=True, size_divisor=8),
        backbone=dict(type='ResNetV1c', depth=18, base_channels=8, num_stages=4, out_indices=(0, 1, 2, 3),
                      dilations=(1, 1, 2, 4), strides=(1, 2, 1, 1), norm_cfg=dict(type='BN'),
                      contract_dilation=True),
        decode_head=dict(type='FCNHead', in_channels=64, in_index=3, channels=8, num_convs=1, num_classes=4,
                         norm_cfg=dict(type='BN')),
        auxiliary_head=dict(type='FCNHead', in_channels=32, in_index=2, channels=8, num_convs=1, num_classes=4,
                            concat_input=False, loss_decode=dict(type='CrossEntropyLoss', loss_weight=0.4)),
        train_cfg=dict(), test_cfg=dict(mode='whole'))
    cfg.update(overrides)
    return cfg


def batch(sizes, num_classes=4, labels=True):
    samples = []
    for h, w in sizes:
        sample = dict(ori_shape=(h, w), img_shape=(h, w))
        if labels:
            sample['gt_sem_seg'] = torch.randint(0, num_classes, (h, w))
        samples.append(sample)
    return dict(inputs=[torch.randint(0, 256, (3, h, w), dtype=torch.uint8) for h, w in sizes],
                data_samples=samples)


def test_preprocessor_training_pads_images_and_labels():
    pre = SegDataPreProcessor(mean=[10.0, 20.0, 30.0], std=[2.0, 4.0, 8.0], bgr_to_rgb=True, size_divisor=8,
                              pad_val=0, seg_pad_val=255)
    data = batch([(13, 10), (9, 17)])
    original = [dict(s) for s in data['data_samples']]
    out = pre(data, training=True)
    assert out['inputs'].shape == (2, 3, 16, 24) and out['inputs'].dtype == torch.float32
    img = data['inputs'][0].float()
    expected = (img.flip(0) - torch.tensor([10.0, 20.0, 30.0]).view(3, 1, 1)) / torch.tensor([2.0, 4.0, 8.0]).view(
        3, 1, 1)
    torch.testing.assert_close(out['inputs'][0, :, :13, :10], expected)
    assert out['inputs'][0, :, 13:].abs().max() == 0
    first = out['data_samples'][0]
    assert first['padding_size'] == (0, 14, 0, 3) and first['pad_shape'] == (16, 24) and first['img_shape'] == (13, 10)
    assert first['gt_sem_seg'].shape == (16, 24) and (first['gt_sem_seg'][13:] == 255).all()
    assert first['gt_sem_seg'].dtype == torch.int64
    narrow = batch([(13, 10)])
    narrow['data_samples'][0]['gt_sem_seg'] = narrow['data_samples'][0]['gt_sem_seg'].to(torch.uint8)
    label = SegDataPreProcessor(size_divisor=8, seg_pad_val=-1)(narrow, training=True)['data_samples'][0]['gt_sem_seg']
    assert label.dtype == torch.int64 and (label[13:] == -1).all()  # widened before padding: -1 stays -1
    assert torch.equal(label[:13, :10], narrow['data_samples'][0]['gt_sem_seg'].long())
    assert data['data_samples'][0].keys() == original[0].keys()  # inputs not mutated
    assert data['data_samples'][0]['gt_sem_seg'].shape == (13, 10)
    fixed = SegDataPreProcessor(size=(20, 20))(batch([(13, 10)]), training=True)
    assert fixed['inputs'].shape == (1, 3, 20, 20)


def test_preprocessor_test_mode_and_tensor_input():
    pre = SegDataPreProcessor(mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0], rgb_to_bgr=True)
    data = batch([(8, 8), (8, 8)], labels=False)
    out = pre(data)
    torch.testing.assert_close(out['inputs'][1], data['inputs'][1].flip(0).float())
    assert 'padding_size' not in out['data_samples'][0]
    with pytest.raises(ValueError, match='share a size'):
        pre(batch([(8, 8), (9, 8)], labels=False))
    padded = SegDataPreProcessor(test_cfg=dict(size_divisor=8))(batch([(8, 8), (9, 8)], labels=False))
    assert padded['inputs'].shape == (2, 3, 16, 8) and padded['data_samples'][0]['padding_size'] == (0, 0, 0, 8)
    tensor = torch.rand(2, 3, 5, 5) * 255
    torch.testing.assert_close(pre(dict(inputs=tensor))['inputs'], tensor.flip(1))
    with pytest.raises(ValueError, match='both'):
        SegDataPreProcessor(bgr_to_rgb=True, rgb_to_bgr=True)


def test_loss_mode_keys_and_parse_losses():
    model = MODELS.build(tiny_cfg())
    data = model.data_preprocessor(batch([(32, 32), (30, 28)]), training=True)
    losses = model(**data, mode='loss')
    assert set(losses) == {'decode.loss_ce', 'decode.acc_seg', 'aux.loss_ce', 'aux.acc_seg'}
    loss, log_vars = model.parse_losses(losses)
    torch.testing.assert_close(loss, losses['decode.loss_ce'] + losses['aux.loss_ce'])
    assert list(log_vars)[0] == 'loss' and not log_vars['loss'].requires_grad
    loss.backward()
    assert model.backbone.stem[0].weight.grad is not None

    two_aux = MODELS.build(tiny_cfg(auxiliary_head=[tiny_cfg()['auxiliary_head']] * 2))
    assert {'aux_0.loss_ce', 'aux_1.loss_ce'} <= set(two_aux(**data, mode='loss'))


def test_segmentor_composed_of_built_modules_has_the_config_built_layout():
    """Plain-Python composition: parts and losses given as modules are used as they are, under the same keys."""
    cfg = tiny_cfg()
    parts = {key: MODELS.build(cfg[key]) for key in ('data_preprocessor', 'backbone', 'decode_head')}
    loss = MODELS.build(dict(type='CrossEntropyLoss', loss_weight=0.4))
    aux_head = MODELS.build(dict(cfg['auxiliary_head'], loss_decode=[loss]))
    model = MODELS.build(dict(type='EncoderDecoder', auxiliary_head=aux_head, train_cfg=dict(),
                              test_cfg=dict(mode='whole'), **parts))
    assert model.backbone is parts['backbone'] and model.data_preprocessor is parts['data_preprocessor']
    assert model.auxiliary_head.loss_decode[0] is loss
    assert list(model.state_dict()) == list(MODELS.build(cfg).state_dict())
    data = model.data_preprocessor(batch([(32, 32)]), training=True)
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(model(**data, mode='loss'))
    with pytest.raises(ValueError, match='with a built backbone, load its weights'):
        MODELS.build(dict(type='EncoderDecoder', pretrained='mit_b0.pth', **parts))


def test_syncbn_model_trains_in_one_process():
    cfg = tiny_cfg()
    for part in ('backbone', 'decode_head'):
        cfg[part]['norm_cfg'] = dict(type='SyncBN', requires_grad=True)
    model = MODELS.build(cfg)
    model.init_weights()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    data = model.data_preprocessor(batch([(32, 32), (32, 32)]), training=True)
    loss, _ = model.parse_losses(model(**data, mode='loss'))
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and model.decode_head.convs[0].bn.num_batches_tracked == 1


class FakeOptimWrapper:
    """The two methods of MMEngine's OptimWrapper interface that train_step uses."""

    def __init__(self, optimizer):
        self.optimizer = optimizer

    def optim_context(self, model):
        import contextlib
        return contextlib.nullcontext()

    def update_params(self, loss):
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()


def test_train_val_test_steps():
    model = MODELS.build(tiny_cfg())
    before = model.decode_head.conv_seg.weight.clone()
    log_vars = model.train_step(batch([(32, 32), (24, 40)]), FakeOptimWrapper(torch.optim.SGD(model.parameters(),
                                                                                              lr=0.1)))
    assert 'decode.loss_ce' in log_vars and not torch.equal(before, model.decode_head.conv_seg.weight)
    model.eval()
    results = model.val_step(batch([(21, 27)]))
    assert results[0]['seg_logits'].shape == (4, 21, 27) and results[0]['pred_sem_seg'].dtype == torch.int64
    assert model.test_step(batch([(21, 27)]))[0]['pred_sem_seg'].shape == (21, 27)


def test_postprocess_unpads_unflips_and_resizes():
    model = MODELS.build(tiny_cfg())
    logits = torch.randn(2, 4, 12, 16)
    samples = [dict(padding_size=(0, 4, 0, 2), flip=True, flip_direction='horizontal', ori_shape=(20, 24)),
               dict(padding_size=(0, 0, 0, 0), flip=True, flip_direction='vertical', ori_shape=(12, 16))]
    results = model.postprocess_result(logits, samples)
    expected = F.interpolate(logits[:1, :, :10, :12].flip(3), (20, 24), mode='bilinear')[0]
    torch.testing.assert_close(results[0]['seg_logits'], expected)
    torch.testing.assert_close(results[0]['pred_sem_seg'], expected.argmax(0))
    torch.testing.assert_close(results[1]['seg_logits'], logits[1].flip(1))
    assert 'seg_logits' not in samples[0]
    with pytest.raises(ValueError, match='diagonal'):
        model.postprocess_result(logits[:1], [dict(flip=True, flip_direction='diagonal', ori_shape=(12, 16))])


def test_predict_with_padding_matches_unpadded_region():
    """predict() on a padded batch crops the padding before resizing to the original size."""
    model = MODELS.build(tiny_cfg(data_preprocessor=dict(type='SegDataPreProcessor',
                                                         test_cfg=dict(size_divisor=32)))).eval()
    data = model.data_preprocessor(batch([(40, 50)], labels=False))
    assert data['inputs'].shape[2:] == (64, 64)
    with torch.no_grad():
        result = model(**data, mode='predict')[0]
        padded_logits = model.encode_decode(data['inputs'], data['data_samples'])
    assert result['seg_logits'].shape == (4, 40, 50)
    torch.testing.assert_close(result['seg_logits'], padded_logits[0, :, :40, :50])
    default = model(data['inputs'], mode='predict')[0]  # no samples: the input size is the original size
    assert default['pred_sem_seg'].shape == (64, 64)


def test_binary_model_thresholds_sigmoid():
    cfg = tiny_cfg(auxiliary_head=None)
    cfg['decode_head'].update(num_classes=2, out_channels=1, threshold=0.7,
                              loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=True))
    model = MODELS.build(cfg)
    logits = torch.logit(torch.tensor([0.2, 0.69, 0.71, 0.95])).view(1, 1, 2, 2)
    result = model.postprocess_result(logits, [dict(ori_shape=(2, 2))])[0]
    torch.testing.assert_close(result['seg_logits'], torch.sigmoid(logits[0]))
    assert result['pred_sem_seg'].tolist() == [[0, 0], [1, 1]]


def test_wrong_shape_checkpoint_is_reported():
    model, ref = reference_model('pspnet_small')
    state = dict(ref['state_dict'])
    state['decode_head.conv_seg.weight'] = torch.zeros(5, 32, 1, 1)
    with pytest.raises(CheckpointError, match=r'decode_head.conv_seg.weight: checkpoint \(5, 32, 1, 1\) vs '
                                              r'model \(19, 32, 1, 1\)'):
        load_state_dict(model, state, strict=True)


@MODELS.register_module()
class AddPreviousHead(BaseCascadeDecodeHead):
    """A test cascade head: its logits plus the previous stage's."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = nn.Conv2d(self.in_channels, self.channels, 1)

    def forward(self, inputs, prev_output):
        return self.cls_seg(self.conv(self._transform_inputs(inputs))) + prev_output


def test_cascade_encoder_decoder():
    cfg = tiny_cfg(type='CascadeEncoderDecoder', num_stages=2, auxiliary_head=None)
    cfg['decode_head'] = [cfg['decode_head'],
                          dict(type='AddPreviousHead', in_channels=64, in_index=3, channels=8, num_classes=4)]
    model = MODELS.build(cfg).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        feats = model.extract_feat(x)
        first = model.decode_head[0](feats)
        expected = model.decode_head[1](feats, first)
        torch.testing.assert_close(model(x, mode='tensor'), expected)
        torch.testing.assert_close(model.encode_decode(x, [dict(img_shape=(32, 32))]),
                                   F.interpolate(expected, (32, 32), mode='bilinear'))
    model.train()
    data = model.data_preprocessor(batch([(32, 32)]), training=True)
    assert {'decode_0.loss_ce', 'decode_1.loss_ce', 'decode_1.acc_seg'} <= set(model(**data, mode='loss'))


def test_tta_averages_probabilities_over_flipped_views():
    model = MODELS.build(tiny_cfg()).eval()
    tta = SegTTAModel(module=model)
    img = torch.randint(0, 256, (3, 24, 32), dtype=torch.uint8)
    meta = dict(ori_shape=(24, 32), img_shape=(24, 32), img_path='a.png')
    views = dict(inputs=[[img], [img.flip(2)]],
                 data_samples=[[dict(meta, flip=False)], [dict(meta, flip=True, flip_direction='horizontal')]])
    merged = tta.test_step(views)
    assert len(merged) == 1 and merged[0]['img_path'] == 'a.png'
    plain = model.test_step(dict(inputs=[img], data_samples=[meta]))[0]['seg_logits']
    flipped = model.test_step(dict(inputs=[img.flip(2)], data_samples=[meta]))[0]['seg_logits']
    expected = (plain.softmax(0) + flipped.flip(2).softmax(0)) / 2
    torch.testing.assert_close(merged[0]['seg_logits'], expected)
    torch.testing.assert_close(merged[0]['pred_sem_seg'], expected.argmax(0))


def test_init_weights_reaches_every_part():
    model = MODELS.build(tiny_cfg())
    model.backbone.stem[0].weight.data.zero_()
    model.decode_head.conv_seg.bias.data.fill_(1.0)
    model.auxiliary_head.conv_seg.bias.data.fill_(1.0)
    model.init_weights()
    assert model.backbone.stem[0].weight.abs().max() > 0
    assert model.decode_head.conv_seg.bias.abs().max() == 0 and model.auxiliary_head.conv_seg.bias.abs().max() == 0


def test_test_cfg_keys_are_checked_when_the_model_is_built():
    cfg = dict(type='EncoderDecoder',
               backbone=dict(type='MixVisionTransformer', embed_dims=8, num_layers=[1, 1, 1, 1], num_heads=[1, 1, 1, 1]),
               decode_head=dict(type='SegformerHead', in_channels=[8, 16, 32, 64], in_index=[0, 1, 2, 3], channels=8,
                                num_classes=3))
    with pytest.raises(KeyError, match="model.test_cfg.autocast_dtyp .*'autocast_dtype'"):
        MODELS.build(dict(cfg, test_cfg=dict(mode='whole', autocast_dtyp='bfloat16')))
    assert MODELS.build(dict(cfg, test_cfg=dict(mode='slide', crop_size=(64, 64), stride=(32, 32),
                                                slide_batch_size=2, autocast_dtype=None))).test_cfg['mode'] == 'slide'
    with pytest.raises(ValueError, match="mode='slide' needs crop_size=\\(h, w\\) and stride"):
        MODELS.build(dict(cfg, test_cfg=dict(mode='slide', crop_size=(64, 64))))
    with pytest.raises(KeyError, match="data_preprocessor.test_cfg.size_divisr .*'size_divisor'"):
        SegDataPreProcessor(test_cfg=dict(size_divisr=32))
