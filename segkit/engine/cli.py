"""What the command-line tools share: build a config from the command line and run a phase from it, reporting
failures clearly."""
import argparse
import os
import signal
import sys
import traceback
from typing import Any, Callable, Optional

import torch.distributed

from segkit.checkpoint import CheckpointError, CheckpointMismatchError
from segkit.config import Config, ConfigError, UnknownKeyError
from segkit.registry import UnknownTypeError

from .logging import write_to_log_file
from .runner import Runner, find_latest_checkpoint


# Failures whose message names the file, key or value at fault: printed without a traceback.
ONE_LINE_ERRORS = (FileNotFoundError, CheckpointError, UnknownKeyError, UnknownTypeError)


def describe_error(e: BaseException) -> str:
    """``Type: message`` on one line (a KeyError's message without the quotes its ``str`` adds).

    A missing file's message gets the working directory that relative paths (``data_root``, ``ann_file``,
    image folders ...) were resolved against, unless it already names it.
    """
    message = str(e)
    if type(e).__str__ is KeyError.__str__ and len(e.args) == 1 and isinstance(e.args[0], str):
        message = e.args[0]  # a plain KeyError's str() is the repr of its message
    if isinstance(e, FileNotFoundError) and os.getcwd() not in message:
        message += f' (relative paths are resolved against the working directory, {os.getcwd()})'
    return f'{type(e).__name__}: {message}'


def resume_mismatch_message(e: CheckpointMismatchError) -> str:
    """Why ``resume`` refused a checkpoint that does not match the model, and what to do from the command line."""
    return (f'error: cannot resume: {e.details}\n'
            f'Resuming continues the run that wrote the checkpoint, so the model must match it exactly. Either:\n'
            f'  - undo the config change that altered the model (e.g. model.decode_head.num_classes), or\n'
            f'  - start a new run from these weights: drop --resume (and add --cfg-options resume=False if the config '
            f'sets resume=True)\n'
            f'    and add --cfg-options load_from={e.source}, preferably with a new --work-dir.\n'
            f'    Without resume, load_from loads non-strictly: the matching tensors are loaded and the others keep '
            f'their\n    initialisation (a warning lists them).')


def config_with_options(path: str, cfg_options: dict) -> Config:
    """The config file at ``path`` with the ``--cfg-options`` overrides merged in."""
    cfg = Config.fromfile(path)
    cfg.merge_from_dict(cfg_options)
    return cfg


def run_config(args: argparse.Namespace) -> Config:
    """``args.config`` with ``--launcher``, ``--cfg-options`` and ``--work-dir`` applied in MMSeg's order (the
    launcher, then the overrides, then the flag); ``work_dir`` defaults to ``./work_dirs/<config name>``."""
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = os.path.join('./work_dirs', os.path.splitext(os.path.basename(args.config))[0])
    return cfg


def load_config(build_config: Callable[[], Config]) -> Optional[Config]:
    """``build_config()``, or None after printing a config error (a missing file or ``_base_``, a bad
    ``--cfg-options`` key ...) as one ``error:`` line on stderr."""
    try:
        return build_config()
    except ConfigError as e:
        print(f'error: {e}', file=sys.stderr)
        return None


def run_phase(build_config: Callable[[], Config], phase: str) -> int:
    """Build the config, then ``Runner.from_cfg(cfg).<phase>()``; returns the process exit code.

    A config error prints one line; a checkpoint that ``resume`` cannot load because it does not match the model
    prints the mismatched keys and what to do instead; a missing file, an unreadable or mismatching checkpoint, or
    a config key or ``type`` segkit does not know prints one line; any other failure prints a clear first line,
    then the traceback. A failure is also written to the run's text log. Ctrl-C prints (and logs) where training
    stopped and the checkpoint to resume from, and returns 130; SIGTERM (from a job scheduler, torchrun or
    ``kill``) does the same and returns 143. The process group, if any, is torn down either way.
    """
    cfg = load_config(build_config)
    if cfg is None:
        return 1
    runner = None
    terminated = []

    def on_sigterm(signum: int, frame: Any) -> None:
        terminated.append(signum)
        raise KeyboardInterrupt

    previous_handler = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        runner = Runner.from_cfg(cfg)
        getattr(runner, phase)()
    except KeyboardInterrupt:
        message = f'{phase} {"terminated (SIGTERM)" if terminated else "interrupted"}'
        if runner is not None and phase == 'train':
            last = find_latest_checkpoint(runner.work_dir)
            message += f' at iteration {runner.iter}; ' + (
                f'the last checkpoint is {last}: --resume continues from it' if last else 'no checkpoint was saved')
        if runner is not None:
            runner.logger.warning(message)  # the text log records why it ends here
        else:
            print(message, file=sys.stderr)
        return 143 if terminated else 130
    except Exception as e:
        if isinstance(e, CheckpointMismatchError) and phase == 'train' and cfg.get('resume'):
            print(resume_mismatch_message(e), file=sys.stderr)  # it names every key: no traceback needed
            return 1
        verb = {'train': 'training', 'test': 'testing', 'val': 'validation'}[phase]
        print(f'error: {verb} failed: {describe_error(e)}', file=sys.stderr)
        details = ''
        if not isinstance(e, ONE_LINE_ERRORS):  # those messages say all there is to say
            details = traceback.format_exc()
            print(details, file=sys.stderr, end='')
        write_to_log_file(f'{verb} failed: {describe_error(e)}\n{details}'.rstrip())
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0
