"""Transforms: MMSeg's shapes, keep-ratio arithmetic, crop/flip alignment, photometric exactness, TTA views,
packing per docs/architecture.md, and the label checks in LoadAnnotations."""
import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from segkit.datasets.transforms import (Compose, LoadAnnotations, LoadImageFromFile, PackSegInputs, Pad,
                                        PhotoMetricDistortion, RandomCrop, RandomFlip, RandomResize, Resize,
                                        ResizeToMultiple)
from segkit.registry import TRANSFORMS


def make_results(h=30, w=40, num_classes=5, seed=0):
    """An image whose blue channel encodes the label, so that geometric alignment can be checked."""
    rng = np.random.RandomState(seed)
    seg = rng.randint(0, num_classes, (h, w)).astype(np.uint8)
    img = np.stack([seg * 40, rng.randint(0, 256, (h, w)), rng.randint(0, 256, (h, w))], -1).astype(np.uint8)
    return dict(img=img, gt_seg_map=seg, seg_fields=['gt_seg_map'], img_shape=(h, w), ori_shape=(h, w))


def assert_aligned(results):
    assert results['img'].shape[:2] == results['gt_seg_map'].shape
    np.testing.assert_array_equal(results['img'][:, :, 0], results['gt_seg_map'] * 40)


# ----------------------------------------------------------------------------- resize
def test_resize_keep_ratio_follows_mmcv_rescale_rule():
    out = Resize(scale=(2048, 512), keep_ratio=True)(make_results(300, 400))
    factor = min(2048 / 400, 512 / 300)  # long edge <= 2048, short edge <= 512
    assert out['img_shape'] == (int(300 * factor + 0.5), int(400 * factor + 0.5)) == (512, 683)
    assert out['scale_factor'] == (683 / 400, 512 / 300)
    assert out['gt_seg_map'].shape == (512, 683)
    assert set(np.unique(out['gt_seg_map'])) <= set(range(5))  # nearest: no interpolated labels
    assert out['keep_ratio'] is True and out['scale'] == (2048, 512)


def test_resize_exact_scale_and_scale_factor():
    out = Resize(scale=(50, 20))(make_results(30, 40))
    assert out['img'].shape == (20, 50, 3) and out['gt_seg_map'].shape == (20, 50)
    assert out['scale_factor'] == (50 / 40, 20 / 30)
    out = Resize(scale_factor=0.5, keep_ratio=True)(make_results(30, 40))
    assert out['img_shape'] == (15, 20)
    with pytest.raises(ValueError, match='scale or scale_factor'):
        Resize()


def test_random_resize_ratio_range_and_bounds():
    transform = RandomResize(scale=(200, 100), ratio_range=(0.5, 2.0), keep_ratio=True)
    np.random.seed(0)
    shapes = {transform(make_results(30, 60))['img_shape'] for _ in range(30)}
    assert len(shapes) > 10
    for h, w in shapes:
        assert 50 * 0.99 <= h <= 200 and w == pytest.approx(2 * h, abs=1)
    bounded = RandomResize(scale=[(20, 10), (40, 30)], keep_ratio=False)
    for _ in range(20):
        h, w = bounded(make_results())['img_shape']
        assert 10 <= h <= 30 and 20 <= w <= 40


def test_resize_to_multiple_and_pad():
    out = ResizeToMultiple(size_divisor=16)(make_results(30, 40))
    assert out['img_shape'] == out['pad_shape'] == (32, 48) and out['gt_seg_map'].shape == (32, 48)
    out = Pad(size_divisor=16, pad_val=dict(img=7, seg=255))(make_results(30, 40))
    assert out['img'].shape == out['pad_shape'] == (32, 48, 3) and out['img_shape'] == (32, 48)
    assert (out['img'][30:] == 7).all() and (out['gt_seg_map'][30:] == 255).all()
    assert (out['gt_seg_map'][:, 40:] == 255).all() and (out['gt_seg_map'][:30, :40] < 5).all()
    out = Pad(size=(50, 35))(make_results(30, 40))
    assert out['img'].shape[:2] == (35, 50)


# ----------------------------------------------------------------------------- crop and flip
def test_random_crop_shape_alignment_and_small_images():
    np.random.seed(1)
    out = RandomCrop(crop_size=(16, 24))(make_results(30, 40))
    assert out['img_shape'] == (16, 24)
    assert_aligned(out)
    out = RandomCrop(crop_size=64)(make_results(30, 40))  # larger than the image: whole image
    assert out['img'].shape[:2] == (30, 40)


