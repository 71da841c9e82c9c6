"""Datasets: MMSeg's folder layouts and fixtures, CamVid, class subsets, reduce_zero_label, test mode, wrappers,
serialisation, the embedded shapes demo and readable errors."""
import hashlib

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from segkit.datasets import (BaseSegDataset, CamVidDataset, CityscapesDataset, ConcatDataset, RepeatDataset,
                             ShapesDemoDataset)
from segkit.datasets.transforms import LoadAnnotations, LoadImageFromFile
from segkit.registry import DATASETS
from tests.conftest import shared_path

LOAD = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'), dict(type='PackSegInputs')]


class FourClassDataset(BaseSegDataset):
    METAINFO = dict(classes=('a', 'b', 'c', 'd'), palette=[[0, 0, 0], [1, 1, 1], [2, 2, 2], [3, 3, 3]])


def write_dataset(root, labels, img_suffix='.png'):
    """img_dir/x{i}{img_suffix} and ann_dir/x{i}.png from a list of label arrays."""
    (root / 'img_dir').mkdir(parents=True)
    (root / 'ann_dir').mkdir()
    for i, label in enumerate(labels):
        label = np.asarray(label, np.uint8)
        cv2.imwrite(str(root / 'img_dir' / f'x{i}{img_suffix}'), np.dstack([label] * 3))
        cv2.imwrite(str(root / 'ann_dir' / f'x{i}.png'), label)
    return dict(data_root=str(root), data_prefix=dict(img_path='img_dir', seg_map_path='ann_dir'),
                img_suffix=img_suffix, seg_map_suffix='.png')


# ----------------------------------------------------------------------------- MMSeg's fixtures
def test_pseudo_dataset_layout_with_and_without_split():
    root = str(shared_path('data', 'mmseg_testdata', 'pseudo_dataset'))
    common = dict(data_root=root, data_prefix=dict(img_path='imgs/', seg_map_path='gts/'), img_suffix='img.jpg',
                  seg_map_suffix='gt.png', metainfo=dict(classes=('bg', 'a', 'b', 'c')))
    dataset = DATASETS.build(dict(type='BaseSegDataset', pipeline=LOAD, **common))
    assert len(dataset) == 5
    assert dataset.get_data_info(0)['img_path'].endswith('imgs/00000_img.jpg')
    assert dataset.get_data_info(0)['seg_map_path'].endswith('gts/00000_gt.png')
    for i in range(5):  # palette PNGs: indices, as Pillow reads them, never colours
        gt = dataset[i]['data_samples']['gt_sem_seg']
        expected = np.array(Image.open(dataset.get_data_info(i)['seg_map_path']))
        assert Image.open(dataset.get_data_info(i)['seg_map_path']).mode == 'P'
        assert gt.shape == (128, 256) and torch.equal(gt, torch.from_numpy(expected).long())
        assert 0 < gt.max() <= 3
    split = BaseSegDataset(ann_file='splits/train.txt', **common)
    assert len(split) == 4  # the names do not rebuild real files with these suffixes, as in MMSeg's tests
    assert split.get_data_info(0)['img_path'].endswith('imgs/00000img.jpg')


def test_pseudo_cityscapes_reads_label_train_ids():
    root = shared_path('data', 'mmseg_testdata', 'pseudo_cityscapes_dataset')
    dataset = CityscapesDataset(data_root=str(root), data_prefix=dict(img_path='leftImg8bit', seg_map_path='gtFine'),
                                pipeline=LOAD)
    assert len(dataset) == 1 and dataset.num_classes == 19
    sample = dataset[0]
    assert sample['data_samples']['seg_map_path'].endswith('_gtFine_labelTrainIds.png')
    values = set(sample['data_samples']['gt_sem_seg'].unique().tolist())
    assert values <= set(range(19)) | {255} and 255 in values
    assert sample['inputs'].shape == (3, 128, 256)


def test_fixture_images_colour_grey_and_palette_seg():
    root = shared_path('data', 'mmseg_testdata')
    load_image, load_label = LoadImageFromFile(), LoadAnnotations()
    colour = load_image(dict(img_path=str(root / 'color.jpg')))['img']
    grey = load_image(dict(img_path=str(root / 'gray.jpg')))['img']
    assert colour.shape == grey.shape == (288, 512, 3)
    assert (grey[:, :, 0] == grey[:, :, 1]).all() and (grey[:, :, 1] == grey[:, :, 2]).all()
    gt = load_label(dict(seg_map_path=str(root / 'seg.png'), seg_fields=[]))['gt_seg_map']
    assert Image.open(root / 'seg.png').mode == 'P'
    assert gt.shape == (288, 512) and set(np.unique(gt)) == {0, 1}


