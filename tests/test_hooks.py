"""Hooks: priority ordering, config-built custom hooks, event order, and each hook's behaviour."""
import json
import logging
import math
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn

from engine_fixtures import PALETTE, restore_global_state, write_tiny_config  # noqa: F401
from segkit import Config
from segkit.engine import (CheckpointHook, DistSamplerSeedHook, EMAHook, Hook, IterTimerHook, LocalVisBackend,
                           ParamSchedulerHook, Runner, SegLocalVisualizer, SegVisualizationHook,
                           TensorboardVisBackend)
from segkit.engine.hooks import get_priority, iter_timer_hook
from segkit.engine.hooks.checkpoint_hook import infer_rule
from segkit.engine.logging import MessageHub
from segkit.registry import HOOKS
from segkit.visualization import draw_overlay


@HOOKS.register_module(force=True)
class TaggedHook(Hook):
    """Appends its tag to a shared list at ``before_run``."""

    def __init__(self, tag, calls):
        self.tag = tag
        self.calls = calls

    def before_run(self, runner):
        self.calls.append(self.tag)


@HOOKS.register_module(force=True)
class EventRecorderHook(Hook):
    priority = 'LOWEST'

    def __init__(self):
        self.events = []

    def __getattribute__(self, name):
        attr = object.__getattribute__(self, name)
        if name.startswith(('before_', 'after_')):
            def record(runner, **kwargs):
                self.events.append((name, runner.iter, sorted(kwargs.get('metrics') or {})))
                return attr(runner, **kwargs)
            return record
        return attr


def bare_runner(tmp_path, **kwargs) -> Runner:
    return Runner(model=nn.Conv2d(3, 2, 1), work_dir=str(tmp_path), **kwargs)


# -- registration and ordering --------------------------------------------------------------------------------

def test_default_hooks_are_ordered_by_priority_then_registration(tmp_path):
    runner = bare_runner(tmp_path)
    assert [type(h).__name__ for h in runner.hooks] == [
        'IterTimerHook', 'DistSamplerSeedHook', 'LoggerHook', 'ParamSchedulerHook', 'CheckpointHook']


def test_custom_hooks_from_config_take_their_priority(tmp_path):
    calls = []
    runner = bare_runner(tmp_path, default_hooks=dict(logger=None, sampler_seed=None), custom_hooks=[
        dict(type='TaggedHook', tag='lowest', calls=calls, priority='LOWEST'),
        dict(type='TaggedHook', tag='normal-1', calls=calls),
        dict(type='TaggedHook', tag='first', calls=calls, priority=0),
        dict(type='TaggedHook', tag='normal-2', calls=calls, priority='NORMAL'),
        dict(type='TaggedHook', tag='low+1', calls=calls, priority=71),
    ])
    names = [getattr(h, 'tag', type(h).__name__) for h in runner.hooks]
    assert names == ['first', 'IterTimerHook', 'normal-1', 'normal-2', 'ParamSchedulerHook', 'low+1',
                     'CheckpointHook', 'lowest']
    runner.call_hook('before_run')
    assert calls == ['first', 'normal-1', 'normal-2', 'low+1', 'lowest']


def test_register_hook_accepts_instances_and_overrides_priority(tmp_path):
    runner = bare_runner(tmp_path, default_hooks=dict(timer=None, sampler_seed=None, param_scheduler=None))
    hook = TaggedHook('x', [])
    runner.register_hook(hook, priority='HIGHEST')
    assert runner.hooks[0] is hook and get_priority(hook.priority) == 0
    with pytest.raises(TypeError, match='Hook or a config dict'):
        runner.register_hook(object())
    with pytest.raises(ValueError, match='unknown hook event'):
        runner.call_hook('after_everything')


@pytest.mark.parametrize('bad', ['MIDDLE', 101, -1, True])
def test_bad_priorities_are_rejected(bad):
    with pytest.raises((ValueError, TypeError)):
        get_priority(bad)


