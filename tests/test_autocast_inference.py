"""Opt-in reduced-precision inference: ``test_cfg.autocast_dtype`` on every inference path of a segmentor."""
import pytest
import torch

from segkit.registry import MODELS

MODEL = dict(
    type='EncoderDecoder',
    backbone=dict(type='MixVisionTransformer', embed_dims=8, num_layers=[1, 1, 1, 1], num_heads=[1, 2, 5, 8]),
    decode_head=dict(type='SegformerHead', in_channels=[8, 16, 40, 64], in_index=[0, 1, 2, 3], channels=16,
                     num_classes=4, norm_cfg=dict(type='BN')),
    test_cfg=dict(mode='whole'))
SLIDE = dict(mode='slide', crop_size=(64, 64), stride=(48, 48))


@pytest.fixture(scope='module')
def models():
    """The same weights twice: full precision, and with ``autocast_dtype='bfloat16'``."""
    torch.manual_seed(0)
    full = MODELS.build(MODEL).eval()
    reduced = MODELS.build({**MODEL, 'test_cfg': dict(mode='whole', autocast_dtype='bfloat16')}).eval()
    reduced.load_state_dict(full.state_dict())
    return full, reduced


def assert_bf16_close(reduced: torch.Tensor, full: torch.Tensor) -> None:
    """float32 out, near the full-precision result, and not equal to it (so autocast really ran)."""
    assert reduced.dtype == torch.float32
    scale = full.abs().max()
    assert (reduced - full).abs().max() < 0.05 * scale
    assert not torch.equal(reduced, full)


def test_tensor_mode(models):
    full, reduced = models
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        assert_bf16_close(reduced(x, None, mode='tensor'), full(x, None, mode='tensor'))


def test_predict_mode(models):
    full, reduced = models
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        got, want = reduced(x, None, mode='predict')[0], full(x, None, mode='predict')[0]
    assert_bf16_close(got['seg_logits'], want['seg_logits'])
    assert (got['pred_sem_seg'] == want['pred_sem_seg']).float().mean() > 0.9


def test_slide_inference(models):
    full, reduced = models
    x = torch.randn(1, 3, 80, 120)
    metas = [dict(img_shape=(80, 120), ori_shape=(80, 120), pad_shape=(80, 120))]
    full.test_cfg = SLIDE
    reduced.test_cfg = {**SLIDE, 'autocast_dtype': 'bfloat16'}
    try:
        with torch.no_grad():
            assert_bf16_close(reduced.slide_inference(x, metas), full.slide_inference(x, metas))
    finally:
        full.test_cfg = dict(mode='whole')
        reduced.test_cfg = dict(mode='whole', autocast_dtype='bfloat16')


def test_unset_leaves_an_enclosing_autocast_alone(models):
    full, _ = models
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        assert full(torch.randn(1, 3, 64, 64), None, mode='tensor').dtype == torch.bfloat16


def test_unknown_dtype_is_named_in_the_error():
    model = MODELS.build({**MODEL, 'test_cfg': dict(mode='whole', autocast_dtype='bf16')}).eval()
    with pytest.raises(ValueError, match="test_cfg.autocast_dtype.*'bf16'"):
        model(torch.randn(1, 3, 32, 32), None, mode='tensor')


def test_training_losses_are_untouched():
    """'loss' mode is the optim wrapper's business: the inference key does not change it."""
    torch.manual_seed(0)
    plain = MODELS.build(MODEL).train()
    reduced = MODELS.build({**MODEL, 'test_cfg': dict(mode='whole', autocast_dtype='bfloat16')}).train()
    reduced.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    samples = [dict(img_shape=(64, 64), gt_sem_seg=torch.randint(0, 4, (64, 64))) for _ in range(2)]
    torch.manual_seed(1)
    want = plain(x, samples, mode='loss')['decode.loss_ce']
    torch.manual_seed(1)
    assert torch.equal(reduced(x, samples, mode='loss')['decode.loss_ce'], want)
