"""Samplers (rank split, resume), collate and build_dataloader (sampler wiring, per-worker/per-rank seeding)."""
import random

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

import segkit.dist
from segkit.datasets import DefaultSampler, InfiniteSampler, build_dataloader, collate


def as_rank(monkeypatch, rank, world_size):
    monkeypatch.setattr(segkit.dist, 'get_dist_info', lambda: (rank, world_size))


def take(sampler, n):
    it = iter(sampler)
    return [next(it) for _ in range(n)]


def test_default_sampler_splits_ranks_disjoint_and_covering(monkeypatch):
    data = range(10)
    shares = []
    for rank in range(3):
        as_rank(monkeypatch, rank, 3)
        shares.append(list(DefaultSampler(data, shuffle=True, seed=3, round_up=False)))
    assert [len(s) for s in shares] == [4, 3, 3]
    assert sorted(sum(shares, [])) == list(range(10))
    padded = []
    for rank in range(3):
        as_rank(monkeypatch, rank, 3)
        sampler = DefaultSampler(data, shuffle=True, seed=3)
        padded.append(list(sampler))
        assert len(sampler) == 4
    assert [len(s) for s in padded] == [4, 4, 4] and set(sum(padded, [])) == set(range(10))
    assert [s[:len(u)] for s, u in zip(padded, shares)] == shares  # padding only appends


def test_default_sampler_shuffle_depends_on_seed_and_epoch():
    sampler = DefaultSampler(range(20), shuffle=True, seed=0)
    first = list(sampler)
    assert first == list(DefaultSampler(range(20), shuffle=True, seed=0)) and sorted(first) == list(range(20))
    sampler.set_epoch(1)
    assert list(sampler) != first
    assert list(DefaultSampler(range(20), shuffle=False)) == list(range(20))


def test_infinite_sampler_ranks_partition_each_pass(monkeypatch):
    streams = []
    for rank in range(2):
        as_rank(monkeypatch, rank, 2)
        streams.append(take(InfiniteSampler(range(10), shuffle=True, seed=5), 10))
    assert set(streams[0][:5]).isdisjoint(streams[1][:5])
    assert sorted(streams[0][:5] + streams[1][:5]) == list(range(10))
    assert sorted(streams[0][5:] + streams[1][5:]) == list(range(10))  # second pass: a new permutation
    assert streams[0][5:] != streams[0][:5]


@pytest.mark.parametrize('world_size', [1, 2])
def test_resumed_infinite_sampler_continues_the_same_stream(monkeypatch, world_size):
    for rank in range(world_size):
        as_rank(monkeypatch, rank, world_size)
        uninterrupted = take(InfiniteSampler(range(7), seed=11), 40)
        resumed = InfiniteSampler(range(7), seed=999)
        resumed.load_state_dict({'seed': 11, 'consumed': 23})  # crosses several passes over 7 items
        assert take(resumed, 17) == uninterrupted[23:]
        assert resumed.state_dict() == {'seed': 11, 'consumed': 23}


def test_resumed_default_sampler_skips_within_the_epoch_once():
    sampler = DefaultSampler(range(10), shuffle=True, seed=1)
    full = list(sampler)
    sampler.load_state_dict({'seed': 1, 'consumed': 23})
    assert list(sampler) == full[3:]
    assert list(sampler) == full


def test_seed_none_draws_one_shared_seed():
    sampler = InfiniteSampler(range(5), seed=None)
    assert isinstance(sampler.seed, int) and sampler.state_dict()['seed'] == sampler.seed


def test_collate_keeps_lists_and_groups_tta_views():
    samples = [{'inputs': torch.zeros(3, 2, 2), 'data_samples': {'i': 0}},
               {'inputs': torch.ones(3, 4, 4), 'data_samples': {'i': 1}}]
    batch = collate(samples)
    assert [t.shape[-1] for t in batch['inputs']] == [2, 4] and batch['data_samples'] == [{'i': 0}, {'i': 1}]
    tta = [{'inputs': ['a0', 'a1'], 'data_samples': ['da0', 'da1']},
           {'inputs': ['b0', 'b1'], 'data_samples': ['db0', 'db1']}]
    assert collate(tta) == {'inputs': [['a0', 'b0'], ['a1', 'b1']], 'data_samples': [['da0', 'db0'], ['da1', 'db1']]}


class RandomDraws(Dataset):
    """Each item reports what the worker's numpy, random and torch generators give."""

    def __len__(self):
        return 4

    def __getitem__(self, idx):
        info = torch.utils.data.get_worker_info()
        return {'inputs': (np.random.randint(2 ** 31), random.random(), torch.randint(2 ** 31, ()).item()),
                'data_samples': info.id if info else None}


def draws(seed, num_workers=2):
    loader = build_dataloader(dict(dataset=RandomDraws(), sampler=dict(type='DefaultSampler', shuffle=False),
                                   batch_size=1, num_workers=num_workers), seed=seed)
    return [(batch['data_samples'][0], batch['inputs'][0]) for batch in loader]