def test_events_follow_the_mmengine_order_during_training(tmp_path):
    cfg = Config.fromfile(str(write_tiny_config(tmp_path)))
    cfg.train_cfg.update(max_iters=2, val_interval=2)
    cfg.default_hooks.checkpoint.interval = 2
    cfg.val_dataloader.dataset.indices = 1
    cfg.custom_hooks = [dict(type='EventRecorderHook')]
    runner = Runner.from_cfg(cfg)
    runner.train()
    recorder = runner.hooks[-1]
    events = [(name, it) for name, it, _ in recorder.events]
    assert events == [
        ('before_run', 0), ('before_train', 0), ('before_train_epoch', 0),
        ('before_train_iter', 0), ('after_train_iter', 0),
        ('before_train_iter', 1), ('before_save_checkpoint', 1), ('after_train_iter', 1),
        ('before_val', 2), ('before_val_epoch', 2), ('before_val_iter', 2), ('after_val_iter', 2),
        ('after_val_epoch', 2), ('after_val', 2),
        ('after_train_epoch', 2), ('after_train', 2), ('after_run', 2)]
    assert dict((name, metrics) for name, _, metrics in recorder.events)['after_val_epoch'] == [
        'aAcc', 'mAcc', 'mIoU']


# -- CheckpointHook ---------------------------------------------------------------------------------------------

class FakeRunner:
    """What CheckpointHook needs from a runner; 'checkpoints' are small files recording their meta."""

    def __init__(self, work_dir: Path, max_iters: int = 10, hub: MessageHub = None):
        self.work_dir = str(work_dir)
        self.iter = 0
        self.max_iters = max_iters
        self.message_hub = hub or MessageHub()
        self.logger = logging.getLogger('segkit')
        self.train_loop = SimpleNamespace()
        self.saved = []

    def save_checkpoint(self, out_dir, filename, save_optimizer=True, save_param_scheduler=True, meta=None):
        torch.save(dict(meta=meta, optimizer=save_optimizer), Path(out_dir) / filename)
        self.saved.append(filename)

    def run_iterations(self, hook, start, stop):
        for self.iter in range(start, stop):
            hook.after_train_iter(self, batch_idx=self.iter)
        self.iter = stop


def test_checkpoint_interval_max_keep_and_pointer(tmp_path):
    runner = FakeRunner(tmp_path, max_iters=10)
    hook = CheckpointHook(interval=2, max_keep_ckpts=2)
    hook.before_train(runner)
    runner.run_iterations(hook, 0, 10)
    assert runner.saved == ['iter_2.pth', 'iter_4.pth', 'iter_6.pth', 'iter_8.pth', 'iter_10.pth']
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['iter_10.pth', 'iter_8.pth']
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_10.pth')
    assert torch.load(tmp_path / 'iter_8.pth', weights_only=True)['meta'] == {'iter': 8}


def test_checkpoint_pruning_continues_after_resume(tmp_path):
    runner = FakeRunner(tmp_path, max_iters=8)
    first = CheckpointHook(interval=2, max_keep_ckpts=2)
    first.before_train(runner)
    runner.run_iterations(first, 0, 4)
    resumed = FakeRunner(tmp_path, max_iters=8, hub=MessageHub())
    resumed.message_hub.load_state_dict(runner.message_hub.state_dict())  # what a checkpoint carries
    second = CheckpointHook(interval=2, max_keep_ckpts=2)
    second.before_train(resumed)
    resumed.run_iterations(second, 4, 8)
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['iter_6.pth', 'iter_8.pth']


def test_a_save_interrupted_midway_keeps_the_previous_checkpoints(tmp_path):
    runner = FakeRunner(tmp_path, max_iters=10)
    hook = CheckpointHook(interval=2, max_keep_ckpts=1, save_best='mIoU')
    hook.before_train(runner)
    runner.run_iterations(hook, 0, 2)
    hook.after_val_epoch(runner, metrics=dict(mIoU=10.0))

    def killed(*args, **kwargs):  # the process dies while writing the next checkpoint
        raise KeyboardInterrupt
    runner.save_checkpoint = killed
    with pytest.raises(KeyboardInterrupt):
        runner.run_iterations(hook, 2, 4)
    with pytest.raises(KeyboardInterrupt):
        hook.after_val_epoch(runner, metrics=dict(mIoU=20.0))
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['best_mIoU_iter_2.pth', 'iter_2.pth']
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_2.pth')
    # A SIGKILL leaves save_checkpoint's temporary file behind; the next run removes it.
    (tmp_path / '.tmp_k1ll3d.pth').write_bytes(b'partial')
    CheckpointHook(interval=2).before_train(FakeRunner(tmp_path))
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['best_mIoU_iter_2.pth', 'iter_2.pth']