# ----------------------------------------------------------------------------- CamVid
def test_camvid_loads_with_splits_and_readme_palette():
    root = shared_path('data', 'camvid')
    dataset = CamVidDataset(data_root=str(root), data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
                            ann_file='val.txt', pipeline=LOAD)
    assert len(dataset) == 101
    assert dataset.metainfo['classes'][2] == 'Pole' and dataset.metainfo['palette'][4] == [60, 40, 222]
    sample = dataset[0]
    assert sample['inputs'].shape == (3, 360, 480)
    assert set(sample['data_samples']['gt_sem_seg'].unique().tolist()) <= set(range(11)) | {255}
    train = CamVidDataset(data_root=str(root), data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train'),
                          ann_file='train.txt')
    assert len(train) == 367


# ----------------------------------------------------------------------------- metainfo, labels
def test_class_subset_builds_label_map_and_remaps_labels(tmp_path):
    kwargs = write_dataset(tmp_path, [[[0, 1, 2, 3, 255]]])
    dataset = FourClassDataset(metainfo=dict(classes=('d', 'b')), pipeline=LOAD, **kwargs)
    assert dataset.label_map == {0: 255, 1: 1, 2: 255, 3: 0}
    assert dataset.metainfo['classes'] == ('d', 'b') and dataset.metainfo['palette'] == [[3, 3, 3], [1, 1, 1]]
    assert dataset[0]['data_samples']['gt_sem_seg'].tolist() == [[255, 1, 255, 0, 255]]
    with pytest.raises(ValueError, match='not among the classes'):
        FourClassDataset(metainfo=dict(classes=('a', 'z')), **kwargs)
    assert FourClassDataset(**kwargs).label_map is None


def test_reduce_zero_label_shifts_classes(tmp_path):
    kwargs = write_dataset(tmp_path, [[[0, 1, 2, 4, 255]]])
    dataset = FourClassDataset(reduce_zero_label=True, pipeline=LOAD, **kwargs)
    assert dataset.metainfo['reduce_zero_label'] is True
    assert dataset[0]['data_samples']['gt_sem_seg'].tolist() == [[255, 0, 1, 3, 255]]
    assert dataset[0]['data_samples']['reduce_zero_label'] is True


def test_label_errors_surface_through_the_dataset(tmp_path):
    kwargs = write_dataset(tmp_path, [[[0, 1]], [[0, 6]]])
    dataset = FourClassDataset(pipeline=LOAD, **kwargs)
    dataset[0]
    with pytest.raises(ValueError, match=r'x1\.png.*\[6\]') as info:
        dataset[1]
    assert any('x1.png' in note for note in info.value.__notes__)
    (tmp_path / 'img_dir' / 'x0.png').write_bytes(b'\x89PNG\r\n\x1a\n cut short')
    with pytest.raises(ValueError, match=r'could not decode image .*img_dir/x0\.png'):
        dataset[0]


def test_random_palette_when_none_given(tmp_path):
    kwargs = write_dataset(tmp_path, [[[0]]])
    palette = BaseSegDataset(metainfo=dict(classes=('x', 'y', 'z')), **kwargs).metainfo['palette']
    again = BaseSegDataset(metainfo=dict(classes=('x', 'y', 'z')), **kwargs).metainfo['palette']
    assert len(palette) == 3 and palette == again


# ----------------------------------------------------------------------------- listing, modes, wrappers
def test_folder_scan_is_recursive_sorted_and_filtered(tmp_path):
    kwargs = write_dataset(tmp_path, [[[0]], [[1]]])
    (tmp_path / 'img_dir' / 'sub').mkdir()
    cv2.imwrite(str(tmp_path / 'img_dir' / 'sub' / 'y.png'), np.zeros((1, 1, 3), np.uint8))
    (tmp_path / 'img_dir' / 'notes.txt').write_text('not an image')
    dataset = FourClassDataset(**kwargs)
    assert [dataset.get_data_info(i)['img_path'][len(str(tmp_path)) + 1:] for i in range(3)] == \
        ['img_dir/sub/y.png', 'img_dir/x0.png', 'img_dir/x1.png']
    assert dataset.get_data_info(0)['seg_map_path'].endswith('ann_dir/sub/y.png')
    with pytest.raises(FileNotFoundError, match='nowhere'):
        FourClassDataset(data_root=str(tmp_path), data_prefix=dict(img_path='nowhere'))
    with pytest.raises(FileNotFoundError, match='missing.txt'):
        FourClassDataset(ann_file='missing.txt', **kwargs)


