"""``MultiScaleFlipAug`` (MMSeg 0.x's TTA wrapper) is refused when built, with the MMSeg 1.x pipeline to use.

MMSeg 1.2.2 registers no ``MultiScaleFlipAug``; the name reaches MMCV 2.1's, which (measured) raises
``TypeError: unexpected keyword argument 'img_scale'`` on a 0.x config and ``KeyError: 'data_sample'`` on the
first image when given MMCV's own arguments and MMSeg's ``PackSegInputs``.
"""
import cv2
import numpy as np
import pytest

from segkit.datasets.transforms import Compose
from segkit.registry import TRANSFORMS

OLD_PER_VIEW = [dict(type='Resize', keep_ratio=True), dict(type='RandomFlip'),
                dict(type='Normalize', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True),
                dict(type='ImageToTensor', keys=['img']), dict(type='Collect', keys=['img'])]


def refusal(**kwargs):
    with pytest.raises(ValueError) as info:
        Compose([dict(type='LoadImageFromFile'), dict(type='MultiScaleFlipAug', **kwargs)])
    return str(info.value)


def suggested(message):
    """Run the config text the message suggests; returns the pipeline it defines."""
    code = message.split('For these arguments:\n', 1)[1].split('\nand test with', 1)[0]
    namespace = {}
    exec(code, namespace)
    return namespace.get('tta_pipeline', namespace.get('test_pipeline'))


@pytest.fixture
def image_and_label(tmp_path):
    cv2.imwrite(str(tmp_path / 'i.png'), np.random.RandomState(0).randint(0, 256, (30, 40, 3)).astype(np.uint8))
    cv2.imwrite(str(tmp_path / 'l.png'), np.random.RandomState(1).randint(0, 5, (30, 40)).astype(np.uint8))
    return dict(img_path=str(tmp_path / 'i.png'), seg_map_path=str(tmp_path / 'l.png'), seg_fields=[])


def test_old_multi_scale_flip_config_gets_a_working_test_time_aug(image_and_label):
    message = refusal(img_scale=(80, 20), img_ratios=[0.5, 1.0], flip=True, transforms=OLD_PER_VIEW)
    assert 'TestTimeAug' in message and "tta_model = dict(type='SegTTAModel')" in message and '--tta' in message
    pipeline = suggested(message)
    assert pipeline[1]['type'] == 'TestTimeAug'
    out = Compose(pipeline)(dict(image_and_label))
    # (80, 20) x 0.5 = (40, 10): a 30x40 image fits as 10x13; x 1.0 = (80, 20): as 20x27; each unflipped, flipped
    assert [tuple(x.shape[1:]) for x in out['inputs']] == [(10, 13)] * 2 + [(20, 27)] * 2
    assert [d['flip'] for d in out['data_samples']] == [False, True] * 2


def test_old_single_scale_test_pipeline_becomes_a_plain_one(image_and_label):
    """MMSeg 0.x wrapped even plain testing in MultiScaleFlipAug (one scale, flip=False)."""
    message = refusal(img_scale=(80, 20), flip=False, transforms=OLD_PER_VIEW)
    assert 'test_pipeline = [' in message and 'TestTimeAug(' not in message and '--tta' not in message
    out = Compose(suggested(message))(dict(image_and_label))
    assert tuple(out['inputs'].shape) == (3, 20, 27) and out['data_samples']['gt_sem_seg'].shape == (30, 40)


def test_mmcv_style_arguments_are_translated_too(image_and_label):
    message = refusal(scales=[(80, 20)], allow_flip=True, flip_direction=['horizontal', 'vertical'],
                      transforms=[dict(type='PackSegInputs')])
    out = Compose(suggested(message))(dict(image_and_label))
    assert [d['flip_direction'] for d in out['data_samples']] == [None, 'horizontal', 'vertical']


def test_untranslatable_arguments_still_name_test_time_aug():
    message = refusal(img_scale='2048x512', img_ratios=[1.0], transforms=[])
    assert 'TestTimeAug' in message and 'For example:' in message
    with pytest.raises(ValueError, match='TestTimeAug'):
        TRANSFORMS.build(dict(type='MultiScaleFlipAug'))
