"""Runner end to end on a tiny generated dataset: training, logs, checkpoints, resume, load_from, test."""
import json
import os
import random
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from engine_fixtures import CLASSES, PALETTE, one_thread, restore_global_state, write_tiny_config  # noqa: F401
from segkit import Config
from segkit.engine import Hook, Runner
from segkit.engine.logging import close_runner_handlers
from segkit.registry import HOOKS


@HOOKS.register_module(force=True)
class RecordLossHook(Hook):
    """Records each iteration's loss; optionally interrupts training after ``stop_after`` iterations."""

    priority = 'LOWEST'  # after the checkpoint hook, like an interruption between iterations

    def __init__(self, stop_after=None):
        self.stop_after = stop_after
        self.losses = {}

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.losses[runner.iter + 1] = float(outputs['loss'])
        if runner.iter + 1 == self.stop_after:
            runner.train_loop.stop_training = True


def tiny_cfg(tmp_path: Path, **overrides) -> Config:
    cfg = Config.fromfile(str(write_tiny_config(tmp_path)))
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


def train(cfg: Config):
    runner = Runner.from_cfg(cfg)
    model = runner.train()
    close_runner_handlers()
    recorder = next(h for h in runner.hooks if isinstance(h, RecordLossHook))
    return runner, model, recorder.losses


def read_scalars(work_dir: Path):
    (scalars_file,) = work_dir.glob('*/vis_data/scalars.json')
    return [json.loads(line) for line in scalars_file.read_text().splitlines()]


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """One 6-iteration training run (validation at 3 and 6, checkpoints at 3 and 6, best mIoU kept)."""
    tmp_path = tmp_path_factory.mktemp('trained')
    cfg = tiny_cfg(tmp_path, custom_hooks=[dict(type='RecordLossHook')])
    cfg.default_hooks.checkpoint.save_best = 'mIoU'
    with one_thread():
        runner, model, losses = train(cfg)
    return dict(cfg=cfg, work_dir=Path(cfg.work_dir), runner=runner, model=model, losses=losses)


def test_training_writes_periodic_best_and_pointer_checkpoints(trained):
    work_dir = trained['work_dir']
    assert (work_dir / 'iter_3.pth').is_file() and (work_dir / 'iter_6.pth').is_file()
    assert (work_dir / 'last_checkpoint').read_text() == str(work_dir / 'iter_6.pth')
    val_records = [r for r in read_scalars(work_dir) if 'mIoU' in r]
    best = max(val_records, key=lambda r: r['mIoU'])
    best_files = sorted(p.name for p in work_dir.glob('best_*.pth'))
    assert best_files == [f'best_mIoU_iter_{best["step"]}.pth']  # the previous best was removed
    assert torch.load(work_dir / best_files[0], weights_only=True)['message_hub']['best_score'] == best['mIoU']
    assert not list(work_dir.glob('.tmp_*'))


def test_checkpoint_contents_load_weights_only(trained):
    checkpoint = torch.load(trained['work_dir'] / 'iter_6.pth', map_location='cpu', weights_only=True)
    assert checkpoint['meta']['iter'] == 6 and checkpoint['message_hub']['iter'] == 6
    assert tuple(checkpoint['meta']['dataset_meta']['classes']) == CLASSES
    assert [list(c) for c in checkpoint['meta']['dataset_meta']['palette']] == PALETTE
    assert 'MixVisionTransformer' in checkpoint['meta']['cfg'] and checkpoint['meta']['seed'] == 0
    assert checkpoint['meta']['segkit_version']
    model_state = trained['model'].state_dict()
    assert list(checkpoint['state_dict']) == list(model_state)
    for key, value in model_state.items():
        assert torch.equal(checkpoint['state_dict'][key], value), key  # saved after the last iteration
    assert checkpoint['optimizer']['state'] and checkpoint['scaler'] is None
    assert len(checkpoint['param_schedulers']) == 1
    assert checkpoint['sampler'] == {'seed': 0, 'samples_seen': 6 * 2}
    (rng_state,) = checkpoint['rng_state']
    assert set(rng_state) >= {'python', 'numpy', 'torch'}


