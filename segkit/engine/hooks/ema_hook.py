"""``EMAHook``: an exponential moving average of the weights, evaluated and saved in place of the raw weights."""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional

import torch

from segkit.registry import HOOKS

from ..model_wrapper import unwrap_model
from .hook import Hook


def _constant(momentum: float, gamma: Optional[float]) -> Callable[[int], float]:
    return lambda steps: momentum


def _exp_momentum(momentum: float, gamma: Optional[float]) -> Callable[[int], float]:
    gamma = 2000 if gamma is None else gamma
    return lambda steps: (1 - momentum) * math.exp(-(1 + steps) / gamma) + momentum


def _annealing(momentum: float, gamma: Optional[float]) -> Callable[[int], float]:
    gamma = 100 if gamma is None else gamma
    return lambda steps: max(momentum, gamma / (gamma + steps))


# How much of the new weights each update takes, as a function of the number of updates so far.
MOMENTUM_SCHEDULES = {
    'ExponentialMovingAverage': _constant,  # fixed momentum
    'ExpMomentumEMA': _exp_momentum,  # large early on, decaying to momentum (MMDet/MMYOLO's schedule)
    'MomentumAnnealingEMA': _annealing,  # max(momentum, gamma / (gamma + steps))
}


@HOOKS.register_module()
class EMAHook(Hook):
    """Keeps ``ema = (1 - m) * ema + m * weights`` after every training iteration.

    Validation and testing run with the averaged weights swapped in (and swapped back afterwards). A saved
    checkpoint's ``state_dict`` holds the averaged weights, so it is the model to deploy; the raw weights go
    under ``ema_state_dict`` (``module.<name>`` keys, MMEngine's layout) so that resuming continues training the
    raw weights and the average alike. Loading a checkpoint without resuming starts the average from its weights.

    Args:
        ema_type: ``'ExponentialMovingAverage'`` (fixed momentum), ``'ExpMomentumEMA'`` or
            ``'MomentumAnnealingEMA'``.
        momentum: weight of the new value in each update (small: 2e-4 is MMEngine's default).
        gamma: time constant of the momentum schedule (``ExpMomentumEMA``: 2000, ``MomentumAnnealingEMA``: 100).
        interval: update every this many iterations (weights are copied on the first update).
        update_buffers: also average floating-point buffers (BatchNorm statistics); otherwise validation uses
            the model's own buffers.
        begin_iter: until this iteration the average simply follows the weights.
        strict_load: when starting the average from a loaded checkpoint, require every averaged key in it.
    """

    priority = 'NORMAL'

    def __init__(self, ema_type: str = 'ExponentialMovingAverage', momentum: float = 0.0002,
                 gamma: Optional[float] = None, interval: int = 1, update_buffers: bool = False,
                 begin_iter: int = 0, strict_load: bool = False) -> None:
        if ema_type not in MOMENTUM_SCHEDULES:
            raise KeyError(f'EMAHook.ema_type {ema_type!r} is not supported; use one of {sorted(MOMENTUM_SCHEDULES)}')
        if not 0.0 < momentum < 1.0:
            raise ValueError(f'EMAHook.momentum must be in (0, 1), got {momentum}')
        self.momentum_at = MOMENTUM_SCHEDULES[ema_type](momentum, gamma)
        self.interval = interval
        self.update_buffers = update_buffers
        self.begin_iter = begin_iter
        self.strict_load = strict_load
        self.steps = 0
        self.source: Dict[str, torch.Tensor] = {}
        self.average: Dict[str, torch.Tensor] = {}

    def before_run(self, runner: Any) -> None:
        model = unwrap_model(runner.model)
        tensors = dict(model.named_parameters())
        if self.update_buffers:
            tensors.update(model.named_buffers())
        self.source = {name: t for name, t in tensors.items() if t.dtype.is_floating_point}
        self.average = {name: t.detach().clone() for name, t in self.source.items()}
        self.steps = 0

    @torch.no_grad()
    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        if runner.iter + 1 < self.begin_iter or self.steps == 0:
            for name, value in self.source.items():
                self.average[name].copy_(value)
        elif self.steps % self.interval == 0:
            momentum = self.momentum_at(self.steps)
            for name, value in self.source.items():
                self.average[name].lerp_(value, momentum)
        if runner.iter + 1 >= self.begin_iter:
            self.steps += 1

    @torch.no_grad()
    def _swap_weights(self) -> None:
        for name, value in self.source.items():
            held = value.detach().clone()
            value.copy_(self.average[name])
            self.average[name].copy_(held)

    def before_val_epoch(self, runner: Any) -> None:
        self._swap_weights()

    def after_val_epoch(self, runner: Any, metrics: Optional[Dict[str, float]] = None) -> None:
        self._swap_weights()

    def before_test_epoch(self, runner: Any) -> None:
        self._swap_weights()

    def after_test_epoch(self, runner: Any, metrics: Optional[Dict[str, float]] = None) -> None:
        self._swap_weights()

    def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        state = checkpoint['state_dict']
        raw = {f'module.{name}': state[name] for name in self.average}
        for name, value in self.average.items():
            state[name] = value.detach().clone()
        checkpoint['ema_state_dict'] = dict(raw, steps=torch.tensor(self.steps))

    @torch.no_grad()
    def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        state = checkpoint['state_dict']
        ema_state = checkpoint.get('ema_state_dict')
        if ema_state is not None and runner.resuming:
            for name in self.average:
                self.average[name].copy_(state[name])
                state[name] = ema_state[f'module.{name}']
            self.steps = int(ema_state['steps'])
            return
        missing = [name for name in self.average if name not in state]
        if missing and self.strict_load:
            raise KeyError(f'EMAHook: the checkpoint lacks {len(missing)} averaged weights, e.g. {missing[:5]}')
        for name, value in self.average.items():
            if name in state and state[name].shape == value.shape:
                value.copy_(state[name])
