"""Learning-rate schedulers: MMEngine's begin/end windows and formulas, resume, and the schedule configs."""
import io
import logging
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from conftest import load_reference
from segkit import Config
from segkit.engine.optim import build_optim_wrapper, build_param_schedulers

REPO_ROOT = Path(__file__).resolve().parents[1]
BASE_LR = 0.1


def make_wrapper(lr: float = BASE_LR, optimizer: str = 'SGD'):
    return build_optim_wrapper(nn.Linear(2, 1), dict(optimizer=dict(type=optimizer, lr=lr)))


def lr_trace(cfgs, num_iters: int, max_iters: int = None, wrapper=None):
    """The lr used by the update of each iteration 0..num_iters-1, stepping as the runner does."""
    wrapper = wrapper or make_wrapper()
    schedulers = build_param_schedulers(wrapper, cfgs, max_iters or num_iters)
    trace = []
    for _ in range(num_iters):
        trace.append(wrapper.get_lr()['lr'][0])
        for scheduler in schedulers:
            scheduler.step()
    return trace


def test_segformer_schedule_matches_mmengine():
    """LinearLR warm-up then PolyLR: the lr of every recorded iteration equals MMEngine's bit for bit."""
    reference = load_reference('schedule.json')['lr_at_iter']
    wrapper = make_wrapper(6e-5, 'AdamW')
    trace = lr_trace([dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
                      dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False)],
                     160000, wrapper=wrapper)
    assert {i: trace[int(i)] for i in reference} == {i: lr for i, lr in reference.items()}


def window_fraction(i, begin, length):
    """Position of iteration i inside a window, clamped: 0 at begin, 1 at begin + length."""
    return min(max(i - begin, 0), length) / length


# Each case: scheduler config (window 3..13 of 20 iterations) and the closed-form lr at iteration i.
CASES = {
    'LinearLR': (dict(start_factor=0.25, end_factor=0.75),
                 lambda i: BASE_LR * (1 if i < 3 else 0.25 + 0.5 * window_fraction(i, 3, 9))),
    'PolyLR': (dict(eta_min=0.01, power=0.9),
               lambda i: BASE_LR if i < 3 else (BASE_LR - 0.01) * (1 - window_fraction(i, 3, 9)) ** 0.9 + 0.01),
    # T_max defaults to the window length, so the last value (iteration 12) is one step short of eta_min.
    'CosineAnnealingLR': (dict(eta_min=0.02),
                          lambda i: 0.02 + (BASE_LR - 0.02) * (1 + math.cos(math.pi * min(max(i - 3, 0), 9) / 10)) / 2),
    'StepLR': (dict(step_size=4, gamma=0.5), lambda i: BASE_LR * 0.5 ** ((min(i, 12) - 3) // 4 if i >= 3 else 0)),
    'MultiStepLR': (dict(milestones=[2, 5, 5], gamma=0.1),
                    lambda i: BASE_LR * 0.1 ** sum(m <= i - 3 for m in [2, 5, 5])),
    'ConstantLR': (dict(factor=0.5), lambda i: BASE_LR * (0.5 if 3 <= i < 12 else 1)),
    'ExponentialLR': (dict(gamma=0.9), lambda i: BASE_LR * 0.9 ** (min(max(i, 3), 12) - 3)),
}


@pytest.mark.parametrize('name', sorted(CASES))
def test_scheduler_matches_closed_form_inside_and_outside_its_window(name):
    kwargs, expected = CASES[name]
    trace = lr_trace(dict(type=name, begin=3, end=13, by_epoch=False, **kwargs), 20)
    assert trace == pytest.approx([expected(i) for i in range(20)], rel=1e-12, abs=1e-15)


def test_scheduler_without_end_runs_to_max_iters():
    trace = lr_trace(dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False), 11, max_iters=11)
    assert trace == pytest.approx([BASE_LR * (1 - i / 10) for i in range(11)])


def test_resume_continues_the_schedule_exactly():
    cfgs = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=10),
            dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=10, end=40, by_epoch=False)]
    uninterrupted = lr_trace(cfgs, 40)

    wrapper = make_wrapper()
    schedulers = build_param_schedulers(wrapper, cfgs, 40)
    for _ in range(17):
        for scheduler in schedulers:
            scheduler.step()
    buffer = io.BytesIO()  # through a weights_only checkpoint, as the runner saves it
    torch.save({'optimizer': wrapper.state_dict(), 'param_schedulers': [s.state_dict() for s in schedulers]}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)

    wrapper = make_wrapper()
    schedulers = build_param_schedulers(wrapper, cfgs, 40)  # building applies iteration 0's lr...
    wrapper.load_state_dict(checkpoint['optimizer'])  # ...which the checkpoint's optimizer state replaces
    for scheduler, state in zip(schedulers, checkpoint['param_schedulers']):
        scheduler.load_state_dict(state)
    resumed = []
    for _ in range(17, 40):
        resumed.append(wrapper.get_lr()['lr'][0])
        for scheduler in schedulers:
            scheduler.step()
    assert resumed == uninterrupted[17:]