def test_text_log_has_progress_lines_and_metrics(trained):
    (log_file,) = trained['work_dir'].glob('*/*.log')
    text = log_file.read_text()
    lines = [line for line in text.splitlines() if 'Iter(train)' in line]
    assert [line.split('Iter(train) ')[1][:5] for line in lines] == ['[2/6]', '[4/6]', '[6/6]']
    for field in ('lr: ', 'eta: ', 'time: ', 'data_time: ', 'memory: ', 'loss: ', 'decode.loss_ce: ',
                  'decode.acc_seg: '):
        assert all(field in line for line in lines), field
    assert text.count('Iter(val) [4/4]') == 2 and 'per class results' in text
    assert 'Saving checkpoint at 6 iterations' in text


def test_json_scalars_hold_smoothed_losses_lr_and_val_metrics(trained):
    records = read_scalars(trained['work_dir'])
    train_records = [r for r in records if 'loss' in r]
    assert [r['step'] for r in train_records] == [2, 4, 6] and [r['iter'] for r in train_records] == [2, 4, 6]
    for record in train_records:
        assert {'lr', 'time', 'data_time', 'memory', 'eta', 'decode.loss_ce', 'decode.acc_seg'} <= set(record)
        losses = [trained['losses'][i] for i in range(1, record['step'] + 1)]  # window 10 covers all so far
        assert record['loss'] == pytest.approx(np.mean(losses), rel=1e-6)
    assert train_records[0]['lr'] > train_records[-1]['lr'] > 0  # PolyLR decays
    assert train_records[-1]['eta'] == 0
    val_records = [r for r in records if 'mIoU' in r]
    assert [r['step'] for r in val_records] == [3, 6]
    assert all(0 <= r['aAcc'] <= 100 and 'mAcc' in r for r in val_records)


