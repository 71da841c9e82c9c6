"""``ParamSchedulerHook``: steps the parameter schedulers after each training iteration."""
from __future__ import annotations

from typing import Any, Optional

from segkit.registry import HOOKS

from .hook import Hook


@HOOKS.register_module()
class ParamSchedulerHook(Hook):
    """Steps every scheduler after every iteration. segkit trains by iterations, and ``build_param_schedulers``
    converts or refuses epoch-based (``by_epoch=True``) configs, so each scheduler counts iterations."""

    priority = 'LOW'

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        for scheduler in runner.param_schedulers or []:
            scheduler.step()
