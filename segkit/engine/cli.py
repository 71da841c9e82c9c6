"""What ``tools/train.py`` and ``tools/test.py`` share: run a phase from a config and report failures clearly."""
import sys
import traceback
from typing import Callable

import torch.distributed

from segkit.config import Config, ConfigError

from .runner import Runner, find_latest_checkpoint


def run_phase(build_config: Callable[[], Config], phase: str) -> int:
    """Build the config, then ``Runner.from_cfg(cfg).<phase>()``; returns the process exit code.

    A config error prints one line; any other failure prints a clear first line, then the traceback. Ctrl-C
    prints (and logs) where training stopped and the checkpoint to resume from, and returns 130.
    The process group, if any, is torn down either way.
    """
    try:
        cfg = build_config()
    except ConfigError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    runner = None
    try:
        runner = Runner.from_cfg(cfg)
        getattr(runner, phase)()
    except KeyboardInterrupt:
        message = f'{phase} interrupted'
        if runner is not None and phase == 'train':
            last = find_latest_checkpoint(runner.work_dir)
            message += f' at iteration {runner.iter}; ' + (
                f'the last checkpoint is {last}: --resume continues from it' if last else 'no checkpoint was saved')
        if runner is not None:
            runner.logger.warning(message)  # the text log records why it ends here
        else:
            print(message, file=sys.stderr)
        return 130
    except Exception as e:
        verb = {'train': 'training', 'test': 'testing', 'val': 'validation'}[phase]
        print(f'error: {verb} failed: {type(e).__name__}: {e}', file=sys.stderr)
        traceback.print_exc()
        return 1
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0
