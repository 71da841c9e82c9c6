"""Distributed training and testing on CPU: 2 processes under torchrun with gloo.

- 2 processes with SyncBN and batch B train to the weights of 1 process with BN and batch 2B;
- ``dist_train.sh`` writes each checkpoint once and logs from rank 0 only;
- ``dist_test.sh`` gives exactly the single-process metrics (with a dataset the ranks cannot split evenly);
- a rank that raises ends the whole job promptly with a non-zero exit;
- torchrun's ``--max-restarts`` with ``--resume`` continues from the last checkpoint to the uninterrupted weights.

Runs read tiny generated data without random augmentation, dropout or drop path, so that which samples an
iteration uses is the only thing that can differ between them.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from engine_fixtures import (REPO_ROOT, make_tiny_dataset, one_thread, restore_global_state,  # noqa: F401
                             write_tiny_config)
from segkit.engine.logging import close_runner_handlers
from test_tools import free_port, subprocess_env, test_tool, train_tool

BATCH_PER_RANK = 2
MAX_ITERS = 8
CHECKPOINT_INTERVAL = 4

# Appended to the tiny engine config: deterministic samples, SGD, a checkpoint every CHECKPOINT_INTERVAL iterations,
# no validation during training (the test tools evaluate the checkpoints).
DETERMINISTIC_TRAINING = f'''
train_dataloader['dataset']['pipeline'] = test_pipeline  # no random flip or photometric distortion
train_dataloader['batch_size'] = {BATCH_PER_RANK}
model['backbone']['drop_path_rate'] = 0.
model['decode_head']['dropout_ratio'] = 0.
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4))
train_cfg = dict(type='IterBasedTrainLoop', max_iters={MAX_ITERS}, val_interval=1000)
val_cfg = val_dataloader = val_evaluator = None
default_hooks['checkpoint'] = dict(type='CheckpointHook', by_epoch=False, interval={CHECKPOINT_INTERVAL})
'''

# Imported by the workers through custom_imports: records which rank writes which checkpoint file, and a hook
# that raises on one rank at one iteration (on torchrun's first attempt only, if asked), noting the time.
PROBE_MODULE = '''
import os
import time

import segkit.engine.runner as runner_module
from segkit.engine.hooks import Hook
from segkit.registry import HOOKS

_save_checkpoint = runner_module.save_checkpoint


def _recorded_save_checkpoint(checkpoint, path):
    with open(os.path.join(os.path.dirname(path), 'checkpoint_writes.txt'), 'a') as f:
        f.write(os.environ['RANK'] + ' ' + os.path.basename(path) + '\\n')
    _save_checkpoint(checkpoint, path)


runner_module.save_checkpoint = _recorded_save_checkpoint


@HOOKS.register_module()
class RaiseOnRank(Hook):
    def __init__(self, rank, iteration, first_attempt_only=False):
        self.rank, self.iteration, self.first_attempt_only = rank, iteration, first_attempt_only

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        first_attempt = os.environ.get('TORCHELASTIC_RESTART_COUNT', '0') == '0'
        if runner.rank == self.rank and batch_idx == self.iteration and (first_attempt or not self.first_attempt_only):
            with open(os.path.join(runner.work_dir, 'failure_time.txt'), 'w') as f:
                f.write(str(time.time()))
            raise RuntimeError(f'deliberate failure on rank {runner.rank} at iteration {batch_idx}')
'''


def write_config(folder: Path, name: str, extra: str = '') -> Path:
    """The deterministic tiny config (SyncBN head) in ``folder``, with ``extra`` lines appended."""
    path = write_tiny_config(folder, name)
    path.write_text(path.read_text() + DETERMINISTIC_TRAINING + extra)
    return path


def probed(folder: Path, name: str, raise_on_rank: dict) -> Path:
    """A config importing the probe module, with a ``RaiseOnRank`` hook built from ``raise_on_rank``."""
    (folder / 'dist_probe.py').write_text(PROBE_MODULE)
    return write_config(folder, name, f'''
custom_imports = dict(imports=['dist_probe'], allow_failed_imports=False)
custom_hooks = [dict(type='RaiseOnRank', **{raise_on_rank!r})]
''')


def run(command: list, folder: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a launcher in ``folder`` (which holds the probe module); on timeout end it with all its workers."""
    python_path = os.pathsep.join(filter(None, [str(folder), os.environ.get('PYTHONPATH')]))
    # warnings shown (as users see them), so that the tests can check which ones appear
    env = dict(subprocess_env(), PORT=str(free_port()), PYTHONPATH=python_path, PYTHONWARNINGS='default')
    process = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def dist_train(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return run(['bash', str(REPO_ROOT / 'tools' / 'dist_train.sh'), str(config), '2', *args], config.parent,
               timeout)


def state_dict(path: Path) -> dict:
    return torch.load(path, map_location='cpu', weights_only=True)['state_dict']


@pytest.fixture(scope='module')
def data_root(tmp_path_factory) -> Path:
    """6 training images and 5 validation ones (an odd count: one rank gets a padding duplicate)."""
    root = tmp_path_factory.mktemp('dist') / 'data'
    make_tiny_dataset(root, num_train=6, num_val=5)
    return root


@pytest.fixture(scope='module')
def dist_run(data_root) -> dict:
    """``dist_train.sh CONFIG 2``: SyncBN, batch 2 per rank, never failing (the probe only records writes)."""
    folder = data_root.parent
    config = probed(folder, 'dist.py', dict(rank=1, iteration=-1))
    result = dist_train(config)
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(config=config, plain_config=write_config(folder, 'plain.py'), work_dir=folder / 'work',
                stdout=result.stdout, stderr=result.stderr)


def test_two_syncbn_processes_train_like_one_bn_process_with_the_double_batch(dist_run, tmp_path):
    """InfiniteSampler gives rank r the positions r, r + 2, ... of one seeded stream, so at every iteration the
    two ranks' batches of 2 together are the single process's batch of 4. SyncBN over the two halves must
    equal BN over the whole, and DDP's gradient average the whole batch's mean loss gradient (equal pixel
    counts, no ignored pixels).

    Compared after the first checkpoint's K iterations: rounding differences (~1e-7 after one iteration, the
    same between one process on 1 and on 2 threads) grow about threefold per iteration at this learning rate,
    while unsynchronised BN statistics differ by more than 1e-3 after a single iteration.
    """
    os.symlink(dist_run['config'].parent / 'data', tmp_path / 'data')
    config = write_config(tmp_path, 'single.py', f'''
model['decode_head']['norm_cfg'] = dict(type='BN', requires_grad=True)
train_dataloader['batch_size'] = {2 * BATCH_PER_RANK}
train_cfg['max_iters'] = {CHECKPOINT_INTERVAL}
''')
    with one_thread():
        assert train_tool.main([str(config)]) == 0
    close_runner_handlers()
    single = state_dict(tmp_path / 'work' / f'iter_{CHECKPOINT_INTERVAL}.pth')
    distributed = state_dict(dist_run['work_dir'] / f'iter_{CHECKPOINT_INTERVAL}.pth')
    assert single.keys() == distributed.keys()
    assert any('bn.running_var' in key for key in single)
    for key, value in single.items():
        torch.testing.assert_close(distributed[key], value, rtol=0, atol=1e-5, msg=key)
    # Training changes the weights far more than the tolerance, so the comparison is not vacuous.
    later = state_dict(dist_run['work_dir'] / f'iter_{MAX_ITERS}.pth')
    assert max((later[k].double() - single[k].double()).abs().max() for k in single) > 1e-2


def test_dist_train_writes_each_checkpoint_once_and_logs_from_rank_0_only(dist_run):
    work_dir = dist_run['work_dir']
    writes = (work_dir / 'checkpoint_writes.txt').read_text().split('\n')
    assert writes == [f'0 iter_{CHECKPOINT_INTERVAL}.pth', f'0 iter_{MAX_ITERS}.pth', '']
    assert dist_run['stdout'].count(f'Iter(train) [{MAX_ITERS}/{MAX_ITERS}]') == 1
    assert dist_run['stdout'].count('world size 2') == 1
    # MiT's channels-last gradients differ from the weights' strides only on size-1 dimensions: not worth a warning
    assert 'Grad strides do not match' not in dist_run['stderr']
    (log_dir,) = [p for p in work_dir.iterdir() if p.is_dir()]
    assert [p.name for p in log_dir.glob('*.log')] == [f'{log_dir.name}.log']
    assert len(list((log_dir / 'vis_data').glob('events.out.tfevents.*'))) == 1


def test_dist_test_gives_exactly_the_single_process_metrics(dist_run, tmp_path):
    config, checkpoint = dist_run['plain_config'], dist_run['work_dir'] / f'iter_{MAX_ITERS}.pth'
    result = run(['bash', str(REPO_ROOT / 'tools' / 'dist_test.sh'), str(config), str(checkpoint), '2',
                  '--work-dir', str(tmp_path / 'dist')], config.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count('Iter(test) [3/3]') == 1  # 5 images: 3 on rank 0, 2 + 1 duplicate on rank 1
    with one_thread():
        assert test_tool.main([str(config), str(checkpoint), '--work-dir', str(tmp_path / 'single')]) == 0
    (dist_file,) = (tmp_path / 'dist').glob('*/*.json')
    (single_file,) = (tmp_path / 'single').glob('*/*.json')
    dist_metrics, single_metrics = json.loads(dist_file.read_text()), json.loads(single_file.read_text())
    keys = ('aAcc', 'mIoU', 'mAcc')
    assert {k: dist_metrics[k] for k in keys} == {k: single_metrics[k] for k in keys}


def test_a_failing_rank_ends_the_job_promptly(data_root, tmp_path):
    """Rank 1 raises at its second iteration while rank 0 goes on into the next collective operation: the
    job must end with a non-zero exit soon after, rather than rank 0 waiting for the process group timeout."""
    os.symlink(data_root, tmp_path / 'data')
    config = probed(tmp_path, 'crash.py', dict(rank=1, iteration=1))
    result = dist_train(config, timeout=90)
    ended = time.time()
    assert result.returncode != 0
    assert 'deliberate failure on rank 1 at iteration 1' in result.stderr
    seconds_after_failure = ended - float((tmp_path / 'work' / 'failure_time.txt').read_text())
    print(f'the job exited with {result.returncode} {seconds_after_failure:.1f} s after rank 1 failed')
    assert seconds_after_failure < 30
    assert not (tmp_path / 'work' / f'iter_{CHECKPOINT_INTERVAL}.pth').exists()


def test_torchrun_max_restarts_with_resume_continues_from_the_last_checkpoint(dist_run, tmp_path):
    """Rank 1 fails 2 iterations after the first checkpoint on torchrun's first attempt; torchrun restarts both
    workers, which resume from that checkpoint (sampler positions and all) and finish with the uninterrupted
    run's weights."""
    os.symlink(dist_run['config'].parent / 'data', tmp_path / 'data')
    failing = CHECKPOINT_INTERVAL + 2
    config = probed(tmp_path, 'elastic.py', dict(rank=1, iteration=failing, first_attempt_only=True))
    result = run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', '--max-restarts=1',
                  f'--master_port={free_port()}', str(REPO_ROOT / 'tools' / 'train.py'), str(config),
                  '--launcher', 'pytorch', '--resume'], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f'deliberate failure on rank 1 at iteration {failing}' in result.stderr
    assert f'iter_{CHECKPOINT_INTERVAL}.pth at iteration {CHECKPOINT_INTERVAL}' in result.stdout
    writes = (tmp_path / 'work' / 'checkpoint_writes.txt').read_text().split('\n')
    assert writes == [f'0 iter_{CHECKPOINT_INTERVAL}.pth', f'0 iter_{MAX_ITERS}.pth', '']
    resumed = state_dict(tmp_path / 'work' / f'iter_{MAX_ITERS}.pth')
    uninterrupted = state_dict(dist_run['work_dir'] / f'iter_{MAX_ITERS}.pth')
    for key, value in uninterrupted.items():
        assert torch.equal(resumed[key], value), key
