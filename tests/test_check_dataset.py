"""tools/check_dataset.py: class statistics on a clean split, errors naming the files on a broken one."""
import os
import subprocess
import sys

import cv2
import numpy as np

from tests.conftest import REPO_ROOT, shared_path

sys.path.insert(0, str(REPO_ROOT / 'tools'))
import check_dataset  # noqa: E402

CONFIG = '''
train_dataloader = dict(
    batch_size=1, num_workers=0, sampler=dict(type='InfiniteSampler'),
    dataset=dict(type='BaseSegDataset', data_root={root!r}, metainfo=dict(classes=('sky', 'road', 'car')),
                 data_prefix=dict(img_path='img', seg_map_path='ann'), img_suffix='.jpg', seg_map_suffix='.png',
                 pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                           dict(type='RandomFlip', prob=0.5), dict(type='PackSegInputs')]))
'''


def make_split(root, labels):
    (root / 'img').mkdir(parents=True)
    (root / 'ann').mkdir()
    for i, label in enumerate(labels):
        label = np.asarray(label, np.uint8)
        cv2.imwrite(str(root / 'img' / f'{i}.jpg'), np.zeros(label.shape + (3,), np.uint8))
        cv2.imwrite(str(root / 'ann' / f'{i}.png'), label)
    config = root / 'config.py'
    config.write_text(CONFIG.format(root=str(root)))
    return str(config)


def test_clean_split_prints_class_statistics(tmp_path, capsys):
    config = make_split(tmp_path, [np.array([[0, 0, 1, 255]] * 2), np.array([[1, 1, 1, 2]] * 2)])
    assert check_dataset.main([config]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[1]: line.split()[2:5] for line in out.splitlines() if line[:3].strip().isdigit()}
    assert rows['sky'] == ['4', '28.57%', '1'] and rows['road'] == ['8', '57.14%', '2']
    assert rows['car'] == ['2', '14.29%', '1'] and rows['ignored'][:2] == ['2', '12.50%']
    assert 'OK' in out


def test_broken_split_fails_naming_each_file(tmp_path, capsys):
    config = make_split(tmp_path, [np.array([[0, 1]]), np.array([[0, 7]]), np.array([[2, 2]])])
    (tmp_path / 'img' / '2.jpg').write_bytes(b'truncated')
    cv2.imwrite(str(tmp_path / 'ann' / '0.png'), np.zeros((3, 3), np.uint8))
    assert check_dataset.main([config]) == 1
    out = capsys.readouterr().out
    assert 'ann/1.png has values [7]' in out
    assert 'img/2.jpg' in out and 'ann/0.png is 3x3' in out
    assert 'FAILED: 3 of 3 samples' in out


def test_binary_0_255_masks_warn(tmp_path, capsys):
    config = make_split(tmp_path, [np.array([[0, 255]]), np.array([[0, 1]])])
    with open(config, 'w') as f:
        f.write(CONFIG.format(root=str(tmp_path)).replace("('sky', 'road', 'car')", "('bg', 'fg')"))
    assert check_dataset.main([config]) == 0
    out = capsys.readouterr().out
    assert '1 warnings' in out and 'ann/0.png holds only 0 and 255' in out


def test_command_line_with_overrides(tmp_path):
    make_split(tmp_path / 'real', [np.array([[0, 1, 2]])])
    moved = tmp_path / 'moved'
    os.rename(tmp_path / 'real', moved)
    done = subprocess.run([sys.executable, str(REPO_ROOT / 'tools' / 'check_dataset.py'), str(moved / 'config.py'),
                           '--split', 'train', '--cfg-options', f'train_dataloader.dataset.data_root={moved}'],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert 'car' in done.stdout and '33.33%' in done.stdout
    missing = subprocess.run([sys.executable, str(REPO_ROOT / 'tools' / 'check_dataset.py'), str(moved / 'config.py'),
                              '--split', 'val'], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and 'no val_dataloader' in missing.stderr


def test_camvid_val_split_is_clean(capsys):
    root = shared_path('data', 'camvid')
    config = str(REPO_ROOT / 'configs' / '_base_' / 'datasets' / 'camvid.py')
    assert check_dataset.main([config, '--split', 'val', '--cfg-options',
                               f'val_dataloader.dataset.data_root={root}']) == 0
    out = capsys.readouterr().out
    assert 'Bicyclist' in out and '101 images' in out and 'never labelled' not in out