def test_random_crop_cat_max_ratio_rejects_single_class_windows():
    seg = np.zeros((100, 100), np.uint8)
    seg[:, 80:] = 1  # only windows reaching x >= 80 hold two classes
    results = dict(img=np.zeros((100, 100, 3), np.uint8), gt_seg_map=seg, seg_fields=['gt_seg_map'])

    def balanced_share(cat_max_ratio):
        np.random.seed(0)
        crop = RandomCrop(crop_size=(40, 40), cat_max_ratio=cat_max_ratio)
        shares = []
        for _ in range(200):
            counts = np.bincount(crop(dict(results))['gt_seg_map'].ravel(), minlength=2)
            shares.append(counts.max() / counts.sum() < 0.75)
        return np.mean(shares)

    assert balanced_share(1.0) < 0.35
    assert balanced_share(0.75) > 0.8


def test_random_flip_moves_image_and_label_together():
    results = make_results()
    out = RandomFlip(prob=1.0)(dict(results, img=results['img'].copy()))
    assert out['flip'] is True and out['flip_direction'] == 'horizontal'
    np.testing.assert_array_equal(out['gt_seg_map'], results['gt_seg_map'][:, ::-1])
    assert_aligned(out)
    out = RandomFlip(prob=1.0, direction='vertical')(make_results())
    np.testing.assert_array_equal(out['gt_seg_map'], make_results()['gt_seg_map'][::-1])
    assert_aligned(out)
    out = RandomFlip(prob=0.0)(make_results())
    assert out['flip'] is False and out['flip_direction'] is None
    np.testing.assert_array_equal(out['gt_seg_map'], make_results()['gt_seg_map'])
    np.random.seed(0)
    both = RandomFlip(prob=[0.5, 0.5], direction=['horizontal', 'vertical'])
    assert {both(make_results())['flip_direction'] for _ in range(30)} == {'horizontal', 'vertical'}


@pytest.mark.parametrize('channels', [1, 3, 200])
@pytest.mark.parametrize('direction, flipped', [('horizontal', lambda a: a[:, ::-1]), ('vertical', lambda a: a[::-1]),
                                                ('diagonal', lambda a: a[::-1, ::-1])])
def test_random_flip_keeps_the_shape_of_any_image(channels, direction, flipped):
    img = np.random.RandomState(0).randint(0, 256, (6, 7, channels), dtype=np.uint8)
    out = RandomFlip(prob=1.0, direction=direction)(dict(img=img))['img']
    assert out.shape == img.shape and out.flags.c_contiguous
    np.testing.assert_array_equal(out, flipped(img))


# ----------------------------------------------------------------------------- photometric
def mmseg_photometric(img, delta=32, lo=0.5, hi=1.5):
    """MMSeg 1.2.2's algorithm written plainly (float32 arithmetic, two HSV round trips)."""
    def convert(x, alpha=1, beta=0):
        return np.clip(x.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)
    if np.random.randint(2):
        img = convert(img, beta=np.random.uniform(-delta, delta))
    mode = np.random.randint(2)
    if mode == 1 and np.random.randint(2):
        img = convert(img, alpha=np.random.uniform(lo, hi))
    if np.random.randint(2):
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        hsv[:, :, 1] = convert(hsv[:, :, 1], alpha=np.random.uniform(lo, hi))
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    if np.random.randint(2):
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        hsv[:, :, 0] = (hsv[:, :, 0].astype(int) + np.random.randint(-18, 18)) % 180
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    if mode == 0 and np.random.randint(2):
        img = convert(img, alpha=np.random.uniform(lo, hi))
    return img


def test_photometric_distortion_matches_mmseg_exactly_and_keeps_dtype():
    img = np.random.RandomState(0).randint(0, 256, (24, 32, 3)).astype(np.uint8)
    transform = PhotoMetricDistortion()
    changed = 0
    for seed in range(40):
        np.random.seed(seed)
        out = transform(dict(img=img.copy()))['img']
        np.random.seed(seed)
        expected = mmseg_photometric(img.copy())
        assert out.dtype == np.uint8 and out.shape == img.shape
        np.testing.assert_array_equal(out, expected)
        changed += not np.array_equal(out, img)
    assert changed > 30
    with pytest.raises(TypeError, match='uint8'):
        transform(dict(img=img.astype(np.float32)))


