"""What users see when a path, a config or a checkpoint is wrong: tools/*.py and segkit.engine.cli."""
import logging

import cv2
import numpy as np
import pytest

from engine_fixtures import load_tool, restore_global_state, write_tiny_config  # noqa: F401
from segkit.apis import init_model
from segkit.checkpoint import CheckpointError, load_file, load_state_dict, save_checkpoint
from segkit.datasets import shapes_demo
from segkit.engine.cli import describe_error
from segkit.datasets.shapes_demo import ShapesDemoDataset

check_dataset = load_tool('check_dataset')
train_tool = load_tool('train')


def test_shapes_demo_names_the_absolute_folder_it_generates(tmp_path, monkeypatch, caplog):
    """A relative data_root follows the working directory (MMSeg's convention), so a run started elsewhere
    generates a new copy there: it must say so, with the absolute path, not do it silently."""
    monkeypatch.setattr(shapes_demo, '_SPLITS', {'train': 2, 'val': 1})
    monkeypatch.chdir(tmp_path)
    prefix = dict(img_path='img_dir/train', seg_map_path='ann_dir/train')
    with caplog.at_level(logging.WARNING, logger='segkit'):
        dataset = ShapesDemoDataset(data_root='data/shapes_demo', data_prefix=prefix)
    target = tmp_path / 'data' / 'shapes_demo'
    assert len(dataset) == 2 and (target / 'img_dir' / 'val' / '0000.png').is_file()
    assert f'generating the demo set (3 images and label maps, about 9 MB) in {target},' in caplog.text
    assert f"data_root 'data/shapes_demo' is relative to the working directory, {tmp_path}" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger='segkit'):
        ShapesDemoDataset(data_root=str(target), data_prefix=prefix)  # already there: nothing to announce
    assert caplog.text == ''


CONFIG = '''
train_dataloader = dict(
    batch_size=1, num_workers=0,
    dataset=dict(type='BaseSegDataset', data_root={root!r}, metainfo=dict(classes=('a', 'b')),
                 data_prefix=dict(img_path='img', seg_map_path='ann'), pipeline=[dict(type='LoadImageFromFile')]))
'''


def check_dataset_error(capsys, argv):
    """tools/check_dataset.py's exit code and its stderr, which must be a single ``error:`` line."""
    code = check_dataset.main(argv)
    err = capsys.readouterr().err
    assert code == 1 and err.startswith('error: ') and err.count('\n') == 1 and 'Traceback' not in err, err
    return err


@pytest.mark.parametrize('override, expected', [
    ('train_dataloader.dataset.type=BaseSegDatset',
     "error: cannot build train_dataloader.dataset: "),
    ('train_dataloader.dataset.colour=1',
     'error: cannot build train_dataloader.dataset: TypeError: datasets: building BaseSegDataset failed'),
    ('train_dataloader.batch_size.x=1', "error: override 'train_dataloader.batch_size.x': "),
    ('train_dataloader.dataset=3', 'error: train_dataloader.dataset must be a dict with a "type", got 3'),
])
def test_check_dataset_reports_a_config_error_in_one_line(tmp_path, capsys, override, expected):
    config = tmp_path / 'config.py'
    config.write_text(CONFIG.format(root=str(tmp_path)))
    err = check_dataset_error(capsys, [str(config), '--cfg-options', override])
    assert err.startswith(expected)
    if 'BaseSegDatset' in override:  # the registry's message, without the quotes KeyError's str() adds
        assert "'BaseSegDatset' is not registered in the 'datasets' registry. Did you mean 'BaseSegDataset'" in err
        assert '"' not in err


def test_check_dataset_reports_a_missing_base_or_config_in_one_line(tmp_path, capsys):
    config = tmp_path / 'config.py'
    config.write_text("_base_ = ['../missing_base.py']\n" + CONFIG.format(root=str(tmp_path)))
    err = check_dataset_error(capsys, [str(config)])
    assert f"_base_ file '../missing_base.py' not found (looked for {tmp_path.parent / 'missing_base.py'})" in err
    err = check_dataset_error(capsys, [str(tmp_path / 'nope.py')])
    assert err == f'error: config file not found: {tmp_path / "nope.py"}\n'