def test_save_last_adds_the_final_iteration(tmp_path):
    runner = FakeRunner(tmp_path, max_iters=5)
    hook = CheckpointHook(interval=2)
    hook.before_train(runner)
    runner.run_iterations(hook, 0, 5)
    assert runner.saved == ['iter_2.pth', 'iter_4.pth', 'iter_5.pth']
    runner, hook = FakeRunner(tmp_path / 'b', max_iters=5), CheckpointHook(interval=2, save_last=False)
    (tmp_path / 'b').mkdir()
    hook.before_train(runner)
    runner.run_iterations(hook, 0, 5)
    assert runner.saved == ['iter_2.pth', 'iter_4.pth']


def test_save_best_keeps_only_the_best_and_records_its_score(tmp_path):
    runner = FakeRunner(tmp_path, max_iters=6)
    hook = CheckpointHook(interval=2, save_best='mIoU')
    hook.before_train(runner)
    for stop, miou in ((2, 10.0), (4, 30.0), (6, 20.0)):
        runner.run_iterations(hook, stop - 2, stop)
        hook.after_val_epoch(runner, metrics=dict(aAcc=90.0, mIoU=miou))
    assert sorted(p.name for p in tmp_path.glob('best_*.pth')) == ['best_mIoU_iter_4.pth']
    assert not torch.load(tmp_path / 'best_mIoU_iter_4.pth', weights_only=True)['optimizer']
    assert runner.message_hub.get_info('best_score') == 30.0
    assert runner.message_hub.get_info('best_ckpt') == str(tmp_path / 'best_mIoU_iter_4.pth')
    # An improvement re-saves the periodic checkpoint, so that a resumed run knows the best score.
    assert runner.saved == ['iter_2.pth', 'best_mIoU_iter_2.pth', 'iter_2.pth', 'iter_4.pth',
                            'best_mIoU_iter_4.pth', 'iter_4.pth', 'iter_6.pth']
    with pytest.raises(KeyError, match='mDice'):
        CheckpointHook(save_best='mDice').after_val_epoch(runner, metrics=dict(mIoU=1.0))


def test_a_run_resumed_into_another_work_dir_keeps_the_first_runs_best_checkpoint(tmp_path):
    first_dir, second_dir = tmp_path / 'first', tmp_path / 'second'
    first_dir.mkdir(), second_dir.mkdir()
    first, hook = FakeRunner(first_dir, max_iters=4), CheckpointHook(interval=2, save_best='mIoU')
    hook.before_train(first)
    first.run_iterations(hook, 0, 2)
    hook.after_val_epoch(first, metrics=dict(mIoU=10.0))
    second = FakeRunner(second_dir, max_iters=4, hub=MessageHub())
    second.message_hub.load_state_dict(first.message_hub.state_dict())  # resumed from first_dir's checkpoint
    hook = CheckpointHook(interval=2, save_best='mIoU')
    hook.before_train(second)
    second.run_iterations(hook, 2, 4)
    hook.after_val_epoch(second, metrics=dict(mIoU=20.0))
    assert (first_dir / 'best_mIoU_iter_2.pth').is_file() and (second_dir / 'best_mIoU_iter_4.pth').is_file()


def test_save_best_with_a_less_rule(tmp_path):
    runner = FakeRunner(tmp_path, max_iters=4)
    hook = CheckpointHook(interval=-1, save_best='val_loss')
    hook.before_train(runner)
    for runner.iter, loss in ((1, 0.5), (2, 0.7), (3, 0.2)):
        hook.after_val_epoch(runner, metrics=dict(val_loss=loss))
    assert sorted(p.name for p in tmp_path.glob('best_*.pth')) == ['best_val_loss_iter_3.pth']


def test_rule_inference_and_argument_checks():
    assert infer_rule('mIoU') == 'greater' and infer_rule('aAcc') == 'greater' and infer_rule('mDice') == 'greater'
    assert infer_rule('decode.loss_ce') == 'less'
    with pytest.raises(ValueError, match='rule'):
        infer_rule('fps')
    with pytest.raises(ValueError, match='by_epoch'):
        CheckpointHook(by_epoch=True)
    with pytest.raises(ValueError, match='rule'):
        CheckpointHook(save_best='mIoU', rule='bigger')


# -- EMAHook ----------------------------------------------------------------------------------------------------

def ema_runner(model):
    return SimpleNamespace(model=model, iter=0, resuming=False)