def test_dataloader_seeds_each_worker_and_rank_reproducibly(monkeypatch):
    first = draws(seed=0)
    assert {worker for worker, _ in first} == {0, 1}
    values = [v for _, v in first]
    for lib in range(3):  # numpy, random, torch each differ between workers and between items
        assert len({v[lib] for v in values}) == 4
    assert draws(seed=0) == first
    assert [v for _, v in draws(seed=1)] != values
    as_rank(monkeypatch, 1, 2)
    other_rank = [v for _, v in draws(seed=0)]
    assert not {v[0] for v in other_rank} & {v[0] for v in values}


class Labelled(Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, idx):
        label = (torch.arange(6, dtype=torch.uint8) * (idx + 1)).reshape(2, 3)
        return {'inputs': torch.zeros(3, 2, 3, dtype=torch.uint8), 'data_samples': {'gt_sem_seg': label}}


def test_label_maps_cross_loader_workers_unchanged():
    loader = build_dataloader(dict(dataset=Labelled(), sampler=dict(type='DefaultSampler', shuffle=False),
                                   batch_size=2, num_workers=1), seed=0)
    batch = next(iter(loader))
    for i, sample in enumerate(batch['data_samples']):  # uint8 as packed: the data preprocessor widens them
        assert torch.equal(sample['gt_sem_seg'], Labelled()[i]['data_samples']['gt_sem_seg'])
        assert sample['gt_sem_seg'].dtype == torch.uint8


def test_build_dataloader_from_config_dicts(tmp_path):
    import cv2
    (tmp_path / 'img').mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / 'img' / f'{i}.png'), np.full((6, 8, 3), i, np.uint8))
    cfg = dict(batch_size=2, num_workers=0, persistent_workers=True, drop_last=False,
               sampler=dict(type='DefaultSampler', shuffle=False),
               dataset=dict(type='BaseSegDataset', data_root=str(tmp_path), data_prefix=dict(img_path='img'),
                            img_suffix='.png', pipeline=[dict(type='LoadImageFromFile'), dict(type='PackSegInputs')]))
    loader = build_dataloader(cfg, seed=7)
    assert isinstance(loader.sampler, DefaultSampler) and loader.sampler.seed == 7
    batches = list(loader)
    assert [len(b['inputs']) for b in batches] == [2, 1]
    assert batches[0]['inputs'][1].shape == (3, 6, 8) and batches[0]['data_samples'][1]['img_path'].endswith('1.png')
    with pytest.raises(KeyError, match='sampler'):
        build_dataloader(dict(dataset=cfg['dataset'], batch_size=1))


def augmented_stream(tmp_path, num_workers, consumed=0, n=8):
    """The first ``n`` samples (after ``consumed``) of a randomly augmenting loader, as image tensors."""
    import cv2
    root = tmp_path / 'aug'
    if not root.exists():
        (root / 'img').mkdir(parents=True)
        rng = np.random.default_rng(0)
        for i in range(3):
            cv2.imwrite(str(root / 'img' / f'{i}.png'), rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    pipeline = [dict(type='LoadImageFromFile'),
                dict(type='RandomResize', scale=(32, 24), ratio_range=(0.5, 2.0), keep_ratio=True),
                dict(type='RandomCrop', crop_size=(16, 16)), dict(type='RandomFlip', prob=0.5),
                dict(type='PhotoMetricDistortion'), dict(type='PackSegInputs')]
    single = dict(type='BaseSegDataset', data_root=str(root), data_prefix=dict(img_path='img'), img_suffix='.png',
                  pipeline=pipeline)
    dataset = dict(type='ConcatDataset', datasets=[single, dict(type='RepeatDataset', dataset=single, times=2)])
    loader = build_dataloader(dict(dataset=dataset, sampler=dict(type='InfiniteSampler', shuffle=True),
                                   batch_size=2, num_workers=num_workers), seed=4)
    loader.sampler.load_state_dict({'seed': 4, 'consumed': consumed})
    stream = iter(loader)
    return [img for _ in range(n // 2) for img in next(stream)['inputs']]


def test_augmentation_depends_on_the_stream_position_not_on_workers_or_resume(tmp_path):
    """Each sample's random augmentation is seeded by its position in the sampler's stream: 0 or 2 workers give
    the same samples, and a loader resumed at position 4 gives what the uninterrupted one gave there."""
    numpy_state, python_state = np.random.get_state(), random.getstate()
    in_process = augmented_stream(tmp_path, num_workers=0)
    # the main process's generators (dropout, drop-path) are left as they were
    assert np.array_equal(np.random.get_state()[1], numpy_state[1]) and random.getstate() == python_state
    for other in (augmented_stream(tmp_path, num_workers=2), augmented_stream(tmp_path, num_workers=0)):
        assert all(torch.equal(a, b) for a, b in zip(in_process, other, strict=True))
    resumed = augmented_stream(tmp_path, num_workers=2, consumed=4, n=4)
    assert all(torch.equal(a, b) for a, b in zip(in_process[4:], resumed, strict=True))


def test_sampler_keys_are_the_global_stream_positions(monkeypatch):
    as_rank(monkeypatch, 1, 2)
    infinite = InfiniteSampler(range(3), seed=9)
    infinite.load_state_dict({'seed': 9, 'consumed': 2})
    assert [i.key for i in take(infinite, 3)] == [(9, 5), (9, 7), (9, 9)]
    default = DefaultSampler(range(5), seed=9)  # total_size 6: epoch 1 starts at global position 6
    default.set_epoch(1)
    assert [i.key for i in default] == [(9, 7), (9, 9), (9, 11)]