# ----------------------------------------------------------------------------- loading
def test_load_image_colour_and_grey(tmp_path):
    grey = np.tile(np.arange(40, dtype=np.uint8), (30, 1))
    cv2.imwrite(str(tmp_path / 'g.png'), grey)
    out = LoadImageFromFile()(dict(img_path=str(tmp_path / 'g.png')))
    assert out['img'].shape == (30, 40, 3) and out['ori_shape'] == out['img_shape'] == (30, 40)
    assert (out['img'] == grey[:, :, None]).all()
    assert LoadImageFromFile(color_type='grayscale')(dict(img_path=str(tmp_path / 'g.png')))['img'].shape == (30, 40)
    assert LoadImageFromFile(to_float32=True)(dict(img_path=str(tmp_path / 'g.png')))['img'].dtype == np.float32
    colour = np.random.RandomState(0).randint(0, 256, (6, 7, 3)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / 'c.png'), colour)
    for backend in ('cv2', 'pillow'):  # both give BGR
        out = LoadImageFromFile(imdecode_backend=backend)(dict(img_path=str(tmp_path / 'c.png')))
        np.testing.assert_array_equal(out['img'], colour)


def test_corrupt_and_missing_images_name_the_file(tmp_path):
    bad = tmp_path / 'broken.jpg'
    bad.write_bytes(b'not a jpeg at all')
    with pytest.raises(ValueError, match='broken.jpg'):
        LoadImageFromFile()(dict(img_path=str(bad)))
    with pytest.raises(FileNotFoundError, match='missing.jpg'):
        LoadImageFromFile()(dict(img_path=str(tmp_path / 'missing.jpg')))
    with pytest.raises(ValueError, match='broken.png'):
        (tmp_path / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n garbage')
        LoadAnnotations()(dict(seg_map_path=str(tmp_path / 'broken.png'), seg_fields=[]))


def save_label(path, array, palette=False):
    img = Image.fromarray(array)
    if palette:
        img = img.convert('P')
        img.putpalette([v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, (i * 11) % 256)])
    img.save(path)
    return str(path)


def load_label(path, **results):
    return LoadAnnotations()(dict(seg_map_path=path, seg_fields=[], **results))['gt_seg_map']


def test_palette_png_is_read_as_indices(tmp_path):
    seg = np.random.RandomState(0).randint(0, 4, (20, 30)).astype(np.uint8)
    path = save_label(tmp_path / 'p.png', seg, palette=True)
    assert Image.open(path).mode == 'P'
    np.testing.assert_array_equal(load_label(path), seg)
    # OpenCV expands palettes to colours, which the colour-mask check then refuses
    with pytest.raises(ValueError, match='colour'):
        LoadAnnotations(imdecode_backend='cv2')(dict(seg_map_path=path, seg_fields=[]))


def test_reduce_zero_label_and_label_map(tmp_path):
    path = save_label(tmp_path / 'l.png', np.array([[0, 1, 2, 3, 255]], np.uint8))
    np.testing.assert_array_equal(load_label(path, reduce_zero_label=True), [[255, 0, 1, 2, 255]])
    np.testing.assert_array_equal(load_label(path, label_map={0: 255, 1: 0, 2: 255, 3: 1}), [[255, 0, 255, 1, 255]])
    with pytest.raises(ValueError, match='reduce_zero_label'):
        LoadAnnotations(reduce_zero_label=True)(dict(seg_map_path=path, seg_fields=[], reduce_zero_label=False))


def test_label_value_out_of_range_names_file_and_values(tmp_path):
    path = save_label(tmp_path / 'bad.png', np.array([[0, 1, 7, 9, 255]], np.uint8))
    with pytest.raises(ValueError, match=r'bad\.png.*\[7, 9\].*\[0, 5\)'):
        load_label(path, num_classes=5, ignore_index=255)
    assert load_label(path, num_classes=10).max() == 255  # in range for 10 classes


def test_colour_mask_is_refused_but_grey_saved_as_rgb_is_accepted(tmp_path):
    colour = np.zeros((10, 10, 3), np.uint8)
    colour[:5] = (128, 64, 128)
    with pytest.raises(ValueError, match=r'colour\.png.*colour image.*class indices'):
        load_label(save_label(tmp_path / 'colour.png', colour), num_classes=5)
    grey = np.repeat(np.random.RandomState(0).randint(0, 5, (10, 10, 1)).astype(np.uint8), 3, axis=2)
    np.testing.assert_array_equal(load_label(save_label(tmp_path / 'grey.png', grey), num_classes=5), grey[:, :, 0])


def test_binary_mask_stored_as_0_255_warns(tmp_path):
    path = save_label(tmp_path / 'bin.png', np.array([[0, 255], [255, 0]], np.uint8))
    with pytest.warns(UserWarning, match=r'bin\.png.*[Dd]ivide'):
        load_label(path, num_classes=2, ignore_index=255)
    with pytest.raises(ValueError, match='divide the masks by 255'):
        load_label(path, num_classes=2, ignore_index=0)


def test_label_map_size_must_match_image(tmp_path):
    path = save_label(tmp_path / 'l.png', np.zeros((10, 12), np.uint8))
    with pytest.raises(ValueError, match=r'l\.png is 10x12.*9x12'):
        load_label(path, ori_shape=(9, 12), img_path='img.jpg')


