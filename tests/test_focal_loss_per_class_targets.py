"""``FocalLoss`` with targets shaped like the logits (one-hot maps or class probabilities), as MMSeg accepts.

The expected values were measured with MMSeg 1.2.2's ``FocalLoss`` (its CPU path, the one that handles these
targets; torch 2.13 CPU) on the deterministic inputs built below.
"""
import pytest
import torch
import torch.nn.functional as F

from segkit.models.losses import FocalLoss

N, C, H, W = 2, 4, 3, 5


def inputs():
    pred = (torch.arange(N * C * H * W, dtype=torch.float32) * 0.37).sin().mul(3).reshape(N, C, H, W)
    labels = (torch.arange(N * H * W) * 7 % C).reshape(N, H, W)
    one_hot = F.one_hot(labels, C).permute(0, 3, 1, 2).float()
    soft = (torch.arange(N * C * H * W, dtype=torch.float32) * 0.11).cos().reshape(N, C, H, W).softmax(1)
    return pred, labels, one_hot, soft


def close(value, expected):
    torch.testing.assert_close(value, torch.tensor(expected), rtol=1e-6, atol=1e-7)


def test_one_hot_and_soft_targets_match_mmseg():
    pred, labels, one_hot, soft = inputs()
    close(FocalLoss()(pred, one_hot), 0.414955198764801)
    close(FocalLoss(reduction='sum')(pred, one_hot), 49.79462432861328)
    close(FocalLoss(gamma=1.5, alpha=[0.25, 0.5, 0.75, 0.5], class_weight=[1.0, 2.0, 0.5, 1.0])(pred, soft),
          0.33161208033561707)
    pixel_weight = (torch.arange(N * H * W, dtype=torch.float32) % 3).reshape(N, H, W)
    close(FocalLoss(loss_weight=2.0)(pred, one_hot, weight=pixel_weight, avg_factor=17.0), 6.5389909744262695)
    binary = (labels[:, None] == 1).float()
    close(FocalLoss()(pred[:, :1], binary), 0.42783021926879883)
    # integer or bool one-hot maps work as float ones
    close(FocalLoss()(pred, one_hot.long()), 0.414955198764801)
    close(FocalLoss()(pred, one_hot.bool()), 0.414955198764801)


def test_one_hot_targets_give_the_index_label_loss():
    """For hard targets MMSeg's two paths agree: the one-hot map and its labels give the same loss."""
    pred, labels, one_hot, _ = inputs()
    for kwargs in (dict(), dict(alpha=[0.2, 0.4, 0.6, 0.8], class_weight=[1.0, 0.5, 2.0, 1.0])):
        torch.testing.assert_close(FocalLoss(**kwargs)(pred, one_hot), FocalLoss(**kwargs)(pred, labels))


def test_ignore_index_applies_to_the_argmax_of_the_target():
    """A pixel is ignored when its target's argmax is ``ignore_index`` (MMSeg's rule), so a class index
    ignores that class's pixels, and an all-zero target vector (argmax 0) only matters for ignore_index=0."""
    pred, labels, one_hot, _ = inputs()
    close(FocalLoss()(pred, one_hot, ignore_index=2), 0.3230627179145813)
    per_element = FocalLoss(reduction='none')(pred, one_hot, ignore_index=2)
    assert per_element.shape == pred.shape
    close(per_element.sum(), 38.76752471923828)
    ignored = (labels == 2).unsqueeze(1).expand_as(pred)
    assert per_element[ignored].abs().max() == 0 and (per_element[~ignored] > 0).all()
    holes = one_hot.clone()
    holes[0, :, 0, :] = 0
    close(FocalLoss()(pred, holes), 0.41172555088996887)
    close(FocalLoss()(pred, holes, ignore_index=0), 0.26654037833213806)


def test_weights_shaped_like_the_logits_and_bad_shapes():
    pred, _, one_hot, _ = inputs()
    element_weight = torch.rand(N, C, H, W)
    expected = (FocalLoss(reduction='none')(pred, one_hot) * element_weight).mean()
    torch.testing.assert_close(FocalLoss()(pred, one_hot, weight=element_weight), expected)
    with pytest.raises(ValueError, match='weight'):
        FocalLoss()(pred, one_hot, weight=torch.ones(N, H))
    with pytest.raises(ValueError, match='match neither'):
        FocalLoss()(pred, one_hot[:, :3])
