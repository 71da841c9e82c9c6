"""tools/train.py, tools/test.py and tools/dist_train.sh: flags, outputs and a 2-process CPU run."""
import json
import os
import socket
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from engine_fixtures import REPO_ROOT, load_tool, one_thread, restore_global_state, write_tiny_config  # noqa: F401
from segkit.engine.logging import close_runner_handlers


train_tool = load_tool('train')
test_tool = load_tool('test')


def subprocess_env():
    return dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """tools/train.py run in-process for 2 iterations (the config says 6)."""
    tmp_path = tmp_path_factory.mktemp('tools')
    config = write_tiny_config(tmp_path)
    with one_thread():
        code = train_tool.main([str(config), '--cfg-options', 'train_cfg.max_iters=2', 'train_cfg.val_interval=2'])
    close_runner_handlers()
    assert code == 0
    return dict(config=config, work_dir=tmp_path / 'work', checkpoint=tmp_path / 'work' / 'iter_2.pth')


def test_cfg_options_reach_the_runner(trained):
    work_dir = trained['work_dir']
    assert (work_dir / 'last_checkpoint').read_text() == str(trained['checkpoint'])
    assert torch.load(trained['checkpoint'], weights_only=True)['meta']['iter'] == 2
    (log_file,) = work_dir.glob('*/*.log')
    assert 'Iter(train) [2/2]' in log_file.read_text()


def test_train_flags_edit_the_config(tmp_path):
    config = str(write_tiny_config(tmp_path))
    cfg = train_tool.build_config(train_tool.parse_args([config]))
    assert cfg.work_dir == str(tmp_path / 'work') and not cfg.get('resume')
    cfg = train_tool.build_config(train_tool.parse_args(
        [config, '--amp', '--resume', '--seed', '5', '--deterministic', '--no-validate', '--work-dir', 'elsewhere',
         '--launcher', 'pytorch']))
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper' and cfg.optim_wrapper.loss_scale == 'dynamic'
    assert cfg.resume is True and cfg.work_dir == 'elsewhere' and cfg.launcher == 'pytorch'
    assert cfg.randomness == dict(seed=5, deterministic=True)
    assert cfg.val_cfg is None and cfg.val_dataloader is None and cfg.val_evaluator is None


def test_work_dir_defaults_to_the_config_name(tmp_path):
    config = write_tiny_config(tmp_path)
    config.write_text(config.read_text().replace("work_dir = ", "unused_dir = "))
    cfg = train_tool.build_config(train_tool.parse_args([str(config)]))
    assert cfg.work_dir == os.path.join('./work_dirs', 'tiny_segformer')


def test_amp_refuses_a_foreign_optim_wrapper(tmp_path, capsys):
    config = str(write_tiny_config(tmp_path))
    code = train_tool.main([config, '--amp', '--cfg-options', 'optim_wrapper.type=MyWrapper'])
    assert code == 1
    assert capsys.readouterr().err.startswith('error: --amp needs optim_wrapper.type "OptimWrapper"')


def test_a_config_error_is_one_clear_line(tmp_path, capsys):
    assert train_tool.main([str(tmp_path / 'missing.py')]) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: config file not found') and 'Traceback' not in err


def test_a_runtime_error_leads_with_a_clear_line_then_the_traceback(tmp_path, capsys):
    config = str(write_tiny_config(tmp_path))
    # the head expects 16 channels from the last stage, which gives 8: the first forward pass fails
    code = train_tool.main([config, '--cfg-options', 'model.decode_head.in_channels=[8,8,8,16]'])
    assert code == 1
    err = capsys.readouterr().err
    assert err.splitlines()[0].startswith('error: training failed: RuntimeError: ')
    assert 'Traceback (most recent call last)' in err