def test_a_missing_relative_checkpoint_names_the_absolute_path_tried(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as e:
        load_file('work_dirs/iter_2.pth')
    assert str(e.value) == (f'checkpoint file not found: work_dirs/iter_2.pth '
                            f'(resolved to {tmp_path / "work_dirs" / "iter_2.pth"})')
    with pytest.raises(FileNotFoundError) as e:
        load_file(str(tmp_path / 'iter_2.pth'))  # an absolute path is shown as given
    assert str(e.value) == f'checkpoint file not found: {tmp_path / "iter_2.pth"}'


def test_missing_data_under_a_relative_data_root_names_the_working_directory(tmp_path, monkeypatch, capsys):
    """The dataset's own message (segkit/datasets/base_dataset.py) shows the relative path; the tools add the
    working directory it was resolved against."""
    config = tmp_path / 'config.py'
    config.write_text(CONFIG.format(root='data/my_set'))
    monkeypatch.chdir(tmp_path)
    note = f' (relative paths are resolved against the working directory, {tmp_path})'
    err = check_dataset_error(capsys, [str(config)])
    assert err.startswith('error: cannot build train_dataloader.dataset: FileNotFoundError: image folder '
                          'data/my_set/img does not exist') and err.endswith(note + '\n')
    (tmp_path / 'data' / 'my_set' / 'img').mkdir(parents=True)
    cv2.imwrite(str(tmp_path / 'data' / 'my_set' / 'img' / '0.jpg'), np.zeros((4, 4, 3), np.uint8))
    assert check_dataset.main([str(config)]) == 1  # a per-sample error: its label map is missing
    out = capsys.readouterr().out
    assert 'label map data/my_set/ann/0.png does not exist\n ' + note in out
    config = write_tiny_config(tmp_path)
    code = train_tool.main([str(config), '--cfg-options', 'train_dataloader.dataset.data_root=data/elsewhere',
                            'train_cfg.max_iters=1'])
    first_line = capsys.readouterr().err.splitlines()[0]
    assert code == 1 and first_line.startswith('error: training failed: FileNotFoundError: image folder '
                                               'data/elsewhere/img_dir/train does not exist')
    assert first_line.endswith(note)


def test_resume_from_a_mismatching_checkpoint_gives_advice_the_command_line_can_follow(tmp_path, capsys):
    """resume loads strictly (it continues the same run) and strict=False cannot be set from the command line:
    the message must point to what can, load_from without --resume, and that advice must work."""
    config = str(write_tiny_config(tmp_path))
    checkpoint = str(tmp_path / 'three_classes.pth')
    save_checkpoint({'state_dict': init_model(config).state_dict()}, checkpoint)
    four_classes = ['model.decode_head.num_classes=4', 'train_cfg.max_iters=1']
    code = train_tool.main([config, '--resume', '--cfg-options', f'load_from={checkpoint}', *four_classes])
    err = capsys.readouterr().err
    assert code == 1 and 'Traceback' not in err and 'strict=False' not in err, err
    assert err.startswith(f'error: cannot resume: {checkpoint} does not match EncoderDecoder:\n'
                          f'  2 shape mismatches:\n'
                          f'    decode_head.conv_seg.weight: checkpoint (3, 8, 1, 1) vs model (4, 8, 1, 1)\n')
    assert 'drop --resume' in err and f'add --cfg-options load_from={checkpoint}' in err
    code = train_tool.main([config, '--work-dir', str(tmp_path / 'new'), '--cfg-options', f'load_from={checkpoint}',
                            *four_classes])
    out = capsys.readouterr().out
    assert code == 0 and f'Loaded checkpoint {checkpoint}' in out
    assert 'decode_head.conv_seg.weight: checkpoint (3, 8, 1, 1) vs model (4, 8, 1, 1)' in out  # the warning

    # From Python, strict=False is the way, and the message says so.
    model = init_model(config, cfg_options={'model.decode_head.num_classes': 4})
    with pytest.raises(CheckpointError) as e:
        load_state_dict(model, init_model(config).state_dict(), source=checkpoint)
    assert str(e.value).endswith('segkit.checkpoint.load_checkpoint(model, path, strict=False) loads the matching '
                                 'tensors only)')
    assert e.value.report['shape_mismatch'] and e.value.source == checkpoint


def test_describe_error_unquotes_a_plain_key_error_only():
    class TypeNotFound(KeyError):
        def __str__(self):
            return f'config key model.backbone.type: {self.args[0]}'

    assert describe_error(KeyError("'X' is not registered")) == "KeyError: 'X' is not registered"
    assert describe_error(TypeNotFound("'X' is not registered")) == (
        "TypeNotFound: config key model.backbone.type: 'X' is not registered")
