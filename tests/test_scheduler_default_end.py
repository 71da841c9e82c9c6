"""The ``end`` a scheduler gets when its config has none, as MMEngine 0.10.7's runner gives it.

MMEngine fills a missing ``end`` with the train loop's ``max_epochs`` (epoch-based configs) or ``max_iters``
(iteration-based ones) before ``convert_to_iter_based`` turns epochs into iterations; its
``IterBasedTrainLoop`` reports ``max_epochs == 1``. The traces below were measured with MMEngine 0.10.7's
``Runner`` (IterBasedTrainLoop, max_iters=20, SGD lr=0.1, 10 samples in batches of 3 with an
InfiniteSampler, so one epoch is 4 iterations), recording the lr before each iteration.
"""
import logging

import pytest
import torch.nn as nn

from segkit.engine.optim import build_optim_wrapper, build_param_schedulers

MAX_ITERS, EPOCH_LENGTH = 20, 4

MMENGINE_TRACES = {
    'PolyLR': [0.1, 0.066667, 0.033333] + [0.0] * 17,
    'LinearLR': [0.05, 0.066667, 0.083333] + [0.1] * 17,
}


def lr_trace(cfg, num_iters=MAX_ITERS):
    wrapper = build_optim_wrapper(nn.Linear(2, 1), dict(optimizer=dict(type='SGD', lr=0.1)))
    schedulers = build_param_schedulers(wrapper, cfg, MAX_ITERS, epoch_length=EPOCH_LENGTH)
    trace = []
    for _ in range(num_iters):
        trace.append(wrapper.get_lr()['lr'][0])
        for scheduler in schedulers:
            scheduler.step()
    return schedulers, trace


@pytest.mark.parametrize('cfg', [dict(type='PolyLR', eta_min=0.0, power=1.0),
                                 dict(type='LinearLR', start_factor=0.5)], ids=lambda c: c['type'])
def test_epoch_based_scheduler_without_end_lasts_one_epoch(cfg, caplog):
    with caplog.at_level(logging.WARNING, logger='segkit'):
        (scheduler,), trace = lr_trace(dict(cfg, by_epoch=True, convert_to_iter_based=True))
    assert (scheduler.begin, scheduler.end, scheduler.by_epoch) == (0, EPOCH_LENGTH, False)
    assert trace == pytest.approx(MMENGINE_TRACES[cfg['type']], abs=1e-6)
    assert 'has no end' in caplog.text and 'at iteration 4, not at max_iters=20' in caplog.text


def test_ends_given_or_iteration_based_are_unchanged(caplog):
    with caplog.at_level(logging.WARNING, logger='segkit'):
        (by_iter,), trace = lr_trace(dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False))
        (given,), _ = lr_trace(dict(type='PolyLR', by_epoch=True, convert_to_iter_based=True, begin=1, end=3))
    assert (by_iter.begin, by_iter.end) == (0, MAX_ITERS)  # measured: MMEngine's end=20, lr 0.1 -> 0.0 at 19
    assert trace[1] == pytest.approx(0.1 * 18 / 19) and trace[-1] == 0.0
    assert (given.begin, given.end) == (4, 12)
    assert 'has no end' not in caplog.text


def test_epoch_based_begin_past_the_default_end_is_refused():
    """MMEngine raises too: the default end (1 epoch) is not after begin (2 epochs)."""
    with pytest.raises(ValueError, match=r'param_scheduler\[0\].*end must be larger than begin'):
        lr_trace(dict(type='PolyLR', by_epoch=True, convert_to_iter_based=True, begin=2))
