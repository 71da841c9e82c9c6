"""Losses: MMSeg 1.2.2 values, the combinations MMSeg crashes on, class-weight files, accuracy."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import load_reference
from segkit.models.losses import (CrossEntropyLoss, DiceLoss, FocalLoss, LovaszLoss, accuracy, get_class_weight)

pytestmark = pytest.mark.filterwarnings('ignore:CrossEntropyLoss. avg_non_ignore')
IGNORE = 255


@pytest.fixture(scope='module')
def ref():
    return load_reference('losses.pt')


def test_values_match_mmseg(ref):
    x, y = ref['logits'], ref['labels']
    assert (y == IGNORE).any()
    got = {
        'ce': CrossEntropyLoss()(x, y, ignore_index=IGNORE),
        'ce_avg_non_ignore': CrossEntropyLoss(avg_non_ignore=True)(x, y, ignore_index=IGNORE),
        'dice': DiceLoss()(x, y, ignore_index=IGNORE),
        'lovasz_per_image_false': LovaszLoss(per_image=False, reduction='none')(x, y, ignore_index=IGNORE),
    }
    assert set(got) == set(ref['values'])
    for name, value in got.items():
        torch.testing.assert_close(value, ref['values'][name], atol=1e-5, rtol=0, msg=name)


@pytest.mark.parametrize('avg_non_ignore', [False, True])
def test_class_weighted_ce_with_ignored_pixels(ref, avg_non_ignore):
    """MMSeg raises here; segkit gives torch's class-weighted mean over the non-ignored pixels."""
    x, y, w = ref['logits'], ref['labels'], ref['class_weight']
    assert 'ce_class_weight' in ref['mmseg_errors']
    loss = CrossEntropyLoss(class_weight=w, avg_non_ignore=avg_non_ignore)(x, y, ignore_index=IGNORE)
    torch.testing.assert_close(loss, F.cross_entropy(x, y, weight=torch.tensor(w), ignore_index=IGNORE))


def test_class_weighted_ce_without_ignored_pixels_is_mmseg_rule(ref):
    """Without ignored pixels MMSeg divides by the summed class weights of all pixels: the same value."""
    x, w = ref['logits'], torch.tensor(ref['class_weight'])
    y = ref['labels'].clamp(max=4)
    per_pixel = F.cross_entropy(x, y, reduction='none') * w[y]
    loss = CrossEntropyLoss(class_weight=w.tolist(), loss_weight=2.0)(x, y, ignore_index=IGNORE)
    torch.testing.assert_close(loss, 2.0 * per_pixel.sum() / w[y].sum())


def test_focal_loss_with_ignored_pixels(ref):
    """MMSeg's CPU path raises; segkit computes the sigmoid focal loss with ignored pixels weighted 0 and the
    mean over all pixel-class pairs (MMSeg's CUDA-path semantics)."""
    x, y = ref['logits'], ref['labels']
    assert 'focal' in ref['mmseg_errors']
    gamma, alpha = 2.0, 0.5
    valid = (y != IGNORE).unsqueeze(1).float()
    target = torch.zeros_like(x).scatter_(1, y.clamp(max=4).unsqueeze(1), 1.0)
    p = torch.sigmoid(x)
    pos = -alpha * (1 - p) ** gamma * torch.log(p)
    neg = -(1 - alpha) * p ** gamma * torch.log(1 - p)
    expected = ((target * pos + (1 - target) * neg) * valid).mean()
    torch.testing.assert_close(FocalLoss()(x, y, ignore_index=IGNORE), expected)
    per_element = FocalLoss(reduction='none')(x, y, ignore_index=IGNORE)
    assert per_element.shape == x.shape and per_element[:, :, :3].abs().max() == 0
    cw = [1.0, 2.0, 0.0, 1.0, 1.0]
    weighted = FocalLoss(class_weight=cw)(x, y, ignore_index=IGNORE)
    torch.testing.assert_close(weighted, ((target * pos + (1 - target) * neg) * valid
                                          * torch.tensor(cw).view(1, 5, 1, 1)).mean())


def test_binary_sigmoid_ce_one_channel():
    x = torch.randn(2, 1, 4, 5)
    y = torch.randint(0, 2, (2, 4, 5))
    y[0, 0] = IGNORE
    valid = y != IGNORE
    bce = F.binary_cross_entropy_with_logits(x[:, 0][valid], y[valid].float(), reduction='sum')
    torch.testing.assert_close(CrossEntropyLoss(use_sigmoid=True)(x, y, ignore_index=IGNORE), bce / y.numel())
    torch.testing.assert_close(CrossEntropyLoss(use_sigmoid=True, avg_non_ignore=True)(x, y, ignore_index=IGNORE),
                               bce / valid.sum())
    with pytest.raises(ValueError, match='0/1 labels'):
        CrossEntropyLoss(use_sigmoid=True)(x, torch.full((2, 4, 5), 2), ignore_index=IGNORE)


def test_multi_class_sigmoid_ce_uses_one_hot_and_pos_weight():
    x = torch.randn(2, 3, 4, 5)
    y = torch.randint(0, 3, (2, 4, 5))
    target = F.one_hot(y, 3).permute(0, 3, 1, 2).float()
    pos_weight = torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1)
    expected = F.binary_cross_entropy_with_logits(x, target, pos_weight=pos_weight)
    loss = CrossEntropyLoss(use_sigmoid=True, class_weight=[1.0, 2.0, 3.0])(x, y, ignore_index=IGNORE)
    torch.testing.assert_close(loss, expected)