def test_tensorboard_events_hold_the_same_scalars(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    (vis_dir,) = trained['work_dir'].glob('*/vis_data')
    assert list(vis_dir.glob('events.out.tfevents.*'))
    events = EventAccumulator(str(vis_dir))
    events.Reload()
    tags = events.Tags()['scalars']
    assert {'loss', 'lr', 'decode.loss_ce', 'mIoU', 'aAcc'} <= set(tags)
    assert [e.step for e in events.Scalars('loss')] == [2, 4, 6]
    json_miou = [r['mIoU'] for r in read_scalars(trained['work_dir']) if 'mIoU' in r]
    assert [e.value for e in events.Scalars('mIoU')] == pytest.approx(json_miou)


def test_merged_config_is_dumped_to_the_work_dir(trained):
    dumped = Config.fromfile(str(trained['work_dir'] / 'tiny_segformer.py'))
    assert dumped.model == trained['cfg'].model
    assert dumped.visualizer.vis_backends == [dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')]


def test_test_of_the_last_checkpoint_reproduces_the_final_validation(trained, tmp_path):
    cfg = trained['cfg'].copy()
    cfg.work_dir = str(tmp_path / 'test_run')
    cfg.load_from = str(trained['work_dir'] / 'iter_6.pth')
    cfg.custom_hooks = []
    metrics = Runner.from_cfg(cfg).test()
    final_val = [r for r in read_scalars(trained['work_dir']) if 'mIoU' in r][-1]
    assert {k: metrics[k] for k in ('aAcc', 'mIoU', 'mAcc')} == {k: final_val[k] for k in ('aAcc', 'mIoU', 'mAcc')}
    (metrics_file,) = (tmp_path / 'test_run').glob('*/*.json')
    assert json.loads(metrics_file.read_text())['mIoU'] == metrics['mIoU']


@pytest.mark.parametrize('num_workers', [0, 2])
def test_resume_continues_exactly_as_an_uninterrupted_run(tmp_path, num_workers):
    """Random flips, photometric distortion, dropout, drop-path and shuffling all draw random numbers:
    stopping after 3 iterations and resuming must replay iterations 4-6 bit for bit, also when loader workers
    (restarted on resume) do the augmentation. Validation runs right after the iteration-3 checkpoint and
    draws random numbers too (a random flip in its pipeline): the uninterrupted run must not let it shift the
    training stream."""
    def cfg_for(work_dir, **hook_args):
        cfg = tiny_cfg(tmp_path, work_dir=str(work_dir), custom_hooks=[dict(type='RecordLossHook', **hook_args)])
        cfg.randomness = dict(seed=3, deterministic=True)
        cfg.train_dataloader.num_workers = num_workers
        cfg.val_dataloader.dataset.pipeline.insert(2, dict(type='RandomFlip', prob=0.5))
        return cfg

    _, model_full, losses_full = train(cfg_for(tmp_path / 'full'))
    _, _, losses_first = train(cfg_for(tmp_path / 'split', stop_after=3))
    assert not (tmp_path / 'split' / 'iter_6.pth').exists()
    resumed_cfg = cfg_for(tmp_path / 'split')
    resumed_cfg.resume = True  # picks <work_dir>/last_checkpoint (iter_3.pth)
    runner, model_resumed, losses_rest = train(resumed_cfg)

    assert sorted(losses_first) == [1, 2, 3] and sorted(losses_rest) == [4, 5, 6]
    assert {**losses_first, **losses_rest} == losses_full
    assert len(set(losses_full.values())) == 6
    for key, value in model_full.state_dict().items():
        assert torch.equal(model_resumed.state_dict()[key], value), key
    assert runner.optim_wrapper.optimizer.param_groups[0]['lr'] == pytest.approx(
        torch.load(tmp_path / 'full' / 'iter_6.pth', weights_only=True)['optimizer']['param_groups'][0]['lr'])


@pytest.mark.parametrize('world_size', [1, 2, 4])
def test_resume_shares_the_samples_seen_among_a_new_number_of_ranks(trained, tmp_path, world_size):
    """A checkpoint records the position in the global sample stream; resuming with another number of
    processes continues from there (each rank skips its share) instead of replaying or skipping samples."""
    checkpoint = trained['work_dir'] / 'iter_3.pth'
    samples_seen = torch.load(checkpoint, weights_only=True)['sampler']['samples_seen']
    assert samples_seen == 3 * trained['cfg'].train_dataloader.batch_size
    cfg = tiny_cfg(tmp_path, load_from=str(checkpoint), resume=True)
    runner = Runner.from_cfg(cfg)
    runner.world_size = world_size  # as the ranks of a job with world_size processes see it
    runner.train_loop = runner._build_loop('train')
    runner._build_optimisation()
    runner.resume(str(checkpoint))
    close_runner_handlers()
    assert runner.train_dataloader.sampler.consumed == samples_seen // world_size


def test_validation_does_not_change_what_training_draws(tmp_path):
    def losses_with(val_interval):
        cfg = tiny_cfg(tmp_path, work_dir=str(tmp_path / f'val_{val_interval}'),
                       custom_hooks=[dict(type='RecordLossHook')])
        cfg.val_dataloader.dataset.pipeline.insert(2, dict(type='RandomFlip', prob=0.5))
        cfg.train_cfg.update(max_iters=4, val_interval=val_interval)
        return train(cfg)[2]
    assert losses_with(val_interval=1) == losses_with(val_interval=100)


def test_each_validation_during_training_first_shares_rank_0s_buffers(tmp_path, monkeypatch):
    """The loop hands the model to broadcast_buffers before every validation (a no-op in one process; what it
    does across processes is tested in test_sync_bn.py)."""
    import segkit.engine.loops as loops
    calls = []
    monkeypatch.setattr(loops, 'broadcast_buffers', lambda model: calls.append((model, model.training)))
    runner, model, _ = train(tiny_cfg(tmp_path, custom_hooks=[dict(type='RecordLossHook')]))  # validates at 3, 6
    assert len(calls) == 2 and all(m is model and training for m, training in calls)


def test_load_from_loads_weights_but_starts_a_new_run(trained, tmp_path):
    seen = {}

    @HOOKS.register_module(force=True)
    class SeeStartHook(Hook):
        def before_train(self, runner):
            seen['iter'] = runner.iter
            seen['state'] = {k: v.clone() for k, v in runner.model.state_dict().items()}
            seen['optimizer_state'] = dict(runner.optim_wrapper.optimizer.state)

    checkpoint_path = trained['work_dir'] / 'iter_3.pth'
    cfg = tiny_cfg(tmp_path, load_from=str(checkpoint_path), custom_hooks=[dict(type='SeeStartHook')])
    cfg.train_cfg.max_iters = 1
    Runner.from_cfg(cfg).train()
    saved = torch.load(checkpoint_path, weights_only=True)['state_dict']
    assert seen['iter'] == 0 and not seen['optimizer_state']
    assert all(torch.equal(seen['state'][k], v) for k, v in saved.items())


@pytest.mark.parametrize('load_from', [None, 'iter_3.pth'])
def test_val_and_test_after_train_evaluate_the_trained_weights(trained, tmp_path, load_from):
    """As in MMEngine, a runner initialises or loads the weights once: test() and val() after train() must
    neither re-initialise the trained model nor load load_from over it."""
    cfg = tiny_cfg(tmp_path, load_from=load_from and str(trained['work_dir'] / load_from))
    cfg.train_cfg.max_iters = cfg.train_cfg.val_interval = 2
    runner = Runner.from_cfg(cfg)
    trained_state = {k: v.clone() for k, v in runner.train().state_dict().items()}
    metrics = runner.test()
    runner.val()
    close_runner_handlers()
    assert all(torch.equal(v, trained_state[k]) for k, v in runner.model.state_dict().items())
    final_val = [r for r in read_scalars(Path(cfg.work_dir)) if 'mIoU' in r][0]
    assert metrics['mIoU'] == final_val['mIoU']


def test_resuming_from_a_weights_only_load_from_says_how_to_resume(trained, tmp_path):
    (best,) = trained['work_dir'].glob('best_mIoU_*.pth')
    runner = Runner.from_cfg(tiny_cfg(tmp_path, load_from=str(best), resume=True))
    with pytest.raises(KeyError, match="no 'optimizer'.*set load_from=None to resume from the work dir"):
        runner.train()
    close_runner_handlers()


def test_a_model_with_fewer_classes_than_the_training_set_is_refused_by_name(tmp_path):
    cfg = tiny_cfg(tmp_path)
    cfg.model.decode_head.num_classes = 2  # the tiny dataset has 3 classes
    with pytest.raises(ValueError, match=r'num_classes=2 but the training dataset has 3 classes: set '
                                         r'model\.decode_head\.num_classes'):
        Runner.from_cfg(cfg).train()
    close_runner_handlers()


@pytest.mark.parametrize('key, typo', [('train_dataloader.dataset.pipeline.2.type', 'RandomFlipp'),
                                       ('custom_hooks.0.type', 'RecordLossHok')])
def test_a_misspelt_type_is_refused_naming_its_key_in_the_whole_config(tmp_path, key, typo):
    cfg = tiny_cfg(tmp_path, custom_hooks=[dict(type='RecordLossHook')])
    cfg.merge_from_dict({key: typo})
    with pytest.raises(KeyError) as e:
        Runner.from_cfg(cfg).train()
    close_runner_handlers()
    assert str(e.value).startswith(f"config key {key}: '{typo}' is not registered")
    assert f"Did you mean '{typo[:-1]}" in str(e.value)


def test_ctrl_c_during_training_says_where_it_stopped_and_what_to_resume(tmp_path, monkeypatch):
    from segkit.engine import cli
    (tmp_path / 'iter_4.pth').write_bytes(b'')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_4.pth'))
    warnings_logged = []

    class InterruptedRunner:
        iter, work_dir = 5, str(tmp_path)
        logger = SimpleNamespace(warning=warnings_logged.append)

        def train(self):
            raise KeyboardInterrupt
    monkeypatch.setattr(cli.Runner, 'from_cfg', staticmethod(lambda cfg: InterruptedRunner()))
    assert cli.run_phase(lambda: Config({}), 'train') == 130
    assert warnings_logged == [f'train interrupted at iteration 5; the last checkpoint is {tmp_path / "iter_4.pth"}: '
                               f'--resume continues from it']


def test_sigterm_during_training_ends_it_like_ctrl_c(tmp_path, monkeypatch):
    """Job schedulers, torchrun and ``kill`` send SIGTERM: it gets Ctrl-C's message (and the loader and
    checkpoint clean-up that KeyboardInterrupt runs) and exit code 143; the previous handler comes back."""
    from segkit.engine import cli
    warnings_logged = []

    class TerminatedRunner:
        iter, work_dir = 2, str(tmp_path)
        logger = SimpleNamespace(warning=warnings_logged.append)

        def train(self):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts this
    monkeypatch.setattr(cli.Runner, 'from_cfg', staticmethod(lambda cfg: TerminatedRunner()))
    handler_before = signal.getsignal(signal.SIGTERM)
    assert cli.run_phase(lambda: Config({}), 'train') == 143
    assert warnings_logged == ['train terminated (SIGTERM) at iteration 2; no checkpoint was saved']
    assert signal.getsignal(signal.SIGTERM) is handler_before


def test_other_ranks_print_only_warnings_tagged_with_their_rank(capsys):
    from segkit.engine.logging import setup_logger
    logger = setup_logger(None, rank=1)
    logger.info('progress')
    logger.warning('something odd')
    close_runner_handlers()
    out = capsys.readouterr().out
    assert 'progress' not in out and ' - segkit - [rank 1] WARNING - something odd' in out


def test_a_bad_sync_bn_value_is_refused_in_a_single_process_too(tmp_path):
    """sync_bn is used only when distributed; a typo must not wait for the first multi-GPU run to show."""
    with pytest.raises(ValueError, match='sync_bn must be None, "torch" or "mmcv", got \'troch\''):
        Runner.from_cfg(tiny_cfg(tmp_path, sync_bn='troch'))
    Runner.from_cfg(tiny_cfg(tmp_path, sync_bn='mmcv'))
    close_runner_handlers()


@HOOKS.register_module(force=True)
class FailingHook(Hook):
    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        raise RuntimeError('deliberate failure after iteration 1')


@pytest.mark.parametrize('override, message', [
    (dict(randomness=dict(seedd=1)), "randomness.seedd is not a setting segkit knows; did you mean 'seed'?"),
    (dict(custom_hooks=[dict(type='RecordLosHook')]),
     "config key custom_hooks.0.type: 'RecordLosHook' is not registered"),
])
def test_config_key_and_type_errors_print_one_line(tmp_path, capsys, override, message):
    from segkit.engine import cli
    assert cli.run_phase(lambda: tiny_cfg(tmp_path, **override), 'train') == 1
    close_runner_handlers()
    err = capsys.readouterr().err
    assert err.startswith('error: training failed: ') and message in err and 'Traceback' not in err


def test_a_training_failure_is_recorded_in_the_text_log(tmp_path, capsys):
    from segkit.engine import cli
    cfg = tiny_cfg(tmp_path, custom_hooks=[dict(type='FailingHook')])
    assert cli.run_phase(lambda: cfg, 'train') == 1
    close_runner_handlers()
    assert 'error: training failed: RuntimeError: deliberate failure after iteration 1' in capsys.readouterr().err
    (log_file,) = Path(cfg.work_dir).glob('*/*.log')
    log = log_file.read_text()
    assert 'ERROR - training failed: RuntimeError: deliberate failure after iteration 1' in log
    assert 'Traceback' in log


def test_load_from_goes_over_the_configured_initialisation(trained, tmp_path):
    """As in MMEngine, training initialises the weights (init_cfg) before load_from: a checkpoint without the
    classifier (a fine-tune to other classes) leaves conv_seg with the head's Normal(std=0.01), zero bias."""
    full = torch.load(trained['work_dir'] / 'iter_3.pth', weights_only=True)
    without_classifier = {k: v for k, v in full['state_dict'].items() if 'conv_seg' not in k}
    torch.save(dict(state_dict=without_classifier), tmp_path / 'no_classifier.pth')
    cfg = tiny_cfg(tmp_path, load_from=str(tmp_path / 'no_classifier.pth'))
    runner = Runner.from_cfg(cfg)
    runner._load_or_resume(allow_resume=True)
    head = runner.model.decode_head.conv_seg
    assert float(head.weight.std()) < 0.03 and not head.bias.any()
    state = runner.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in without_classifier.items())


def test_interrupted_checkpoint_write_keeps_the_previous_file(tmp_path, monkeypatch):
    cfg = tiny_cfg(tmp_path)
    runner = Runner.from_cfg(cfg)
    runner.save_checkpoint(str(tmp_path), 'ckpt.pth')
    before = (tmp_path / 'ckpt.pth').read_bytes()
    with torch.no_grad():
        next(runner.model.parameters()).add_(1.0)

    def crash_mid_write(obj, f, *args, **kwargs):
        f.write(b'partial bytes')
        raise KeyboardInterrupt('power cut')
    monkeypatch.setattr(torch, 'save', crash_mid_write)
    with pytest.raises(KeyboardInterrupt):
        runner.save_checkpoint(str(tmp_path), 'ckpt.pth')
    monkeypatch.undo()
    assert (tmp_path / 'ckpt.pth').read_bytes() == before
    assert torch.load(tmp_path / 'ckpt.pth', weights_only=True)['meta']['iter'] == 0
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.tmp_')] == []


def test_seed_and_deterministic_are_applied(tmp_path):
    cfg = tiny_cfg(tmp_path)
    cfg.randomness = dict(seed=7, deterministic=True)
    Runner.from_cfg(cfg)
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.benchmark
    drawn = (random.random(), np.random.rand())
    random.seed(7)
    np.random.seed(7)
    assert drawn == (random.random(), np.random.rand())


def test_work_dir_defaults_to_config_name_and_is_required_otherwise(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = tiny_cfg(tmp_path)
    del cfg['work_dir']
    runner = Runner.from_cfg(cfg)
    assert runner.work_dir == os.path.join(str(tmp_path), 'work_dirs', 'tiny_segformer')
    with pytest.raises(KeyError, match='work_dir'):
        Runner.from_cfg(cfg.to_dict())


@pytest.mark.parametrize('setting, calls', [(None, 1), (True, 1), (False, 0)])
def test_env_cfg_retain_freed_memory_defaults_on_and_can_be_turned_off(tmp_path, monkeypatch, setting, calls):
    called = []
    monkeypatch.setattr('segkit.engine.runner.retain_freed_memory', lambda: called.append(1) or True)
    cfg = tiny_cfg(tmp_path)
    if setting is not None:
        cfg.env_cfg.retain_freed_memory = setting
    Runner.from_cfg(cfg)
    close_runner_handlers()
    assert len(called) == calls


def test_compile_key_compiles_the_networks_and_keeps_training_and_keys_the_same(tmp_path):
    graphs = []

    def recording_backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    def run(name, **overrides):
        cfg = tiny_cfg(tmp_path, work_dir=str(tmp_path / name), custom_hooks=[dict(type='RecordLossHook')],
                       **overrides)
        cfg.train_cfg.update(max_iters=3, val_interval=100)
        with one_thread():
            return train(cfg)

    _, eager_model, eager_losses = run('eager')
    _, compiled_model, compiled_losses = run('compiled', compile=dict(backend=recording_backend))
    assert graphs, 'the compiled forward never ran'
    (log_file,) = (tmp_path / 'compiled').glob('*/*.log')
    assert 'applied to backbone, decode_head;' in log_file.read_text()
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-5)
    assert list(compiled_model.state_dict()) == list(eager_model.state_dict())  # no _orig_mod. prefixes
    assert list(torch.load(tmp_path / 'compiled' / 'iter_3.pth', weights_only=True)['state_dict']) == \
        list(eager_model.state_dict())
    assert compiled_model.data_preprocessor.forward.__func__ is type(compiled_model.data_preprocessor).forward


def test_compile_key_must_be_a_bool_or_torch_compile_arguments(tmp_path):
    with pytest.raises(TypeError, match='"compile"'):
        Runner.from_cfg(tiny_cfg(tmp_path, compile='yes'))
    close_runner_handlers()


@pytest.mark.parametrize('auto_scale_lr, expected_lr', [
    (None, 0.01), (dict(enable=False, base_batch_size=8), 0.01), (dict(enable=True, base_batch_size=8), 0.0025)])
def test_auto_scale_lr_scales_by_total_batch_over_base_batch(tmp_path, auto_scale_lr, expected_lr):
    seen = {}

    @HOOKS.register_module(force=True)
    class SeeLrHook(Hook):
        def before_train(self, runner):
            seen['lr'] = runner.optim_wrapper.optimizer.param_groups[0]['lr']
            seen['scheduler_base'] = runner.param_schedulers[0].base_values[0]

    cfg = tiny_cfg(tmp_path, custom_hooks=[dict(type='SeeLrHook')])  # batch 2 on one process, lr 0.01
    if auto_scale_lr is not None:
        cfg.auto_scale_lr = auto_scale_lr
    cfg.train_cfg.max_iters = 1
    Runner.from_cfg(cfg).train()
    close_runner_handlers()
    assert seen == dict(lr=pytest.approx(expected_lr), scheduler_base=pytest.approx(expected_lr))


def test_auto_scale_lr_without_base_batch_size_is_refused(tmp_path):
    cfg = tiny_cfg(tmp_path, auto_scale_lr=dict(enable=True))
    with pytest.raises(ValueError, match='base_batch_size'):
        Runner.from_cfg(cfg).train()
    close_runner_handlers()


def test_top_level_data_preprocessor_serves_a_model_without_one(tmp_path):
    cfg = tiny_cfg(tmp_path)
    top = dict(type='SegDataPreProcessor', mean=[1., 2., 3.], std=[4., 5., 6.], size=(32, 32))
    cfg.data_preprocessor = top
    assert Runner.from_cfg(cfg).model.data_preprocessor.mean.flatten().tolist() == [100., 100., 100.]  # model's wins
    del cfg.model['data_preprocessor']
    assert Runner.from_cfg(cfg).model.data_preprocessor.mean.flatten().tolist() == [1., 2., 3.]
    close_runner_handlers()


@pytest.mark.parametrize('section, key, match', [
    ('env_cfg', 'retain_freed_memroy', "env_cfg.retain_freed_memroy .*did you mean 'retain_freed_memory'"),
    ('env_cfg.mp_cfg', 'opencv_threads', "env_cfg.mp_cfg.opencv_threads .*'opencv_num_threads'"),
    ('env_cfg.dist_cfg', 'backnd', "env_cfg.dist_cfg.backnd .*'backend'"),
    ('randomness', 'sed', "randomness.sed .*'seed'"),
    ('log_processor', 'windows_size', "log_processor.windows_size .*'window_size'")])
def test_misspelt_runner_settings_are_refused_by_name(tmp_path, section, key, match):
    cfg = tiny_cfg(tmp_path)
    node = cfg
    for part in section.split('.'):
        node = node.setdefault(part, {})
    node[key] = 1
    with pytest.raises(KeyError, match=match):
        Runner.from_cfg(cfg)
    close_runner_handlers()


def test_mmengine_log_processor_extras_warn_that_they_are_ignored(tmp_path):
    cfg = tiny_cfg(tmp_path)
    cfg.log_processor = dict(by_epoch=False, custom_cfg=[dict(data_src='loss', window_size='global')])
    with pytest.warns(UserWarning, match='log_processor.custom_cfg .*ignored'):
        Runner.from_cfg(cfg)
    close_runner_handlers()


def test_open_file_soft_limit_is_raised_to_resource_limit(tmp_path):
    resource = pytest.importorskip('resource')
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f'the hard limit on open files ({hard}) leaves no room to test')
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        cfg = tiny_cfg(tmp_path)
        cfg.env_cfg.resource_limit = 2048
        Runner.from_cfg(cfg)
        close_runner_handlers()
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (2048, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_hooks_written_for_mmengine_find_its_runner_attributes(tmp_path):
    seen = {}

    @HOOKS.register_module(force=True)
    class MMEngineStyleHook(Hook):
        def before_train(self, runner):
            seen.update(distributed=runner.distributed, max_epochs=runner.max_epochs, name=runner.experiment_name)

        def after_val_epoch(self, runner, metrics=None):
            seen['val_metrics'] = [type(m).__name__ for m in runner.val_evaluator.metrics]

    cfg = tiny_cfg(tmp_path, custom_hooks=[dict(type='MMEngineStyleHook')])
    cfg.train_cfg.update(max_iters=1, val_interval=1)
    runner = Runner.from_cfg(cfg)
    runner.train()
    close_runner_handlers()
    assert seen == dict(distributed=False, max_epochs=1, name=f'tiny_segformer_{runner.timestamp}',
                        val_metrics=['IoUMetric'])
    assert runner.test_evaluator is None  # no test phase has run
