"""Check every sample of a dataset split before training: images decode, label maps match their images and
hold class indices in [0, num_classes) or ignore_index; then print how many pixels each class has.

    python tools/check_dataset.py CONFIG [--split train|val|test] [--cfg-options key=value ...]

No augmentation is applied (labels are checked after reduce_zero_label and any class-subset remapping).
Exits with status 1 when a sample has an error, or with one ``error:`` line when the config or the dataset
settings are wrong (a missing file, an unknown ``type``, a bad argument).
"""
import argparse
import os
import sys
import traceback
import warnings
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from segkit import DictAction  # noqa: E402
from segkit.engine.cli import config_with_options, describe_error, load_config  # noqa: E402
from segkit.datasets.transforms import LoadAnnotations, LoadImageFromFile  # noqa: E402
from segkit.registry import DATASETS  # noqa: E402

SHOWN = 20  # errors and warnings printed in full; the rest are counted
# What wrong dataset settings raise (an unknown type, an unexpected argument, a missing folder ...): reported in
# one line. Anything else is reported with its traceback too, as it may be a bug rather than a setting.
SETTING_ERRORS = (KeyError, TypeError, ValueError, OSError)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Check the images and labels of a dataset split')
    parser.add_argument('config', help='config file with {split}_dataloader')
    parser.add_argument('--split', choices=['train', 'val', 'test'], default='train')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override settings, e.g. train_dataloader.dataset.data_root=data/my_set')
    return parser.parse_args(argv)


def loader_arguments(pipeline: list) -> Dict[str, dict]:
    """The arguments the config gives LoadImageFromFile / LoadAnnotations (decoding options, ...)."""
    found = {}
    for step in pipeline or []:
        if isinstance(step, dict) and step.get('type') in ('LoadImageFromFile', 'LoadAnnotations'):
            found.setdefault(step['type'], {k: v for k, v in step.items() if k != 'type'})
    return found


def without_pipelines(cfg):
    """A copy of a dataset config (wrappers included) whose pipelines are empty, and the first pipeline seen."""
    seen = []

    def strip(node):
        if isinstance(node, dict):
            if 'pipeline' in node:
                seen.append(node['pipeline'])
            return {k: ([] if k == 'pipeline' else strip(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node
    stripped = strip(cfg)
    return stripped, (seen[0] if seen else [])


def check_split(dataset, load_image: LoadImageFromFile, label_args: dict, desc: str):
    """(errors, warnings, pixel counts per value 0..255, images per value) over the whole dataset."""
    errors, notes = [], []
    pixels = np.zeros(256, np.int64)
    images = np.zeros(256, np.int64)
    for i in tqdm(range(len(dataset)), desc=desc, unit='img', dynamic_ncols=True):
        results = dataset.get_data_info(i)
        try:
            results = load_image(results)
            if 'seg_map_path' in results:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter('always')
                    results = LoadAnnotations(**label_args)(results)  # a fresh one warns for every file
                notes.extend(str(w.message) for w in caught)
        except (OSError, ValueError) as e:
            errors.append(str(e))
            continue
        if 'gt_seg_map' in results:
            counts = np.bincount(results['gt_seg_map'].ravel(), minlength=256)
            pixels += counts
            images += counts > 0
    return errors, notes, pixels, images


def print_report(classes: List[str], ignore_index: int, pixels: np.ndarray, images: np.ndarray,
                 total_images: int) -> None:
    labelled = pixels[:len(classes)].sum()
    width = max([len(str(c)) for c in classes] + [len('ignored')])
    print(f'\n{"id":>3}  {"class".ljust(width)}  {"pixels":>14}  {"percent":>8}  {"images":>7}')
    for i, name in enumerate(classes):
        share = 100 * pixels[i] / labelled if labelled else 0.0
        flag = '  <- never labelled' if pixels[i] == 0 else ''
        print(f'{i:>3}  {str(name).ljust(width)}  {pixels[i]:>14,}  {share:>7.2f}%  {images[i]:>7}{flag}')
    if 0 <= ignore_index < 256:
        share = 100 * pixels[ignore_index] / max(pixels.sum(), 1)
        print(f'{ignore_index:>3}  {"ignored".ljust(width)}  {pixels[ignore_index]:>14,}  {share:>7.2f}%  '
              f'{images[ignore_index]:>7}  (share of all pixels)')
    print(f'{total_images} images; class percentages are of the labelled (non-ignored) pixels')


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    cfg = load_config(lambda: config_with_options(args.config, args.cfg_options))
    if cfg is None:
        return 1
    key = f'{args.split}_dataloader'
    if not isinstance(cfg.get(key), dict) or not cfg[key].get('dataset'):
        print(f'error: {args.config} has no {key}.dataset', file=sys.stderr)
        return 1
    if not isinstance(cfg[key]['dataset'], dict):
        print(f'error: {key}.dataset must be a dict with a "type", got {cfg[key]["dataset"]!r}', file=sys.stderr)
        return 1
    dataset_cfg, pipeline = without_pipelines(cfg[key]['dataset'].to_dict())
    try:
        dataset = DATASETS.build(dataset_cfg)
    except Exception as e:
        print(f'error: cannot build {key}.dataset: {describe_error(e)}', file=sys.stderr)
        if not isinstance(e, SETTING_ERRORS):
            traceback.print_exc()
        return 1
    meta = dataset.metainfo
    classes = list(meta.get('classes') or [])
    if not classes:
        print('error: the dataset names no classes (set metainfo=dict(classes=...))', file=sys.stderr)
        return 1
    arguments = loader_arguments(pipeline)
    load_image = LoadImageFromFile(**arguments.get('LoadImageFromFile', {}))
    ignore_index = dataset.get_data_info(0).get('ignore_index', 255)

    errors, notes, pixels, images = check_split(dataset, load_image, arguments.get('LoadAnnotations', {}),
                                                f'checking {args.split}')
    print_report(classes, ignore_index, pixels, images, len(dataset))
    for title, messages in (('warnings', notes), ('errors', errors)):
        if messages:
            print(f'\n{len(messages)} {title}:')
            for message in messages[:SHOWN]:
                print(f'  {message}')
            if len(messages) > SHOWN:
                print(f'  ... and {len(messages) - SHOWN} more')
    if errors:
        if not os.path.isabs(dataset.get_data_info(0)['img_path']):
            print(f'  (relative paths are resolved against the working directory, {os.getcwd()})')
        print(f'\nFAILED: {len(errors)} of {len(dataset)} samples have errors')
        return 1
    print('\nOK: every sample loads and every label is a valid class index or ignore_index')
    return 0


if __name__ == '__main__':
    sys.exit(main())
