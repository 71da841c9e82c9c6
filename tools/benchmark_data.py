"""Side-by-side samples/s of segkit's and MMSeg 1.2.2's training data loaders on the same images, in one process.

    PYTHONPATH=. /tmp/segkit-peers/bin/python tools/benchmark_data.py ../shared/data/camvid \
        [--workers 1] [--batch 2] [--batches 100] [--rounds 5] [--skip mmseg]

Both loaders run the ADE20K training pipeline of ``configs/_base_/datasets/ade20k.py`` (random rescale within
2048x512 at 0.5-2x, 512x512 crop with ``cat_max_ratio=0.75``, flip, photometric distortion, packing) on the
``train`` split of an MMSeg-layout dataset (``img_dir/train/*.jpg``, ``ann_dir/train/*.png``, ``train.txt``),
labels as stored (no ``reduce_zero_label``). Each is built as its users get it: segkit's ``build_dataloader``,
MMEngine's ``Runner.build_dataloader`` with ``pseudo_collate``. OpenCV is set to 0 threads before the workers
fork, as MMSeg's ``env_cfg`` does. Every round starts a fresh loader per library, in turn, and times
``--batches`` batches after the first (worker start-up excluded); medians of samples/s are printed as JSON.
The MMSeg side needs the peers venv (``../shared/peers/setup.sh``); ``--skip mmseg`` runs segkit alone.
"""
import argparse
import json
import os
import statistics
import sys
import time
from typing import Callable, Dict

import cv2
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
PEERS = os.path.join(os.path.dirname(ROOT), 'shared', 'peers')

PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=(512, 512), cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]


def loader_cfg(args: argparse.Namespace, dataset: dict) -> dict:
    split = dict(data_root=args.data_root, data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train'),
                 ann_file='train.txt', img_suffix='.jpg', seg_map_suffix='.png', pipeline=PIPELINE)
    return dict(batch_size=args.batch, num_workers=args.workers, persistent_workers=False,
                sampler=dict(type='InfiniteSampler', shuffle=True), dataset={**split, **dataset})


def segkit_loader(args: argparse.Namespace) -> Callable[[], object]:
    from segkit.datasets import build_dataloader
    cfg = loader_cfg(args, dict(type='CamVidDataset'))
    return lambda: build_dataloader(cfg, seed=0)


def mmseg_loader(args: argparse.Namespace) -> Callable[[], object]:
    sys.path.insert(0, PEERS)
    import mmcv_ext_shim  # noqa: F401  (mmseg imports mmcv.ops)
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    from segkit.datasets.camvid import CamVidDataset
    init_default_scope('mmseg')
    cfg = loader_cfg(args, dict(type='BaseSegDataset', metainfo=CamVidDataset.METAINFO))
    cfg['collate_fn'] = dict(type='pseudo_collate')
    return lambda: Runner.build_dataloader(cfg, seed=0)


def samples_per_s(make_loader: Callable[[], object], batches: int, batch_size: int) -> float:
    stream = iter(make_loader())
    next(stream)  # worker start-up and the first batch are not timed
    start = time.perf_counter()
    for _ in range(batches):
        next(stream)
    elapsed = time.perf_counter() - start
    del stream  # stops the workers before the other library's round
    return batches * batch_size / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('data_root', help='MMSeg-layout dataset with img_dir/train, ann_dir/train, train.txt')
    parser.add_argument('--workers', type=int, default=1)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--batches', type=int, default=100, help='timed batches per round')
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--skip', nargs='*', default=[], choices=['mmseg'])
    args = parser.parse_args()
    if not os.path.isfile(os.path.join(args.data_root, 'train.txt')):
        raise FileNotFoundError(f'{args.data_root}/train.txt not found: pass the root of an MMSeg-layout dataset')
    cv2.setNumThreads(0)
    torch.manual_seed(0)

    loaders: Dict[str, Callable[[], object]] = {}
    if 'mmseg' not in args.skip:
        loaders['mmseg'] = mmseg_loader(args)
    loaders['segkit'] = segkit_loader(args)
    rates = {name: [] for name in loaders}
    for _ in range(args.rounds):
        for name, make_loader in loaders.items():
            rates[name].append(samples_per_s(make_loader, args.batches, args.batch))
    median = {name: statistics.median(r) for name, r in rates.items()}
    out = dict(case='data', pipeline='ade20k-train', data_root=os.path.basename(os.path.normpath(args.data_root)),
               workers=args.workers, batch=args.batch, samples_per_round=args.batches * args.batch,
               median_samples_per_s={k: round(v, 2) for k, v in median.items()},
               max_samples_per_s={k: round(max(r), 2) for k, r in rates.items()})
    if 'mmseg' in median:
        out['ratio_to_mmseg'] = {k: round(v / median['mmseg'], 3) for k, v in median.items()}
    print(json.dumps(out))


if __name__ == '__main__':
    main()
