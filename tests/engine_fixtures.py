"""A tiny generated dataset and config for the engine, hook and tool tests (real segkit parts, seconds to train)."""
import importlib.util
import os
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Iterator

import cv2
import numpy as np
import pytest
import torch

from segkit.engine.logging import close_runner_handlers

REPO_ROOT = Path(__file__).resolve().parents[1]
CLASSES = ('sky', 'road', 'car')
PALETTE = [[128, 128, 128], [128, 64, 128], [64, 0, 128]]


def make_tiny_dataset(root: Path, num_train: int = 6, num_val: int = 4, size: int = 32) -> None:
    """Grey images whose brightness encodes three regions (top, bottom-left, bottom-right), with noise."""
    rng = np.random.default_rng(0)
    for split, count in (('train', num_train), ('val', num_val)):
        (root / 'img_dir' / split).mkdir(parents=True, exist_ok=True)
        (root / 'ann_dir' / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            label = np.zeros((size, size), np.uint8)
            cut = size // 2 + int(rng.integers(-4, 5))
            label[cut:, :size // 2] = 1
            label[cut:, size // 2:] = 2
            image = label[..., None] * 90 + rng.integers(0, 40, (size, size, 3))
            cv2.imwrite(str(root / 'img_dir' / split / f'{split}_{i}.png'), image.astype(np.uint8))
            cv2.imwrite(str(root / 'ann_dir' / split / f'{split}_{i}.png'), label)


CONFIG_TEMPLATE = '''
_base_ = ['{runtime}']
data_root = '{data_root}'
work_dir = '{work_dir}'
metainfo = dict(classes={classes!r}, palette={palette!r})
train_pipeline = [
    dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
    dict(type='RandomFlip', prob=0.5), dict(type='PhotoMetricDistortion'), dict(type='PackSegInputs')]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'), dict(type='PackSegInputs')]
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[[dict(type='RandomFlip', prob=0.), dict(type='RandomFlip', prob=1.)],
                                         [dict(type='LoadAnnotations')], [dict(type='PackSegInputs')]])]
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(type='SegDataPreProcessor', mean=[100., 100., 100.], std=[60., 60., 60.],
                           size=(32, 32), pad_val=0, seg_pad_val=255),
    backbone=dict(type='MixVisionTransformer', in_channels=3, embed_dims=8, num_stages=4, num_layers=[1, 1, 1, 1],
                  num_heads=[1, 1, 1, 1], patch_sizes=[7, 3, 3, 3], sr_ratios=[8, 4, 2, 1],
                  out_indices=(0, 1, 2, 3), drop_path_rate=0.1),
    decode_head=dict(type='SegformerHead', in_channels=[8, 8, 8, 8], in_index=[0, 1, 2, 3], channels=8,
                     dropout_ratio=0.1, num_classes=3, norm_cfg=dict(type='SyncBN', requires_grad=True),
                     align_corners=False,
                     loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0,
                                      avg_non_ignore=True)),
    test_cfg=dict(mode='whole'))
train_dataloader = dict(
    batch_size=2, num_workers=0, sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo, img_suffix='.png',
                 data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo, img_suffix='.png',
                 data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=0.01, weight_decay=0.01))
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=100, by_epoch=False)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=6, val_interval=3)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=2, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
randomness = dict(seed=0)
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='gloo'))
'''


def load_tool(name: str) -> ModuleType:
    """Import ``tools/<name>.py`` (a script, not a package module) so tests can call its functions."""
    spec = importlib.util.spec_from_file_location(f'segkit_tool_{name}', REPO_ROOT / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_tiny_config(tmp_path: Path, name: str = 'tiny_segformer.py') -> Path:
    """Generate the dataset (once per folder) and a config training on it; returns the config's path."""
    data_root = tmp_path / 'data'
    if not data_root.exists():
        make_tiny_dataset(data_root)
    path = tmp_path / name
    path.write_text(CONFIG_TEMPLATE.format(
        runtime=REPO_ROOT / 'configs' / '_base_' / 'default_runtime.py', data_root=data_root,
        work_dir=tmp_path / 'work', classes=CLASSES, palette=PALETTE))
    return path


@contextmanager
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread, and a busy 2-core machine punishes a second one badly."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def restore_global_state():
    """Run on one thread; afterwards undo what a runner changes process-wide: deterministic mode, cuDNN flags
    and the 'segkit' logger."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    benchmark = torch.backends.cudnn.benchmark
    cublas = os.environ.get('CUBLAS_WORKSPACE_CONFIG')
    with one_thread():
        yield
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.benchmark = benchmark
    close_runner_handlers()
    if cublas is None:
        os.environ.pop('CUBLAS_WORKSPACE_CONFIG', None)