def test_ema_averages_swaps_for_evaluation_and_saves_both_weights():
    model = nn.Linear(2, 1)
    runner = ema_runner(model)
    hook = EMAHook(momentum=0.25)
    hook.before_run(runner)
    w0 = model.weight.detach().clone()
    hook.after_train_iter(runner, batch_idx=0)  # first update: copy
    with torch.no_grad():
        model.weight.add_(4.0)
    runner.iter = 1
    hook.after_train_iter(runner, batch_idx=1)
    expected = w0 + 0.25 * 4.0
    assert torch.allclose(hook.average['weight'], expected)

    hook.before_val_epoch(runner)
    assert torch.allclose(model.weight, expected)
    hook.after_val_epoch(runner)
    assert torch.allclose(model.weight, w0 + 4.0)

    checkpoint = {'state_dict': model.state_dict()}
    hook.before_save_checkpoint(runner, checkpoint)
    assert torch.allclose(checkpoint['state_dict']['weight'], expected)
    assert torch.allclose(checkpoint['ema_state_dict']['module.weight'], w0 + 4.0)
    assert int(checkpoint['ema_state_dict']['steps']) == 2

    # Resuming: the raw weights go back into the state dict to load, the average into the hook.
    fresh_model = nn.Linear(2, 1)
    fresh = EMAHook(momentum=0.25)
    resumed_runner = ema_runner(fresh_model)
    resumed_runner.resuming = True
    fresh.before_run(resumed_runner)
    fresh.after_load_checkpoint(resumed_runner, checkpoint)
    assert torch.allclose(checkpoint['state_dict']['weight'], w0 + 4.0)
    assert torch.allclose(fresh.average['weight'], expected) and fresh.steps == 2


def test_ema_starts_from_loaded_weights_when_not_resuming():
    model = nn.Linear(2, 1)
    runner = ema_runner(model)
    hook = EMAHook()
    hook.before_run(runner)
    loaded = {k: torch.full_like(v, 3.0) for k, v in model.state_dict().items()}
    hook.after_load_checkpoint(runner, {'state_dict': loaded})
    assert torch.equal(hook.average['weight'], loaded['weight'])


def test_exp_momentum_ema_follows_its_schedule():
    model = nn.Linear(1, 1, bias=False)
    runner = ema_runner(model)
    hook = EMAHook(ema_type='ExpMomentumEMA', momentum=0.001, gamma=10)
    hook.before_run(runner)
    average = model.weight.detach().clone()
    hook.after_train_iter(runner, batch_idx=0)
    for step in range(1, 4):
        with torch.no_grad():
            model.weight.add_(1.0)
        runner.iter = step
        hook.after_train_iter(runner, batch_idx=step)
        momentum = (1 - 0.001) * math.exp(-(1 + step) / 10) + 0.001
        average = average + momentum * (model.weight.detach() - average)
    assert torch.allclose(hook.average['weight'], average)
    with pytest.raises(KeyError, match='ema_type'):
        EMAHook(ema_type='SWA')


def test_ema_hook_in_training_saves_the_average_as_the_model(tmp_path):
    cfg = Config.fromfile(str(write_tiny_config(tmp_path)))
    cfg.train_cfg.update(max_iters=3, val_interval=100)
    cfg.custom_hooks = [dict(type='EMAHook', momentum=0.5)]
    runner = Runner.from_cfg(cfg)
    model = runner.train()
    checkpoint = torch.load(Path(cfg.work_dir) / 'iter_3.pth', weights_only=True)
    raw = model.state_dict()
    name = 'decode_head.conv_seg.weight'
    assert torch.equal(checkpoint['ema_state_dict'][f'module.{name}'], raw[name])
    assert not torch.equal(checkpoint['state_dict'][name], raw[name])
    ema = runner.hooks[[type(h) for h in runner.hooks].index(EMAHook)]
    assert torch.equal(checkpoint['state_dict'][name], ema.average[name])


# -- timing, schedulers, samplers -------------------------------------------------------------------------------

def test_iter_timer_records_times_and_eta(monkeypatch):
    hook = IterTimerHook()
    clock = iter([0.0, 0.5, 2.0, 2.5, 6.0])  # epoch start, iter0 data, iter0 end, iter1 data, iter1 end
    monkeypatch.setattr(iter_timer_hook, 'time', SimpleNamespace(perf_counter=lambda: next(clock)))
    runner = SimpleNamespace(iter=0, max_iters=10, message_hub=MessageHub())
    hook.before_train(runner)
    hook.before_train_epoch(runner)
    for runner.iter in (0, 1):
        hook.before_train_iter(runner, batch_idx=runner.iter)
        hook.after_train_iter(runner, batch_idx=runner.iter)
    hub = runner.message_hub
    assert [hub.get_scalar('train/data_time').mean(), hub.get_scalar('train/time').current()] == [0.5, 4.0]
    assert hub.get_info('eta') == pytest.approx((2.0 + 4.0) / 2 * 8)


