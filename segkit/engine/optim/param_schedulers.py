"""Learning-rate schedulers with MMEngine's names and semantics, stepped once per training iteration.

Each scheduler is active on a window of iterations ``begin <= i < end`` and several can be chained (e.g. a
``LinearLR`` warm-up followed by ``PolyLR``). They are written here rather than wrapping
``torch.optim.lr_scheduler`` because MMEngine's differ from torch's in ways configs rely on: the
``begin``/``end`` window (torch's start at construction and never stop), ``LinearLR``/``PolyLR`` reaching their
final value at ``end - 1`` rather than at ``end``, ``PolyLR``'s ``eta_min``, and an ``OptimWrapper``
(whose ``param_groups`` include the base-lr group) rather than a bare optimizer. The update formulas are
the chainable forms MMEngine uses (each step rescales the current lr), so values agree to the last bit.

Calling pattern (what the runner does): build the schedulers once before training — this applies the
value for iteration 0 — then call ``step()`` after every training iteration; the lr in the param groups is
then the one used by the next iteration's update.
"""
from __future__ import annotations

import copy
import logging
import math
from typing import List, Optional, Sequence, Union

from torch.optim import Optimizer

from segkit.registry import PARAM_SCHEDULERS

from .optim_wrapper import OptimWrapper

logger = logging.getLogger('segkit')

INF = int(1e9)  # MMEngine's "no end"
Optimizable = Union[OptimWrapper, Optimizer]


