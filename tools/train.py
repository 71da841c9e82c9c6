"""Train a segmentor from a config (MMSeg's ``tools/train.py`` flags).

    python tools/train.py CONFIG [--work-dir DIR] [--resume] [--amp] [--cfg-options key=value ...]
                          [--launcher none|pytorch] [--seed N] [--deterministic] [--no-validate]

Multi-GPU (or multi-process CPU): ``bash tools/dist_train.sh CONFIG GPUS [flags]``.
"""
import argparse
import logging
import os
import sys
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from segkit import Config, DictAction  # noqa: E402
from segkit.config import ConfigError  # noqa: E402
from segkit.engine.cli import run_config, run_phase  # noqa: E402

logger = logging.getLogger('segkit')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='where logs and checkpoints go (default: work_dirs/<config name>)')
    parser.add_argument('--resume', action='store_true',
                        help='resume from load_from, or else from the latest checkpoint in the work dir')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision (AmpOptimWrapper, '
                                                           'dynamic loss scale)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override settings: key=value, e.g. train_cfg.max_iters=1000 '
                             'model.decode_head.num_classes=11 (lists: key="[a,b]" or key=a,b)')
    parser.add_argument('--launcher', choices=['none', 'pytorch'], default='none', help='job launcher')
    parser.add_argument('--seed', type=int, help='random seed (randomness.seed)')
    parser.add_argument('--deterministic', action='store_true',
                        help='deterministic algorithms (randomness.deterministic=True)')
    parser.add_argument('--no-validate', action='store_true', help='do not validate during training')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def build_config(args: argparse.Namespace) -> Config:
    """The config with the command line applied (in MMSeg's order: file, --cfg-options, then flags)."""
    cfg = run_config(args)
    if args.amp:
        if cfg.get('optim_wrapper') is None:
            raise ConfigError('--amp needs an optim_wrapper in the config')
        wrapper_type = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if wrapper_type == 'AmpOptimWrapper':
            logger.warning('AMP training is already enabled in the config')
        elif wrapper_type != 'OptimWrapper':
            raise ConfigError(f'--amp needs optim_wrapper.type "OptimWrapper", the config has {wrapper_type!r}')
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.resume:
        cfg.resume = True
    if args.seed is not None or args.deterministic:
        randomness = dict(cfg.get('randomness') or {})
        if args.seed is not None:
            randomness['seed'] = args.seed
        if args.deterministic:
            randomness['deterministic'] = True
        cfg.randomness = randomness
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    return cfg


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    return run_phase(lambda: build_config(args), 'train')


if __name__ == '__main__':
    sys.exit(main())
