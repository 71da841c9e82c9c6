"""``Pad`` records ``pad_shape`` as MMCV's Pad does: the padded image's whole shape, channels included."""
import numpy as np
import torch

from segkit.datasets.transforms import Compose, Pad
from segkit.registry import MODELS


def _results(h, w, channels=3):
    shape = (h, w, channels) if channels else (h, w)
    img = np.random.RandomState(0).randint(0, 256, shape).astype(np.uint8)
    seg = np.random.RandomState(1).randint(0, 4, (h, w)).astype(np.uint8)
    return dict(img=img, gt_seg_map=seg, seg_fields=['gt_seg_map'], img_shape=(h, w), ori_shape=(h, w))


def test_pad_shape_is_the_full_padded_image_shape():
    # measured with MMCV 2.1 (MMSeg 1.2.2's Pad): size_divisor=8 on 13x10x3 gives pad_shape (16, 16, 3)
    out = Pad(size_divisor=8)(_results(13, 10))
    assert out['pad_shape'] == (16, 16, 3) and out['img_shape'] == (16, 16)
    assert out['gt_seg_map'].shape == (16, 16)
    # size is (w, h); an image already at the size is not padded but still records its shape
    out = Pad(size=(32, 20))(_results(20, 32))
    assert out['pad_shape'] == (20, 32, 3) and out['img_shape'] == (20, 32)
    # a 2-D (grayscale) image has no channel axis to record
    out = Pad(size_divisor=8)(_results(13, 10, channels=0))
    assert out['pad_shape'] == (16, 16) and out['img_shape'] == (16, 16)


def test_three_element_pad_shape_sizes_the_logits_at_test_time():
    """With no test-time padding in the data preprocessor, the decode head sizes its logits by the pipeline's
    ``pad_shape``; its channel entry must not get in the way."""
    model = MODELS.build(dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[0.0] * 3, std=[1.0] * 3),
        backbone=dict(type='ResNetV1c', depth=18, base_channels=8, num_stages=4, out_indices=(0, 1, 2, 3),
                      dilations=(1, 1, 2, 4), strides=(1, 2, 1, 1), norm_cfg=dict(type='BN')),
        decode_head=dict(type='FCNHead', in_channels=64, in_index=3, channels=8, num_convs=1, num_classes=4,
                         norm_cfg=dict(type='BN')),
        test_cfg=dict(mode='whole'))).eval()
    packed = Compose([dict(type='Pad', size_divisor=16), dict(type='PackSegInputs')])(_results(30, 40))
    assert packed['data_samples']['pad_shape'] == (32, 48, 3)
    with torch.no_grad():
        (result,) = model.test_step(dict(inputs=[packed['inputs']], data_samples=[packed['data_samples']]))
    assert result['pred_sem_seg'].shape == (30, 40)  # resized to ori_shape
    assert result['pad_shape'] == (32, 48, 3)