def test_schedulers_move_every_group_and_the_base_lr():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    wrapper = build_optim_wrapper(model, dict(optimizer=dict(type='SGD', lr=0.1),
                                              paramwise_cfg=dict(custom_keys={'1.': dict(lr_mult=10.0)})))
    schedulers = build_param_schedulers(wrapper, dict(type='ExponentialLR', gamma=0.5, by_epoch=False), 5)
    for _ in range(2):
        for scheduler in schedulers:
            scheduler.step()
    assert wrapper.get_lr() == {'lr': pytest.approx([0.025, 0.025, 0.25, 0.25]), 'base_lr': pytest.approx([0.025])}


def test_epoch_based_configs_need_conversion():
    with pytest.raises(ValueError, match=r'param_scheduler\[0\].*by_epoch=False'):
        build_param_schedulers(make_wrapper(), dict(type='PolyLR'), 10)
    cfg = dict(type='MultiStepLR', milestones=[1, 2], gamma=0.1, begin=0, end=4, convert_to_iter_based=True)
    with pytest.raises(ValueError, match='epoch length'):
        build_param_schedulers(make_wrapper(), cfg, 12)
    wrapper = make_wrapper()
    (scheduler,) = build_param_schedulers(wrapper, cfg, 12, epoch_length=3)
    assert (scheduler.begin, scheduler.end, scheduler.by_epoch) == (0, 12, False)
    trace = []
    for _ in range(8):
        trace.append(wrapper.get_lr()['lr'][0])
        scheduler.step()
    assert trace == pytest.approx([0.1] * 3 + [0.01] * 3 + [0.001] * 2)


def test_bad_scheduler_configs_are_named():
    with pytest.raises(KeyError, match='PolyLRX'):
        build_param_schedulers(make_wrapper(), [dict(type='PolyLRX', by_epoch=False)], 10)
    with pytest.raises(TypeError, match=r'param_scheduler\[1\].*StepLR'):
        build_param_schedulers(make_wrapper(), [dict(type='PolyLR', by_epoch=False),
                                                dict(type='StepLR', by_epoch=False, stepsize=2)], 10)
    with pytest.raises(ValueError, match='end must be larger than begin'):
        build_param_schedulers(make_wrapper(), dict(type='PolyLR', by_epoch=False, begin=5, end=5), 10)
    with pytest.raises(ValueError, match='start_factor'):
        build_param_schedulers(make_wrapper(), dict(type='LinearLR', start_factor=0, by_epoch=False), 10)


def test_verbose_logs_each_value(caplog):
    with caplog.at_level(logging.INFO, logger='segkit'):
        lr_trace(dict(type='ExponentialLR', gamma=0.5, by_epoch=False, verbose=True), 3)
    assert '2.5000e-02' in caplog.text


@pytest.mark.parametrize('iters', [20, 40, 80, 160])
def test_schedule_configs(iters):
    cfg = Config.fromfile(str(REPO_ROOT / f'configs/_base_/schedules/schedule_{iters}k.py'))
    max_iters = iters * 1000
    assert cfg.train_cfg == dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters // 10)
    assert cfg.default_hooks.checkpoint.interval == max_iters // 10
    wrapper = build_optim_wrapper(nn.Linear(2, 1), cfg.optim_wrapper)
    (scheduler,) = build_param_schedulers(wrapper, cfg.param_scheduler, max_iters)
    assert wrapper.get_lr()['lr'] == [0.01] and wrapper.get_momentum()['momentum'] == [0.9]
    assert wrapper.optimizer.defaults['weight_decay'] == 0.0005
    if iters == 20:  # the poly decay ends at eta_min on the last iteration
        for _ in range(max_iters - 1):
            scheduler.step()
        assert wrapper.get_lr()['lr'][0] == pytest.approx(1e-4, rel=1e-9)
