"""IoUMetric: parity with MMSeg's numbers, ignore/NaN handling, flat memory, padding removal, PNG output and
the summed totals across ranks."""
import logging
import re

import numpy as np
import pytest
import torch
import torch.distributed as torch_dist
from PIL import Image

from segkit.evaluation import IoUMetric
from segkit.registry import METRICS
from tests.conftest import load_reference


def metric_with(classes=('a', 'b', 'c'), **kwargs):
    metric = METRICS.build(dict(type='IoUMetric', **kwargs))
    metric.dataset_meta = dict(classes=list(classes))
    return metric


def feed(metric, pairs):
    for pred, gt in pairs:
        metric.process({}, [dict(pred_sem_seg=torch.as_tensor(pred), gt_sem_seg=torch.as_tensor(gt),
                                 img_path='x.jpg')])


def test_matches_mmseg_reference():
    inputs, expected = load_reference('metric_inputs.pt'), load_reference('metric.json')['summary']
    metric = metric_with(inputs['classes'], iou_metrics=['mIoU', 'mDice', 'mFscore'])
    metric.process({}, [dict(pred_sem_seg=p, gt_sem_seg=g) for p, g in zip(inputs['preds'], inputs['gts'])])
    result = metric.evaluate(len(inputs['preds']))
    assert set(result) == set(expected)
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-4), key


def test_hand_computed_values_with_ignore_and_absent_class(caplog):
    gt = [[0, 0, 1, 255]]
    pred = [[0, 1, 1, 2]]  # the ignored pixel's prediction does not count
    metric = metric_with(iou_metrics=['mIoU', 'mDice'])
    feed(metric, [(pred, gt)])
    with caplog.at_level(logging.INFO, logger='segkit'):
        result = metric.evaluate(1)
    # class 0: I=1 U=2, class 1: I=1 U=2, class 2 absent from labels and predictions (after ignoring): NaN
    assert result == {'aAcc': pytest.approx(66.67), 'mIoU': 50.0, 'mAcc': 75.0, 'mDice': pytest.approx(66.67)}
    assert 'per class results' in caplog.text and re.search(r'^c\s+nan\s+nan\s+nan$', caplog.text, re.M)
    metric = metric_with(nan_to_num=0)
    feed(metric, [(pred, gt)])
    assert metric.evaluate(1)['mIoU'] == pytest.approx(33.33)


def test_uint8_labels_score_like_int64_labels():
    pred = torch.tensor([[0, 1, 1, 2, 2]])
    gt = torch.tensor([[0, 0, 1, 255, 2]])
    for ignore_index in (255, -1):  # -1: a uint8 255 must not be taken for it
        results = []
        for label in (gt, gt.to(torch.uint8)):
            metric = metric_with(ignore_index=ignore_index)
            metric.process({}, [dict(pred_sem_seg=pred, gt_sem_seg=label)])
            results.append(metric.evaluate(1))
        assert results[0] == results[1]
    # ignore_index=-1: the 255 pixel is not ignored, so its prediction (2) widens class 2's union
    assert results[0]['mIoU'] == pytest.approx(50.0)


def test_prefix_and_missing_dataset_meta():
    metric = metric_with(prefix='val')
    feed(metric, [([[0, 1]], [[0, 1]])])
    assert metric.evaluate(1) == {'val/aAcc': 100.0, 'val/mIoU': 100.0, 'val/mAcc': 100.0}
    bare = IoUMetric()
    with pytest.raises(RuntimeError, match='dataset_meta'):
        bare.process({}, [dict(pred_sem_seg=torch.zeros(2, 2), gt_sem_seg=torch.zeros(2, 2))])
    with pytest.raises(KeyError, match='mAP'):
        IoUMetric(iou_metrics=['mAP'])


def test_memory_stays_flat_and_counts_accumulate():
    rng = np.random.RandomState(0)
    pairs = [(rng.randint(0, 3, (8, 8)), rng.randint(0, 3, (8, 8))) for _ in range(40)]

    def held_elements(metric):
        return sum(v.numel() for v in vars(metric).values() if isinstance(v, torch.Tensor))

    few, many = metric_with(), metric_with()
    feed(few, pairs[:2])
    feed(many, pairs)
    assert held_elements(few) == held_elements(many) == 2 * 4 * 3
    whole = metric_with()
    big_pred = np.concatenate([p for p, _ in pairs])
    big_gt = np.concatenate([g for _, g in pairs])
    feed(whole, [(big_pred, big_gt)])
    assert many.evaluate(40) == whole.evaluate(1)


def test_round_up_padding_is_not_counted_twice():
    rng = np.random.RandomState(1)
    pairs = [(rng.randint(0, 3, (5, 5)), rng.randint(0, 3, (5, 5))) for _ in range(4)]
    exact, padded = metric_with(), metric_with()
    feed(exact, pairs[:3])
    feed(padded, pairs[:3] + [pairs[0]])  # DefaultSampler(round_up=True) repeats the first sample
    assert padded.evaluate(3) == exact.evaluate(3)


def test_format_only_writes_label_pngs(tmp_path):
    metric = metric_with(output_dir=str(tmp_path / 'out'), format_only=True)
    pred = torch.tensor([[0, 1], [2, 1]])
    metric.process({}, [dict(pred_sem_seg=pred, img_path='/data/images/frame_01.jpg'),
                        dict(pred_sem_seg=pred, img_path='/data/images/frame_02.jpg', reduce_zero_label=True)])
    assert metric.evaluate(2) == {}
    np.testing.assert_array_equal(np.array(Image.open(tmp_path / 'out' / 'frame_01.png')), pred.numpy())
    np.testing.assert_array_equal(np.array(Image.open(tmp_path / 'out' / 'frame_02.png')), pred.numpy() + 1)
    with pytest.raises(ValueError, match='output_dir'):
        IoUMetric(format_only=True)


def test_totals_are_summed_over_the_process_group(tmp_path):
    torch_dist.init_process_group('gloo', init_method=f'file://{tmp_path}/store', rank=0, world_size=1)
    try:
        metric = metric_with()
        feed(metric, [([[0, 1, 2]], [[0, 1, 1]])])
        assert metric.evaluate(1) == {'aAcc': pytest.approx(66.67), 'mIoU': pytest.approx(50.0), 'mAcc': 75.0}
    finally:
        torch_dist.destroy_process_group()
