"""``Hook``: the base class of everything the runner calls at fixed points of training and evaluation.

The event names and the priority scale are MMEngine's, so hooks written for MMSeg (overriding ``after_train_iter``,
``_after_iter``, ``before_save_checkpoint`` ...) run unchanged. Lower priority values run first; hooks of equal
priority run in registration order.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Union

PRIORITIES: Dict[str, int] = {
    'HIGHEST': 0, 'VERY_HIGH': 10, 'HIGH': 30, 'ABOVE_NORMAL': 40, 'NORMAL': 50,
    'BELOW_NORMAL': 60, 'LOW': 70, 'VERY_LOW': 90, 'LOWEST': 100,
}

EVENTS = (
    'before_run', 'after_run',
    'before_train', 'after_train', 'before_train_epoch', 'after_train_epoch',
    'before_train_iter', 'after_train_iter',
    'before_val', 'after_val', 'before_val_epoch', 'after_val_epoch', 'before_val_iter', 'after_val_iter',
    'before_test', 'after_test', 'before_test_epoch', 'after_test_epoch', 'before_test_iter', 'after_test_iter',
    'before_save_checkpoint', 'after_load_checkpoint',
)


def get_priority(priority: Union[int, str]) -> int:
    """An int priority from an int in [0, 100] or a name in ``PRIORITIES`` (e.g. ``'LOW'``)."""
    if isinstance(priority, bool):
        raise TypeError(f'hook priority must be an int or one of {list(PRIORITIES)}, got {priority!r}')
    if isinstance(priority, int):
        if not 0 <= priority <= 100:
            raise ValueError(f'hook priority must be within [0, 100], got {priority}')
        return priority
    if isinstance(priority, str) and priority.upper() in PRIORITIES:
        return PRIORITIES[priority.upper()]
    raise ValueError(f'unknown hook priority {priority!r}; use an int in [0, 100] or one of {list(PRIORITIES)}')


class Hook:
    """Does nothing at every event; subclasses override the events they need.

    The per-iteration events of the three phases all forward to ``_before_iter`` / ``_after_iter`` with
    ``mode`` set to ``'train'``, ``'val'`` or ``'test'`` (and the epoch events to ``_before_epoch`` /
    ``_after_epoch``), so a hook that treats the phases alike overrides one method.
    """

    priority: Union[int, str] = 'NORMAL'

    def before_run(self, runner: Any) -> None:
        pass

    def after_run(self, runner: Any) -> None:
        pass

    def before_train(self, runner: Any) -> None:
        pass

    def after_train(self, runner: Any) -> None:
        pass

    def before_val(self, runner: Any) -> None:
        pass

    def after_val(self, runner: Any) -> None:
        pass

    def before_test(self, runner: Any) -> None:
        pass

    def after_test(self, runner: Any) -> None:
        pass

    def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        """Called with the checkpoint dict just before it is written; may add or change entries."""

    def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        """Called with a loaded checkpoint dict before its weights and states are applied."""

    # -- epochs ------------------------------------------------------------------------------------------------
    def before_train_epoch(self, runner: Any) -> None:
        self._before_epoch(runner, mode='train')

    def before_val_epoch(self, runner: Any) -> None:
        self._before_epoch(runner, mode='val')

    def before_test_epoch(self, runner: Any) -> None:
        self._before_epoch(runner, mode='test')

    def after_train_epoch(self, runner: Any) -> None:
        self._after_epoch(runner, mode='train')

    def after_val_epoch(self, runner: Any, metrics: Optional[Dict[str, float]] = None) -> None:
        self._after_epoch(runner, mode='val')

    def after_test_epoch(self, runner: Any, metrics: Optional[Dict[str, float]] = None) -> None:
        self._after_epoch(runner, mode='test')

    # -- iterations --------------------------------------------------------------------------------------------
    def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Optional[dict] = None) -> None:
        self._before_iter(runner, batch_idx=batch_idx, data_batch=data_batch, mode='train')

    def before_val_iter(self, runner: Any, batch_idx: int, data_batch: Optional[dict] = None) -> None:
        self._before_iter(runner, batch_idx=batch_idx, data_batch=data_batch, mode='val')

    def before_test_iter(self, runner: Any, batch_idx: int, data_batch: Optional[dict] = None) -> None:
        self._before_iter(runner, batch_idx=batch_idx, data_batch=data_batch, mode='test')

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        self._after_iter(runner, batch_idx=batch_idx, data_batch=data_batch, outputs=outputs, mode='train')

    def after_val_iter(self, runner: Any, batch_idx: int, data_batch: Optional[dict] = None,
                       outputs: Optional[list] = None) -> None:
        self._after_iter(runner, batch_idx=batch_idx, data_batch=data_batch, outputs=outputs, mode='val')

    def after_test_iter(self, runner: Any, batch_idx: int, data_batch: Optional[dict] = None,
                        outputs: Optional[list] = None) -> None:
        self._after_iter(runner, batch_idx=batch_idx, data_batch=data_batch, outputs=outputs, mode='test')

    def _before_epoch(self, runner: Any, mode: str = 'train') -> None:
        pass

    def _after_epoch(self, runner: Any, mode: str = 'train') -> None:
        pass

    def _before_iter(self, runner: Any, batch_idx: int, data_batch: Optional[dict] = None,
                     mode: str = 'train') -> None:
        pass

    def _after_iter(self, runner: Any, batch_idx: int, data_batch: Optional[dict] = None,
                    outputs: Any = None, mode: str = 'train') -> None:
        pass

    # -- helpers for interval logic ----------------------------------------------------------------------------
    @staticmethod
    def every_n_train_iters(runner: Any, n: int, start: int = 0) -> bool:
        """True when the iteration being finished (``runner.iter + 1`` done) is ``start`` plus a multiple of ``n``."""
        since_start = runner.iter + 1 - start
        return n > 0 and since_start >= 0 and since_start % n == 0

    @staticmethod
    def every_n_inner_iters(batch_idx: int, n: int) -> bool:
        return n > 0 and (batch_idx + 1) % n == 0

    @staticmethod
    def is_last_train_iter(runner: Any) -> bool:
        return runner.iter + 1 == runner.max_iters
