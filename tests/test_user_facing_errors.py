"""What users see when a path, a config or a checkpoint is wrong: tools/*.py and segkit.engine.cli."""
import logging

from segkit.datasets import shapes_demo
from segkit.datasets.shapes_demo import ShapesDemoDataset


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
