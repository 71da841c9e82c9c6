"""What ``tools/train.py`` and ``tools/test.py`` share: run a phase from a config and report failures clearly."""
import sys
import traceback
from typing import Callable

import torch.distributed

from segkit.config import Config, ConfigError

from .runner import Runner


def run_phase(build_config: Callable[[], Config], phase: str) -> int:
    """Build the config, then ``Runner.from_cfg(cfg).<phase>()``; returns the process exit code.

    A config error prints one line; any other failure prints a clear first line, then the traceback.
    The process group, if any, is torn down either way.
    """
    try:
        cfg = build_config()
    except ConfigError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    try:
        getattr(Runner.from_cfg(cfg), phase)()
    except Exception as e:
        verb = {'train': 'training', 'test': 'testing', 'val': 'validation'}[phase]
        print(f'error: {verb} failed: {type(e).__name__}: {e}', file=sys.stderr)
        traceback.print_exc()
        return 1
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0