def test_test_mode_without_annotations(tmp_path):
    kwargs = write_dataset(tmp_path, [[[0, 1]]])
    dataset = FourClassDataset(data_root=kwargs['data_root'], data_prefix=dict(img_path='img_dir'),
                               img_suffix='.png', test_mode=True,
                               pipeline=[dict(type='LoadImageFromFile'), dict(type='PackSegInputs')])
    sample = dataset[0]
    assert 'seg_map_path' not in dataset.get_data_info(0) and 'gt_sem_seg' not in sample['data_samples']
    with pytest.raises(ValueError, match='classes'):
        BaseSegDataset(test_mode=True, **kwargs)


def test_serialised_lazy_and_subset_datasets_agree(tmp_path):
    kwargs = write_dataset(tmp_path, [[[i]] for i in range(4)])
    plain = FourClassDataset(serialize_data=False, **kwargs)
    packed = FourClassDataset(serialize_data=True, **kwargs)
    assert [plain.get_data_info(i) for i in range(4)] == [packed.get_data_info(i) for i in range(4)]
    assert packed.get_data_info(-1)['sample_idx'] == 3
    with pytest.raises(IndexError):
        packed.get_data_info(4)
    assert len(FourClassDataset(indices=2, **kwargs)) == 2
    assert FourClassDataset(indices=[3, 1], **kwargs).get_data_info(0)['img_path'].endswith('x3.png')
    lazy = FourClassDataset(data_root=str(tmp_path / 'later'), data_prefix=dict(img_path=''), lazy_init=True)
    with pytest.raises(FileNotFoundError):
        len(lazy)


def test_concat_and_repeat(tmp_path):
    first = FourClassDataset(**write_dataset(tmp_path / 'a', [[[0]], [[1]]]))
    second = FourClassDataset(**write_dataset(tmp_path / 'b', [[[2]]]))
    concat = DATASETS.build(dict(type='ConcatDataset', datasets=[first, second]))
    assert len(concat) == 3 and concat.get_data_info(2)['img_path'] == second.get_data_info(0)['img_path']
    assert concat.metainfo['classes'] == ('a', 'b', 'c', 'd')
    repeat = RepeatDataset(dataset=second, times=3)
    assert len(repeat) == 3 and repeat.get_data_info(2)['img_path'] == second.get_data_info(0)['img_path']
    other = FourClassDataset(metainfo=dict(classes=('a', 'b')), **write_dataset(tmp_path / 'c', [[[0]]]))
    with pytest.raises(ValueError, match='metainfo'):
        ConcatDataset([first, other])


# ----------------------------------------------------------------------------- shapes demo
def test_shapes_demo_is_generated_deterministically(tmp_path):
    root = tmp_path / 'data' / 'shapes_demo'
    train = ShapesDemoDataset(data_root=str(root), data_prefix=dict(img_path='img_dir/train',
                                                                    seg_map_path='ann_dir/train'), pipeline=LOAD)
    val = ShapesDemoDataset(data_root=str(root), data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'))
    assert len(train) == 200 and len(val) == 50 and train.num_classes == 5
    labels = np.stack([train[i]['data_samples']['gt_sem_seg'].numpy() for i in range(20)])
    assert labels.shape == (20, 128, 128)
    shares = np.bincount(labels.ravel(), minlength=5) / labels.size
    assert 0.6 < shares[0] < 0.95 and (shares[1:] > 0.005).all()  # every shape class occurs
    from segkit.datasets.shapes_demo import make_shapes_demo
    make_shapes_demo(str(tmp_path / 'again'))
    for rel in ('img_dir/train/0007.png', 'ann_dir/val/0042.png'):
        assert hashlib.sha256((root / rel).read_bytes()).digest() == \
            hashlib.sha256((tmp_path / 'again' / rel).read_bytes()).digest()
    assert not list(tmp_path.glob('**/*.tmp-*'))