class ParamScheduler:
    """Base class: on each ``step()``, sets every param group's ``lr`` to ``_get_value()`` inside the window.

    Args:
        optimizer: an ``OptimWrapper`` or a ``torch.optim.Optimizer``.
        begin, end: the window of global steps (iterations) during which this scheduler changes the lr.
        by_epoch: whether ``begin``/``end`` count epochs; segkit trains by iterations, so configs must set
            ``by_epoch=False`` or convert (see ``build_param_schedulers``).
        verbose: log each new value.
    """

    param_name = 'lr'
    epoch_based_fields: Sequence[str] = ()  # arguments counted in epochs when by_epoch=True, besides begin/end

    def __init__(self, optimizer: Optimizable, begin: int = 0, end: int = INF, by_epoch: bool = True,
                 verbose: bool = False) -> None:
        if end <= begin:
            raise ValueError(f'{type(self).__name__}: end must be larger than begin, got begin={begin}, end={end}')
        self.optimizer = optimizer
        self.begin = begin
        self.end = end
        self.by_epoch = by_epoch
        self.verbose = verbose
        for group in optimizer.param_groups:
            group.setdefault(f'initial_{self.param_name}', group[self.param_name])
        self.base_values = [group[f'initial_{self.param_name}'] for group in optimizer.param_groups]
        self.last_step = -1  # steps taken inside the window; 0 at ``begin``
        self._global_step = -1
        self.step()

    def _get_value(self) -> List[float]:
        """The values for ``self.last_step``, computed from the groups' current values."""
        raise NotImplementedError

    def _current_values(self) -> List[float]:
        return [group[self.param_name] for group in self.optimizer.param_groups]

    def step(self) -> None:
        """Advance one iteration; inside the window, write the new values into the param groups."""
        self._global_step += 1
        if self.begin <= self._global_step < self.end:
            self.last_step += 1
            for index, (group, value) in enumerate(zip(self.optimizer.param_groups, self._get_value())):
                group[self.param_name] = value
                if self.verbose:
                    logger.info('%s: group %d %s set to %.4e at step %d', type(self).__name__, index,
                                self.param_name, value, self._global_step)
        self._last_value = self._current_values()

    def get_last_value(self) -> List[float]:
        return self._last_value

    def state_dict(self) -> dict:
        """Counters and settings (everything but the optimizer), under MMEngine's attribute names."""
        return {key: value for key, value in vars(self).items() if key != 'optimizer'}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the counters; with the optimizer's state (which holds the current lr) the schedule
        continues exactly where it stopped."""
        vars(self).update(state_dict)


@PARAM_SCHEDULERS.register_module()
class LinearLR(ParamScheduler):
    """Scale the lr linearly from ``start_factor`` to ``end_factor`` times its initial value over the
    window, reaching ``end_factor`` at iteration ``end - 1``."""

    def __init__(self, optimizer: Optimizable, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 **kwargs) -> None:
        if not 0 < start_factor <= 1:
            raise ValueError(f'LinearLR: start_factor must be in (0, 1], got {start_factor}')
        if not 0 <= end_factor <= 1:
            raise ValueError(f'LinearLR: end_factor must be in [0, 1], got {end_factor}')
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = kwargs.get('end', INF) - kwargs.get('begin', 0) - 1
        super().__init__(optimizer, **kwargs)

    def _get_value(self) -> List[float]:
        if self.last_step == 0:
            return [value * self.start_factor for value in self._current_values()]
        delta = self.end_factor - self.start_factor
        ratio = 1.0 + delta / (self.total_iters * self.start_factor + (self.last_step - 1) * delta)
        return [value * ratio for value in self._current_values()]


@PARAM_SCHEDULERS.register_module()
class PolyLR(ParamScheduler):
    """Polynomial decay to ``eta_min``, reached at iteration ``end - 1``:
    ``lr_i = (lr_0 - eta_min) * (1 - i / (end - begin - 1)) ** power + eta_min``."""

    def __init__(self, optimizer: Optimizable, eta_min: float = 0.0, power: float = 1.0, **kwargs) -> None:
        self.eta_min = eta_min
        self.power = power
        self.total_iters = kwargs.get('end', INF) - kwargs.get('begin', 0) - 1
        super().__init__(optimizer, **kwargs)

    def _get_value(self) -> List[float]:
        if self.last_step == 0:
            return self._current_values()
        ratio = (1 - 1 / (self.total_iters - self.last_step + 1)) ** self.power
        return [(value - self.eta_min) * ratio + self.eta_min for value in self._current_values()]


@PARAM_SCHEDULERS.register_module()
class CosineAnnealingLR(ParamScheduler):
    """Cosine annealing from the initial lr to ``eta_min`` (or ``eta_min_ratio`` x initial lr) over ``T_max``
    iterations (default: the window length), as in SGDR without restarts."""

    epoch_based_fields = ('T_max',)

    def __init__(self, optimizer: Optimizable, T_max: Optional[int] = None, eta_min: Optional[float] = None,
                 eta_min_ratio: Optional[float] = None, **kwargs) -> None:
        if eta_min is not None and eta_min_ratio is not None:
            raise ValueError('CosineAnnealingLR: set eta_min or eta_min_ratio, not both')
        self.T_max = T_max or (kwargs.get('end', INF) - kwargs.get('begin', 0))
        self.eta_min = 0.0 if eta_min is None and eta_min_ratio is None else eta_min
        self.eta_min_ratio = eta_min_ratio
        super().__init__(optimizer, **kwargs)

    def _get_value(self) -> List[float]:
        values = self._current_values()
        if self.last_step == 0:
            return values
        eta_mins = [self.eta_min if self.eta_min_ratio is None else base * self.eta_min_ratio
                    for base in self.base_values]
        if (self.last_step - 1 - self.T_max) % (2 * self.T_max) == 0:
            return [value + (base - eta_min) * (1 - math.cos(math.pi / self.T_max)) / 2
                    for value, base, eta_min in zip(values, self.base_values, eta_mins)]
        ratio = ((1 + math.cos(math.pi * self.last_step / self.T_max))
                 / (1 + math.cos(math.pi * (self.last_step - 1) / self.T_max)))
        return [ratio * (value - eta_min) + eta_min for value, eta_min in zip(values, eta_mins)]


@PARAM_SCHEDULERS.register_module()
class StepLR(ParamScheduler):
    """Multiply the lr by ``gamma`` every ``step_size`` iterations of the window."""

    epoch_based_fields = ('step_size',)

    def __init__(self, optimizer: Optimizable, step_size: int, gamma: float = 0.1, **kwargs) -> None:
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer, **kwargs)

    def _get_value(self) -> List[float]:
        if self.last_step == 0 or self.last_step % self.step_size != 0:
            return self._current_values()
        return [value * self.gamma for value in self._current_values()]


@PARAM_SCHEDULERS.register_module()
class MultiStepLR(ParamScheduler):
    """Multiply the lr by ``gamma`` at each milestone (iterations counted from ``begin``; a milestone
    listed twice applies ``gamma`` twice)."""

    epoch_based_fields = ('milestones',)

    def __init__(self, optimizer: Optimizable, milestones: Sequence[int], gamma: float = 0.1, **kwargs) -> None:
        self.milestones = {m: list(milestones).count(m) for m in milestones}
        self.gamma = gamma
        super().__init__(optimizer, **kwargs)

    def _get_value(self) -> List[float]:
        repeats = self.milestones.get(self.last_step, 0)
        return [value * self.gamma ** repeats for value in self._current_values()]


@PARAM_SCHEDULERS.register_module()
class ConstantLR(ParamScheduler):
    """Multiply the lr by ``factor`` from ``begin``; restore it at iteration ``end - 1``."""

    def __init__(self, optimizer: Optimizable, factor: float = 1.0 / 3, **kwargs) -> None:
        if not 0 < factor <= 1:
            raise ValueError(f'ConstantLR: factor must be in (0, 1], got {factor}')
        self.factor = factor
        self.total_iters = kwargs.get('end', INF) - kwargs.get('begin', 0) - 1
        super().__init__(optimizer, **kwargs)

    def _get_value(self) -> List[float]:
        if self.last_step == 0:
            return [value * self.factor for value in self._current_values()]
        if self.last_step == self.total_iters:
            return [value / self.factor for value in self._current_values()]
        return self._current_values()


@PARAM_SCHEDULERS.register_module()
class ExponentialLR(ParamScheduler):
    """Multiply the lr by ``gamma`` at every iteration of the window after the first."""

    def __init__(self, optimizer: Optimizable, gamma: float, **kwargs) -> None:
        self.gamma = gamma
        super().__init__(optimizer, **kwargs)

    def _get_value(self) -> List[float]:
        if self.last_step == 0:
            return self._current_values()
        return [value * self.gamma for value in self._current_values()]


def _to_iterations(cfg: dict, scheduler_cls: type, epoch_length: int) -> dict:
    """Rewrite an epoch-based scheduler config in iterations (MMEngine's ``convert_to_iter_based``)."""
    cfg['begin'] = int(cfg.get('begin', 0) * epoch_length)
    if cfg.get('end', INF) != INF:
        cfg['end'] = int(cfg['end'] * epoch_length)
    for field in scheduler_cls.epoch_based_fields:
        if cfg.get(field) is not None:
            value = cfg[field]
            cfg[field] = [v * epoch_length for v in value] if isinstance(value, (list, tuple)) else value * epoch_length
    cfg['by_epoch'] = False
    return cfg


def build_param_schedulers(optim_wrapper: Optimizable, cfgs: Union[List[dict], dict, None], max_iters: int,
                           epoch_length: Optional[int] = None) -> List[ParamScheduler]:
    """Schedulers from a config's ``param_scheduler`` (one dict or a list), applied to ``optim_wrapper``.

    Building applies iteration 0's value; the runner then calls ``step()`` on each after every training
    iteration, and saves/loads their ``state_dict()``. Epoch-based configs (``by_epoch=True``, MMEngine's
    default) need ``convert_to_iter_based=True`` and ``epoch_length`` (iterations per epoch) since segkit's
    training loop counts iterations.

    A scheduler without ``end`` gets the train loop's length in its own unit, before any conversion, as
    MMEngine's runner gives it: ``max_iters`` when iteration-based, ``max_epochs`` when epoch-based. MMEngine's
    ``IterBasedTrainLoop`` (the only train loop here) reports ``max_epochs == 1``, so an epoch-based scheduler
    without ``end`` stops after one epoch (``epoch_length`` iterations), not at ``max_iters``; a warning says so.
    """
    if cfgs is None:
        return []
    schedulers = []
    for index, cfg in enumerate([cfgs] if isinstance(cfgs, dict) else list(cfgs)):
        where = f'param_scheduler[{index}] ({cfg.get("type")!r})'
        cfg = copy.deepcopy(dict(cfg))
        convert = cfg.pop('convert_to_iter_based', False)
        if cfg.get('by_epoch', True):
            if not convert or not epoch_length:
                raise ValueError(
                    f'{where} is epoch-based (by_epoch defaults to True), but segkit trains by iterations: set '
                    f'by_epoch=False, or convert_to_iter_based=True with a known epoch length')
            if 'end' not in cfg:
                # MMEngine's runner fills the missing end with the train loop's max_epochs (1 for
                # IterBasedTrainLoop) before converting to iterations
                cfg['end'] = 1
                logger.warning(
                    '%s is epoch-based and has no end: as in MMEngine, it ends after max_epochs=1 epoch of the '
                    'train loop (IterBasedTrainLoop counts one), i.e. at iteration %d, not at max_iters=%d. Set '
                    'its end (in epochs), or by_epoch=False to run it to max_iters.', where, epoch_length, max_iters)
            cfg = _to_iterations(cfg, PARAM_SCHEDULERS.get(cfg['type']), epoch_length)
        cfg.setdefault('end', max_iters)
        try:
            schedulers.append(PARAM_SCHEDULERS.build(cfg, default_args=dict(optimizer=optim_wrapper)))
        except (TypeError, ValueError, KeyError) as e:
            raise type(e)(f'{where}: {e}') from e
    return schedulers
