"""``DistSamplerSeedHook``: tells the training sampler which pass over the data the run starts in."""
from __future__ import annotations

from typing import Any

from segkit.registry import HOOKS

from .hook import Hook


@HOOKS.register_module()
class DistSamplerSeedHook(Hook):
    """Calls ``sampler.set_epoch(runner.epoch)`` once, before training starts (``before_train_epoch`` fires once
    per run in the iteration-based loop, as in MMEngine), so a resumed run shuffles as the interrupted pass did.
    Later passes need no hook: the loop calls ``set_epoch`` itself when a finite sampler's pass ends. The order is
    seeded by seed + epoch, so it differs per pass and is the same on every rank."""

    priority = 'NORMAL'

    def before_train_epoch(self, runner: Any) -> None:
        sampler = getattr(runner.train_dataloader, 'sampler', None)
        if hasattr(sampler, 'set_epoch'):
            sampler.set_epoch(runner.epoch)