# ----------------------------------------------------------------------------- TTA, packing, compose
def test_test_time_aug_views(tmp_path):
    cv2.imwrite(str(tmp_path / 'i.png'), np.random.RandomState(0).randint(0, 256, (30, 40, 3)).astype(np.uint8))
    seg_path = save_label(tmp_path / 'l.png', np.random.RandomState(1).randint(0, 5, (30, 40)).astype(np.uint8))
    tta = TRANSFORMS.build(dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in (0.5, 1.0, 1.5)],
        [dict(type='RandomFlip', prob=0.), dict(type='RandomFlip', prob=1.)],
        [dict(type='LoadAnnotations')], [dict(type='PackSegInputs')]]))
    out = Compose([dict(type='LoadImageFromFile'), tta])(
        dict(img_path=str(tmp_path / 'i.png'), seg_map_path=seg_path, seg_fields=[]))
    assert len(out['inputs']) == len(out['data_samples']) == 6
    assert [tuple(x.shape[1:]) for x in out['inputs']] == [(15, 20)] * 2 + [(30, 40)] * 2 + [(45, 60)] * 2
    assert [d['flip'] for d in out['data_samples']] == [False, True] * 3
    for sample in out['data_samples']:  # labels stay at the original size, unflipped
        np.testing.assert_array_equal(sample['gt_sem_seg'].numpy(), np.array(Image.open(seg_path)))


def test_pack_seg_inputs_follows_the_contract():
    results = make_results()
    results.update(img_path='a.jpg', seg_map_path='a.png', scale_factor=(1.0, 1.0), flip=False,
                   flip_direction=None, reduce_zero_label=False, pad_shape=(30, 40), extra='dropped')
    out = PackSegInputs()(results)
    assert set(out) == {'inputs', 'data_samples'}
    assert out['inputs'].dtype == torch.uint8 and out['inputs'].shape == (3, 30, 40) and out['inputs'].is_contiguous()
    assert torch.equal(out['inputs'], torch.from_numpy(results['img']).permute(2, 0, 1))
    sample = out['data_samples']
    assert set(sample) == {'img_path', 'seg_map_path', 'ori_shape', 'img_shape', 'pad_shape', 'scale_factor',
                           'flip', 'flip_direction', 'reduce_zero_label', 'gt_sem_seg'}
    assert sample['gt_sem_seg'].dtype == torch.uint8 and sample['gt_sem_seg'].shape == (30, 40)  # as loaded
    assert torch.equal(sample['gt_sem_seg'], torch.from_numpy(results['gt_seg_map']))
    wide = PackSegInputs()(dict(img=results['img'], gt_seg_map=results['gt_seg_map'].astype(np.uint16) * 300))
    assert wide['data_samples']['gt_sem_seg'].dtype == torch.int64  # maps that are not 8-bit become int64
    assert int(wide['data_samples']['gt_sem_seg'].max()) == int(results['gt_seg_map'].max()) * 300
    no_label = PackSegInputs()(dict(img=np.zeros((4, 5), np.uint8)))
    assert no_label['inputs'].shape == (1, 4, 5) and 'gt_sem_seg' not in no_label['data_samples']


@pytest.mark.parametrize('img', [np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3)[2:15, 3:20],  # a view
                                 np.random.RandomState(0).rand(7, 9, 3).astype(np.float32),
                                 np.arange(8 * 8 * 4, dtype=np.uint8).reshape(8, 8, 4)[:, ::-1],
                                 np.random.RandomState(1).randint(0, 256, (4, 5, 129), dtype=np.uint8),  # multi-band
                                 np.arange(4 * 5 * 2, dtype=np.int64).reshape(4, 5, 2)])
def test_pack_seg_inputs_transposes_any_image_to_chw(img):
    inputs = PackSegInputs()(dict(img=img))['inputs']
    assert inputs.dtype == torch.from_numpy(img.copy()).dtype and inputs.is_contiguous()
    assert torch.equal(inputs, torch.from_numpy(img.copy()).permute(2, 0, 1))


def test_compose_stops_on_none_and_builds_registered_user_transforms():
    @TRANSFORMS.register_module(name='_TestAddOne', force=True)
    class AddOne:
        def __call__(self, results):
            results['n'] += 1
            return results

    assert Compose([dict(type='_TestAddOne'), dict(type='_TestAddOne')])(dict(n=0))['n'] == 2
    assert Compose([lambda r: None, dict(type='_TestAddOne')])(dict(n=0)) is None
    with pytest.raises(TypeError, match='callable'):
        Compose([42])