def test_ce_reductions_and_pixel_weights():
    x = torch.randn(2, 3, 4, 4)
    y = torch.randint(0, 3, (2, 4, 4))
    per_pixel = F.cross_entropy(x, y, reduction='none')
    loss = CrossEntropyLoss()
    torch.testing.assert_close(loss(x, y, reduction_override='none'), per_pixel)
    torch.testing.assert_close(loss(x, y, reduction_override='sum'), per_pixel.sum())
    weight = torch.rand(2, 4, 4)
    torch.testing.assert_close(loss(x, y, weight=weight), (per_pixel * weight).sum() / y.numel())
    torch.testing.assert_close(loss(x, y, avg_factor=7.0), per_pixel.sum() / 7.0)
    with pytest.raises(ValueError, match='use_mask'):
        CrossEntropyLoss(use_mask=True)


def test_class_weight_files(tmp_path):
    weights = [0.5, 1.0, 2.0]
    np.save(tmp_path / 'w.npy', np.array(weights))
    (tmp_path / 'w.json').write_text(json.dumps(weights))
    (tmp_path / 'w.yaml').write_text('[0.5, 1.0, 2.0]\n')
    for name in ('w.npy', 'w.json', 'w.yaml'):
        assert get_class_weight(str(tmp_path / name)) == weights
    assert CrossEntropyLoss(class_weight=str(tmp_path / 'w.npy')).class_weight == weights
    (tmp_path / 'w.pkl').write_bytes(b'not read')
    with pytest.raises(ValueError, match='pickle'):
        get_class_weight(str(tmp_path / 'w.pkl'))
    with pytest.raises(FileNotFoundError, match='missing.json'):
        get_class_weight(str(tmp_path / 'missing.json'))


def test_dice_variants():
    x = torch.randn(2, 3, 4, 4)
    y = torch.randint(0, 3, (2, 4, 4))
    p = x.softmax(1)
    t = F.one_hot(y, 3).permute(0, 3, 1, 2).float()
    overlap = (p * t).flatten(1).sum(1)
    naive = 1 - (2 * overlap + 1e-3) / (p.flatten(1).sum(1) + t.flatten(1).sum(1) + 1e-3)
    loss = DiceLoss(use_sigmoid=False, naive_dice=True, reduction='none')(x, y)
    torch.testing.assert_close(loss, naive)
    with pytest.raises(ValueError, match='per sample'):
        DiceLoss()(x, y, weight=torch.ones(2, 4, 4))


def test_lovasz_per_image_binary_and_all_ignored():
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    y = torch.randint(0, 3, (2, 4, 4))
    y[1] = IGNORE  # an image with no labelled pixel contributes 0
    per_image = LovaszLoss(per_image=True, reduction='none')(x, y, ignore_index=IGNORE)
    assert per_image.shape == (2,) and per_image[1] == 0
    single = LovaszLoss(per_image=False)(x[:1], y[:1], ignore_index=IGNORE)
    torch.testing.assert_close(per_image[0], single)
    per_image.sum().backward()
    assert x.grad[1].abs().max() == 0 and x.grad[0].abs().max() > 0
    # binary hinge on 1-channel logits: perfectly separated with margin > 1 gives 0 loss
    labels = torch.tensor([[[0, 1], [1, 0]]])
    logits = (labels.float() * 2 - 1).mul(3).unsqueeze(1)
    assert LovaszLoss(loss_type='binary')(logits, labels) == 0
    with pytest.raises(ValueError, match='classes'):
        LovaszLoss(classes='some')


def test_lovasz_class_list_and_weights():
    x = torch.randn(1, 3, 4, 4)
    y = torch.randint(0, 3, (1, 4, 4))
    only_1 = LovaszLoss(classes=[1])(x, y, ignore_index=IGNORE)
    weighted = LovaszLoss(classes=[1], class_weight=[1.0, 3.0, 1.0])(x, y, ignore_index=IGNORE)
    torch.testing.assert_close(weighted, 3 * only_1)


def test_accuracy():
    pred = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5], [0.4, 0.4, 0.2]])
    target = torch.tensor([1, 2, 2, 255])
    torch.testing.assert_close(accuracy(pred, target, ignore_index=255), torch.tensor(200.0 / 3))
    top1, top2 = accuracy(pred, target, topk=(1, 2), ignore_index=255)
    torch.testing.assert_close(top2, torch.tensor(100.0))
    torch.testing.assert_close(accuracy(pred, target, thresh=0.6, ignore_index=255), torch.tensor(100.0 / 3))
    torch.testing.assert_close(accuracy(pred, target), torch.tensor(50.0))
    with pytest.raises(ValueError, match='topk'):
        accuracy(pred, target, topk=4)


@pytest.mark.parametrize('loss_type', [CrossEntropyLoss, DiceLoss, FocalLoss, LovaszLoss])
def test_an_unknown_reduction_is_refused_when_built_and_when_overridden(loss_type):
    with pytest.raises(ValueError, match='reduction must be "none", "mean" or "sum", got \'avg\''):
        loss_type(reduction='avg')
    loss = loss_type(reduction='mean', **({'loss_type': 'multi_class'} if loss_type is LovaszLoss else {}))
    with pytest.raises(ValueError, match='reduction_override must be "none", "mean" or "sum", got \'avg\''):
        loss(torch.zeros(1, 2, 3, 3), torch.zeros(1, 3, 3, dtype=torch.long), reduction_override='avg')