def test_an_unknown_type_is_one_line(tmp_path, capsys):
    config = str(write_tiny_config(tmp_path))
    code = train_tool.main([config, '--cfg-options', 'model.backbone.type=NoSuchBackbone'])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: training failed: UnknownTypeError: config key model.backbone.type: "
                          "'NoSuchBackbone' is not registered") and 'Traceback' not in err


def test_test_tool_prints_metrics_and_writes_predictions_and_overlays(trained, tmp_path, capsys):
    out_dir, show_dir = tmp_path / 'out', tmp_path / 'show'
    code = test_tool.main([str(trained['config']), str(trained['checkpoint']), '--work-dir', str(tmp_path / 'w'),
                           '--out', str(out_dir), '--show-dir', str(show_dir)])
    assert code == 0
    stdout = capsys.readouterr().out
    assert 'per class results' in stdout and 'Iter(test) [4/4]' in stdout and 'mIoU' in stdout
    names = sorted(p.name for p in (trained['config'].parent / 'data' / 'img_dir' / 'val').iterdir())
    assert sorted(p.name for p in out_dir.iterdir()) == names
    assert sorted(p.name for p in show_dir.iterdir()) == names
    for name in names:
        label = cv2.imread(str(out_dir / name), cv2.IMREAD_UNCHANGED)
        assert label.shape == (32, 32) and label.dtype == np.uint8 and label.max() <= 2
        assert cv2.imread(str(show_dir / name)).shape == (32, 64, 3)  # ground truth | prediction
    (metrics_file,) = (tmp_path / 'w').glob('*/*.json')
    assert set(json.loads(metrics_file.read_text())) >= {'aAcc', 'mIoU', 'mAcc'}


def test_test_tool_tta_averages_flipped_views(trained, tmp_path, capsys):
    args = test_tool.parse_args([str(trained['config']), str(trained['checkpoint']), '--tta'])
    cfg = test_tool.build_config(args)
    assert cfg.model.type == 'SegTTAModel' and cfg.model.module.type == 'EncoderDecoder'
    assert test_tool.main([str(trained['config']), str(trained['checkpoint']), '--tta',
                           '--work-dir', str(tmp_path)]) == 0
    assert 'Iter(test) [4/4]' in capsys.readouterr().out


def test_the_demo_config_supports_tta():
    config = str(REPO_ROOT / 'configs' / 'demo' / 'segformer_mit-b0_shapes-demo.py')
    cfg = test_tool.build_config(test_tool.parse_args([config, 'ckpt.pth', '--tta']))
    assert cfg.model.type == 'SegTTAModel' and cfg.test_dataloader.dataset.pipeline[1].type == 'TestTimeAug'


def test_show_without_a_display_stops_before_running(monkeypatch, capsys):
    """On a headless Linux machine Qt would abort the whole process (SIGABRT) at the first window."""
    monkeypatch.setattr(sys, 'platform', 'linux')
    monkeypatch.delenv('DISPLAY', raising=False)
    monkeypatch.delenv('WAYLAND_DISPLAY', raising=False)
    with pytest.raises(SystemExit) as e:
        test_tool.main(['config.py', 'ckpt.pth', '--show'])
    assert e.value.code == 2 and 'use --show-dir DIR' in capsys.readouterr().err
    assert not test_tool.parse_args(['config.py', 'ckpt.pth', '--show-dir', 'overlays']).show
    monkeypatch.setenv('WAYLAND_DISPLAY', 'wayland-0')
    assert test_tool.parse_args(['config.py', 'ckpt.pth', '--show']).show


def test_test_script_runs_from_any_directory(trained, tmp_path):
    """A real subprocess: tools/test.py must find segkit without installation and print the metrics."""
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / 'tools' / 'test.py'), str(trained['config']), str(trained['checkpoint']),
         '--work-dir', str(tmp_path)],
        cwd=tmp_path, env=dict(subprocess_env(), PYTHONPATH=''), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert 'per class results' in result.stdout and 'Iter(test) [4/4]' in result.stdout


