"""``IterTimerHook``: per-iteration time, data-loading time and the estimated time left."""
from __future__ import annotations

import time
from typing import Any, Optional

from segkit.registry import HOOKS

from .hook import Hook


@HOOKS.register_module()
class IterTimerHook(Hook):
    """Logs ``{mode}/data_time`` (waiting for the batch) and ``{mode}/time`` (the whole iteration), and in
    training the ETA from the mean iteration time of this run (resumed iterations excluded)."""

    priority = 'NORMAL'

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self._start_iter = 0
        self._train_time = 0.0

    def before_train(self, runner: Any) -> None:
        self._start_iter = runner.iter
        self._train_time = 0.0

    def _before_epoch(self, runner: Any, mode: str = 'train') -> None:
        self._last = time.perf_counter()

    def _before_iter(self, runner: Any, batch_idx: int, data_batch: Optional[dict] = None,
                     mode: str = 'train') -> None:
        runner.message_hub.update_scalar(f'{mode}/data_time', time.perf_counter() - self._last)

    def _after_iter(self, runner: Any, batch_idx: int, data_batch: Optional[dict] = None,
                    outputs: Any = None, mode: str = 'train') -> None:
        now = time.perf_counter()
        iter_time = now - self._last
        self._last = now
        runner.message_hub.update_scalar(f'{mode}/time', iter_time)
        if mode == 'train':
            self._train_time += iter_time
            done_this_run = runner.iter + 1 - self._start_iter
            eta = self._train_time / done_this_run * (runner.max_iters - runner.iter - 1)
            runner.message_hub.update_info('eta', eta)
