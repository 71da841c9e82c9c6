"""``ParamSchedulerHook``: steps the learning-rate / momentum schedulers after each training iteration."""
from __future__ import annotations

from typing import Any, Optional

from segkit.registry import HOOKS

from .hook import Hook


@HOOKS.register_module()
class ParamSchedulerHook(Hook):
    """Steps iteration-based schedulers after every iteration and epoch-based ones (``by_epoch=True``) after
    every pass over the training data, as MMEngine does."""

    priority = 'LOW'

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        for scheduler in runner.param_schedulers or []:
            if not getattr(scheduler, 'by_epoch', False):
                scheduler.step()

    def after_train_epoch(self, runner: Any) -> None:
        for scheduler in runner.param_schedulers or []:
            if getattr(scheduler, 'by_epoch', False):
                scheduler.step()