def test_param_scheduler_hook_steps_every_scheduler_after_each_iteration():
    steps = []
    warmup = SimpleNamespace(by_epoch=False, step=lambda: steps.append('warmup'))
    poly = SimpleNamespace(by_epoch=False, step=lambda: steps.append('poly'))
    runner = SimpleNamespace(param_schedulers=[warmup, poly])
    hook = ParamSchedulerHook()
    hook.after_train_iter(runner, batch_idx=0)
    hook.after_train_iter(runner, batch_idx=1)
    hook.after_train_epoch(runner)
    assert steps == ['warmup', 'poly', 'warmup', 'poly']


def test_sampler_seed_hook_sets_the_epoch():
    epochs = []
    sampler = SimpleNamespace(set_epoch=epochs.append)
    runner = SimpleNamespace(epoch=3, train_dataloader=SimpleNamespace(sampler=sampler))
    DistSamplerSeedHook().before_train_epoch(runner)
    assert epochs == [3]


# -- visualization ----------------------------------------------------------------------------------------------

def vis_sample(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (8, 10, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / 'frame.png'), image)
    gt = torch.zeros(8, 10, dtype=torch.int64)
    gt[4:] = 1
    pred = torch.full((8, 10), 2, dtype=torch.int64)
    return image, dict(img_path=str(tmp_path / 'frame.png'), gt_sem_seg=gt[None], pred_sem_seg=pred)


def test_visualization_hook_writes_test_overlays_every_interval(tmp_path):
    image, sample = vis_sample(tmp_path)
    visualizer = SegLocalVisualizer(palette=PALETTE, alpha=0.5)
    runner = SimpleNamespace(iter=0, visualizer=visualizer)
    out_dir = tmp_path / 'show'
    hook = SegVisualizationHook(draw=True, interval=2, out_dir=str(out_dir))
    hook.after_test_iter(runner, batch_idx=0, outputs=[sample])
    assert not out_dir.exists()
    hook.after_test_iter(runner, batch_idx=1, outputs=[sample])
    drawn = cv2.imread(str(out_dir / 'frame.png'))
    expected = np.concatenate([draw_overlay(image, sample['gt_sem_seg'][0], PALETTE, 0.5),
                               draw_overlay(image, sample['pred_sem_seg'], PALETTE, 0.5)], axis=1)
    assert np.array_equal(drawn, expected)
    SegVisualizationHook(draw=False, interval=1, out_dir=str(tmp_path / 'none')).after_test_iter(
        runner, batch_idx=0, outputs=[sample])
    assert not (tmp_path / 'none').exists()


def test_visualization_hook_sends_val_overlays_to_the_backends(tmp_path):
    _, sample = vis_sample(tmp_path)
    visualizer = SegLocalVisualizer(vis_backends=[dict(type='LocalVisBackend')], save_dir=str(tmp_path / 'log'),
                                    palette=PALETTE)
    runner = SimpleNamespace(iter=40, visualizer=visualizer)
    SegVisualizationHook(draw=True, interval=1).after_val_iter(runner, batch_idx=0, outputs=[sample])
    saved = cv2.imread(str(tmp_path / 'log' / 'vis_data' / 'vis_image' / 'val_frame.png_40.png'))
    assert saved.shape == (8, 20, 3)


def test_vis_backends_write_scalars_json_lines_and_tensorboard_events(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    local = LocalVisBackend(str(tmp_path))
    local.add_scalars({'loss': torch.tensor(0.5), 'lr': 0.01}, step=10)
    local.add_scalars({'mIoU': 42.0}, step=20)
    lines = [json.loads(line) for line in (tmp_path / 'scalars.json').read_text().splitlines()]
    assert lines == [{'loss': 0.5, 'lr': 0.01, 'step': 10}, {'mIoU': 42.0, 'step': 20}]
    board = TensorboardVisBackend(str(tmp_path / 'tb'))
    board.add_scalars({'loss': 0.5, 'note': 'text is skipped'}, step=3)
    board.add_image('overlay', np.zeros((4, 5, 3), np.uint8), step=3)
    board.close()
    events = EventAccumulator(str(tmp_path / 'tb'))
    events.Reload()
    assert events.Tags()['scalars'] == ['loss'] and events.Tags()['images'] == ['overlay']
    assert [(e.step, e.value) for e in events.Scalars('loss')] == [(3, 0.5)]
