"""Test (and evaluate) a trained segmentor (MMSeg's ``tools/test.py`` flags).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out DIR] [--show] [--show-dir DIR]
                         [--wait-time S] [--tta] [--cfg-options key=value ...] [--launcher none|pytorch]

Shows a progress bar and logs the per-class and summary metrics; the metrics also go to
``<work_dir>/<timestamp>/<timestamp>.json``. ``--out`` writes each prediction as a label PNG (through
``IoUMetric(output_dir=...)``); ``--show-dir`` writes colour overlays (ground truth | prediction) of every image.
Multi-GPU (or multi-process CPU): ``bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [flags]``.
"""
import argparse
import os
import sys
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from segkit import Config, DictAction  # noqa: E402
from segkit.config import ConfigError  # noqa: E402
from segkit.engine.cli import run_config, run_phase  # noqa: E402


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a segmentor')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where the log and the metrics json go (default: '
                                           'work_dirs/<config name>)')
    parser.add_argument('--out', help='write the predictions as label PNGs to this folder')
    parser.add_argument('--show', action='store_true', help='show each prediction in a window')
    parser.add_argument('--show-dir', help='write colour overlays of the predictions to this folder')
    parser.add_argument('--wait-time', type=float, default=2, help='seconds each --show window stays up')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override settings: key=value, e.g. test_dataloader.batch_size=2')
    parser.add_argument('--launcher', choices=['none', 'pytorch'], default='none', help='job launcher')
    parser.add_argument('--tta', action='store_true', help='test-time augmentation (tta_model, tta_pipeline)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    has_display = os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY')
    if args.show and sys.platform.startswith('linux') and not has_display:  # Qt would abort the process
        parser.error('--show needs a display, and neither DISPLAY nor WAYLAND_DISPLAY is set; '
                     'use --show-dir DIR to write the overlays to files instead')
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def build_config(args: argparse.Namespace) -> Config:
    """The config with the command line applied (in MMSeg's order: file, --cfg-options, then flags)."""
    cfg = run_config(args)
    cfg.load_from = args.checkpoint
    cfg.resume = False
    if args.show or args.show_dir:
        # Unlike MMSeg (which keeps the hook's interval of 50), every test image is drawn.
        default_hooks = cfg.get('default_hooks') or {}
        hook = dict(default_hooks.get('visualization') or dict(type='SegVisualizationHook'))
        hook.update(draw=True, interval=1, show=args.show, wait_time=args.wait_time, out_dir=args.show_dir)
        cfg.default_hooks = dict(default_hooks, visualization=hook)
    if args.tta:
        for key in ('tta_model', 'tta_pipeline'):
            if cfg.get(key) is None:
                raise ConfigError(f'--tta needs {key} in the config')
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    if args.out is not None:
        evaluators = cfg.get('test_evaluator') or []
        evaluators = evaluators if isinstance(evaluators, list) else [evaluators]
        iou_metrics = [e for e in evaluators if str(e.get('type', '')).split('.')[-1] == 'IoUMetric']
        if not iou_metrics:
            raise ConfigError('--out needs an IoUMetric in test_evaluator (it writes the label PNGs)')
        for evaluator in iou_metrics:  # other metrics may not take output_dir
            evaluator['output_dir'] = args.out
    return cfg


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    return run_phase(lambda: build_config(args), 'test')


if __name__ == '__main__':
    sys.exit(main())
