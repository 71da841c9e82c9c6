"""``LoggerHook``: the progress line every few iterations and the metrics after each evaluation."""
from __future__ import annotations

import datetime
import json
import os
import re
import sys
from typing import Any, Dict, Optional

import torch

from segkit.dist import is_main_process
from segkit.registry import HOOKS

from .hook import Hook

# Scalars averaged over the smoothing window; the others (lr, accuracies) are shown as their latest value.
SMOOTHED = re.compile(r'.*(loss|time|data_time|grad_norm).*')


def max_memory_mb() -> int:
    """Peak memory in MiB: CUDA allocations since the last call when on a GPU, else the process's peak resident
    memory (0 where the ``resource`` module is missing, i.e. on Windows)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        peak = torch.cuda.max_memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        return int(peak / 2 ** 20)
    try:
        import resource
    except ImportError:
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return int(peak / 2 ** 20) if sys.platform == 'darwin' else int(peak / 2 ** 10)


@HOOKS.register_module()
class LoggerHook(Hook):
    """Logs training progress every ``interval`` iterations and the results of each val/test run (the metric
    itself logs its per-class table).

    A training line reads ``Iter(train) [ 50/20000]  lr: 1.0000e-02  eta: 1:02:03  time: 0.1843
    data_time: 0.0031  memory: 2311  loss: 1.2345  decode.loss_ce: ...``: losses and times are means over the
    last ``window_size`` iterations (``log_processor.window_size``, 10 by default), memory is the peak in MiB
    (CUDA allocations, or the process's resident memory on CPU). The same numbers go to the visualizer's
    backends (``scalars.json``, TensorBoard) at ``step`` = iteration. After testing, the metrics are also
    written to ``<log_dir>/<timestamp>.json``.

    Args:
        interval: iterations between training log lines.
        log_metric_by_epoch / ignore_last: accepted for MMSeg config compatibility; segkit trains by iteration
            and logs on multiples of ``interval`` only.
    """

    priority = 'BELOW_NORMAL'

    def __init__(self, interval: int = 10, log_metric_by_epoch: bool = True, ignore_last: bool = True) -> None:
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f'LoggerHook.interval must be a positive int, got {interval!r}')
        self.interval = interval
        self._eval_iters = 0

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        if not self.every_n_train_iters(runner, self.interval):
            return
        hub, window, digits = runner.message_hub, runner.log_window_size, runner.log_num_digits
        step = runner.iter + 1
        values = {}
        for key in hub.scalar_keys('train/'):
            name = key[len('train/'):]
            history = hub.get_scalar(key)
            values[name] = history.mean(window) if SMOOTHED.match(name) else history.current()
        values['memory'] = max_memory_mb()
        eta = hub.get_info('eta')
        parts = [f'Iter(train) [{str(step).rjust(len(str(runner.max_iters)))}/{runner.max_iters}]']
        parts += [f'{k}: {v:.{digits}e}' for k, v in values.items() if k.endswith('lr')]
        if eta is not None:
            parts.append(f'eta: {datetime.timedelta(seconds=int(eta))}')
        for key in ('time', 'data_time'):
            if key in values:
                parts.append(f'{key}: {values[key]:.{digits}f}')
        parts.append(f'memory: {values["memory"]}')
        parts += [f'{k}: {v:.{digits}f}' for k, v in values.items()
                  if not k.endswith('lr') and k not in ('time', 'data_time', 'memory')]
        runner.logger.info('  '.join(parts))
        scalars = dict(values, iter=step)
        if eta is not None:
            scalars['eta'] = eta
        runner.visualizer.add_scalars(scalars, step=step)

    def _before_epoch(self, runner: Any, mode: str = 'train') -> None:
        self._eval_iters = 0

    def _after_iter(self, runner: Any, batch_idx: int, data_batch: Optional[dict] = None,
                    outputs: Any = None, mode: str = 'train') -> None:
        self._eval_iters = batch_idx + 1

    def after_val_epoch(self, runner: Any, metrics: Optional[Dict[str, float]] = None) -> None:
        self._log_metrics(runner, 'val', metrics or {})

    def after_test_epoch(self, runner: Any, metrics: Optional[Dict[str, float]] = None) -> None:
        numbers = self._log_metrics(runner, 'test', metrics or {})
        if is_main_process():
            with open(os.path.join(runner.log_dir, f'{runner.timestamp}.json'), 'w', encoding='utf-8') as f:
                json.dump(numbers, f, indent=2)

    def _log_metrics(self, runner: Any, mode: str, metrics: Dict[str, Any]) -> Dict[str, float]:
        numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        for key in ('data_time', 'time'):
            hub_key = f'{mode}/{key}'
            if hub_key in runner.message_hub.scalars and self._eval_iters:
                numbers[key] = runner.message_hub.get_scalar(hub_key).mean(self._eval_iters)
        digits = runner.log_num_digits
        line = '  '.join(f'{k}: {v:.{digits}f}' for k, v in numbers.items())
        runner.logger.info(f'Iter({mode}) [{self._eval_iters}/{self._eval_iters}]  {line}')
        if mode == 'val':
            runner.visualizer.add_scalars(numbers, step=runner.iter)
        return numbers