def test_dist_train_runs_two_processes_and_validates_across_them(tmp_path):
    """2 CPU processes (gloo): DDP training with SyncBN, rank-0-only outputs, and a validation whose counts
    are summed over ranks (each rank sees 2 of the 4 images) equal to a single-process test."""
    config = write_tiny_config(tmp_path)
    result = subprocess.run(
        ['bash', str(REPO_ROOT / 'tools' / 'dist_train.sh'), str(config), '2',
         '--cfg-options', 'train_cfg.max_iters=2', 'train_cfg.val_interval=2'],
        cwd=tmp_path, env=dict(subprocess_env(), PORT=str(free_port())), capture_output=True, text=True,
        timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    work_dir = tmp_path / 'work'
    (log_dir,) = [p for p in work_dir.iterdir() if p.is_dir()]
    log_text = (log_dir / f'{log_dir.name}.log').read_text()
    assert 'world size 2' in log_text and log_text.count('Iter(train) [2/2]') == 1
    assert 'Iter(val) [2/2]' in log_text  # each rank validated its half
    dist_val = [json.loads(line) for line in (log_dir / 'vis_data' / 'scalars.json').read_text().splitlines()
                if 'mIoU' in line][-1]
    checkpoint = torch.load(work_dir / 'iter_2.pth', weights_only=True)
    assert not any(k.startswith('module.') for k in checkpoint['state_dict'])
    assert len(checkpoint['rng_state']) == 2
    assert checkpoint['sampler']['samples_seen'] == 2 * 2 * 2  # iterations x batch x ranks

    with one_thread():
        assert test_tool.main([str(config), str(work_dir / 'iter_2.pth'), '--work-dir', str(tmp_path / 't')]) == 0
    (metrics_file,) = (tmp_path / 't').glob('*/*.json')
    single = json.loads(metrics_file.read_text())
    assert {k: single[k] for k in ('aAcc', 'mIoU', 'mAcc')} == {k: dist_val[k] for k in ('aAcc', 'mIoU', 'mAcc')}


def test_a_missing_checkpoint_is_one_line_without_a_traceback(tmp_path, capsys):
    config = str(write_tiny_config(tmp_path))
    assert test_tool.main([config, str(tmp_path / 'nope.pth'), '--work-dir', str(tmp_path / 'w')]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f'error: testing failed: FileNotFoundError: checkpoint file not found: {tmp_path}')
    assert 'Traceback' not in err


def test_out_goes_to_the_iou_metric_only(tmp_path):
    from segkit.config import ConfigError
    config = write_tiny_config(tmp_path)
    text = config.read_text()
    config.write_text(text + "\ntest_evaluator = [dict(type='IoUMetric'), dict(type='MyMetric')]\n")
    cfg = test_tool.build_config(test_tool.parse_args([str(config), 'ckpt.pth', '--out', 'preds']))
    assert cfg.test_evaluator[0]['output_dir'] == 'preds' and 'output_dir' not in cfg.test_evaluator[1]
    config.write_text(text + "\ntest_evaluator = dict(type='MyMetric')\n")
    with pytest.raises(ConfigError, match='--out needs an IoUMetric'):
        test_tool.build_config(test_tool.parse_args([str(config), 'ckpt.pth', '--out', 'preds']))


def test_testing_with_a_checkpoint_of_another_head_stops_instead_of_scoring_random_weights(trained, tmp_path, capsys):
    code = test_tool.main([str(trained['config']), str(trained['checkpoint']), '--work-dir', str(tmp_path / 'w'),
                           '--cfg-options', 'model.decode_head.num_classes=4'])
    err = capsys.readouterr().err
    assert code == 1 and 'does not provide every weight of EncoderDecoder' in err
    assert 'decode_head.conv_seg.weight: checkpoint (3, 8, 1, 1) vs model (4, 8, 1, 1)' in err.splitlines()[0]
