"""``DistSamplerSeedHook``: tells the training sampler which pass over the data begins."""
from __future__ import annotations

from typing import Any

from segkit.registry import HOOKS

from .hook import Hook


@HOOKS.register_module()
class DistSamplerSeedHook(Hook):
    """Calls ``sampler.set_epoch(runner.epoch)`` before each pass, so a shuffling sampler draws a new order
    each epoch that is still the same on every rank (the order is seeded by seed + epoch)."""

    priority = 'NORMAL'

    def before_train_epoch(self, runner: Any) -> None:
        sampler = getattr(runner.train_dataloader, 'sampler', None)
        if hasattr(sampler, 'set_epoch'):
            sampler.set_epoch(runner.epoch)
