"""``OptimWrapper``: one object that owns the backward pass, gradient accumulation, clipping and the update.

The runner only calls ``update_params(loss)`` (inside ``optim_context(model)``); everything that depends on
the training recipe (accumulation, clipping, mixed precision in ``AmpOptimWrapper``) lives here. The
interface and its counting rules follow MMEngine's ``OptimWrapper`` so that MMSeg configs behave the same.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from segkit.registry import OPTIM_WRAPPERS

logger = logging.getLogger('segkit')

CLIP_FUNCTIONS = {'norm': torch.nn.utils.clip_grad_norm_, 'value': torch.nn.utils.clip_grad_value_}


@OPTIM_WRAPPERS.register_module()
class OptimWrapper:
    """Wraps a ``torch.optim.Optimizer`` with gradient accumulation and clipping.

    Args:
        optimizer: the optimizer that updates the parameters.
        accumulative_counts: update the parameters once every this many ``update_params`` calls; each loss is
            divided by the number of iterations accumulated into that update.
        clip_grad: ``dict(max_norm=..., norm_type=2)`` clips by the total gradient norm
            (``torch.nn.utils.clip_grad_norm_``); ``dict(type='value', clip_value=...)`` clips each element.
            The norm before clipping is kept in ``last_grad_norm`` for logging.

    When the optimizer has several param groups (paramwise settings), ``param_groups`` carries one extra
    group, without parameters, that holds the config's base settings: schedulers move its ``lr`` along with
    the others, and ``get_lr()['base_lr']`` reports it, as MMEngine logs ``base_lr``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, accumulative_counts: int = 1,
                 clip_grad: Optional[dict] = None) -> None:
        if not isinstance(accumulative_counts, int) or accumulative_counts < 1:
            raise ValueError(f'optim_wrapper.accumulative_counts must be a positive int, got {accumulative_counts!r}')
        self.optimizer = optimizer
        self._accumulative_counts = accumulative_counts
        self.clip_grad_kwargs, self._clip_fn = self._parse_clip_grad(clip_grad)
        self.last_grad_norm: Optional[float] = None
        self._inner_count = 0
        self._max_counts = -1
        self._remainder_counts = -1
        self.base_param_settings: Optional[dict] = None
        if len(optimizer.param_groups) > 1:
            self.base_param_settings = dict(optimizer.defaults)

    @staticmethod
    def _parse_clip_grad(clip_grad: Optional[dict]) -> Tuple[Optional[dict], Optional[Callable]]:
        if clip_grad is None:
            return None, None
        if not isinstance(clip_grad, dict) or not clip_grad:
            raise TypeError(f'optim_wrapper.clip_grad must be None or a non-empty dict, got {clip_grad!r}')
        kwargs = dict(clip_grad)
        clip_type = kwargs.pop('type', 'norm')
        if clip_type not in CLIP_FUNCTIONS:
            raise ValueError(f'optim_wrapper.clip_grad.type must be "norm" or "value", got {clip_type!r}')
        needed = 'max_norm' if clip_type == 'norm' else 'clip_value'
        if needed not in kwargs:
            raise KeyError(f'optim_wrapper.clip_grad of type {clip_type!r} needs {needed!r}, got {clip_grad!r}')
        return kwargs, CLIP_FUNCTIONS[clip_type]

    # --- one training iteration -------------------------------------------------------------------------

    def update_params(self, loss: torch.Tensor, step_kwargs: Optional[dict] = None,
                      zero_kwargs: Optional[dict] = None) -> None:
        """Backward ``loss`` (scaled for accumulation) and, on an update iteration, step and zero the grads."""
        self.backward(self.scale_loss(loss))
        if self.should_update():
            self.step(**(step_kwargs or {}))
            self.zero_grad(**(zero_kwargs or {}))

    def backward(self, loss: torch.Tensor, **kwargs) -> None:
        """``loss.backward()``; counts one iteration towards the next update."""
        loss.backward(**kwargs)
        self._inner_count += 1

    def step(self, **kwargs) -> None:
        """Clip the gradients if configured, then ``optimizer.step()``."""
        if self.clip_grad_kwargs:
            self._clip_grad()
        self.optimizer.step(**kwargs)

    def zero_grad(self, **kwargs) -> None:
        self.optimizer.zero_grad(**kwargs)

    def _clip_grad(self) -> None:
        params = [p for group in self.optimizer.param_groups for p in group['params']
                  if p.requires_grad and p.grad is not None]
        if not params:
            return
        norm = self._clip_fn(params, **self.clip_grad_kwargs)
        if norm is not None:
            self.last_grad_norm = float(norm)

    @contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        """Wrap the forward pass: skips DDP's gradient all-reduce on iterations that do not update."""
        if not self.should_sync() and hasattr(model, 'no_sync'):
            with model.no_sync():
                yield
        else:
            yield

    # --- gradient accumulation bookkeeping ----------------------------------------------------------------

    def initialize_count_status(self, model: nn.Module, init_counts: int, max_counts: int) -> None:
        """Set the iteration counter (non-zero on resume) and the total, so the last, shorter accumulation
        window still triggers an update and its losses are divided by its own length."""
        self._inner_count = init_counts
        self._max_counts = max_counts
        self._remainder_counts = max_counts % self._accumulative_counts
        if init_counts % self._accumulative_counts != 0:
            logger.warning('Resuming at iteration %d, which is not a multiple of accumulative_counts=%d: the '
                           'gradients accumulated before the checkpoint are lost', init_counts,
                           self._accumulative_counts)
        if self._accumulative_counts > 1 and any(isinstance(m, _BatchNorm) for m in model.modules()):
            logger.warning('Gradient accumulation with BatchNorm layers: BN statistics still come from each '
                           'small batch, which may lower accuracy slightly')

    def should_update(self) -> bool:
        """Whether the iteration just back-propagated closes an accumulation window."""
        return self._inner_count % self._accumulative_counts == 0 or self._inner_count == self._max_counts

    def should_sync(self) -> bool:
        """Whether the coming iteration (not yet back-propagated) closes an accumulation window."""
        upcoming = self._inner_count + 1
        return upcoming % self._accumulative_counts == 0 or upcoming == self._max_counts

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """Divide ``loss`` by the number of iterations accumulated into the coming update."""
        if self._accumulative_counts == 1:
            return loss
        if self._max_counts == -1 or self._inner_count < self._max_counts - self._remainder_counts:
            return loss / self._accumulative_counts
        return loss / self._remainder_counts

    @property
    def inner_count(self) -> int:
        """Number of iterations back-propagated so far."""
        return self._inner_count

    # --- what schedulers, loggers and checkpoints read ----------------------------------------------------

    @property
    def param_groups(self) -> List[dict]:
        if self.base_param_settings is None:
            return self.optimizer.param_groups
        return self.optimizer.param_groups + [self.base_param_settings]

    @property
    def defaults(self) -> dict:
        return self.optimizer.defaults

    def get_lr(self) -> Dict[str, List[float]]:
        """``{'lr': [per group]}``, plus ``'base_lr'`` when there are several groups."""
        lrs = {'lr': [group['lr'] for group in self.optimizer.param_groups]}
        if self.base_param_settings is not None:
            lrs['base_lr'] = [self.base_param_settings['lr']]
        return lrs

    def get_momentum(self) -> Dict[str, List[float]]:
        """``{'momentum': [per group]}``: SGD's ``momentum`` or Adam's ``betas[0]`` (0 when neither exists)."""
        momentum = []
        for group in self.optimizer.param_groups:
            if 'momentum' in group:
                momentum.append(group['momentum'])
            elif 'betas' in group:
                momentum.append(group['betas'][0])
            else:
                momentum.append(0)
        return {'momentum': momentum}

    def state_dict(self) -> dict:
        """The optimizer's state dict (plus ``base_param_settings``), in MMEngine's layout."""
        state = self.optimizer.state_dict()
        if self.base_param_settings is not None:
            state['base_param_settings'] = self.base_param_settings
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        base_param_settings = state_dict.pop('base_param_settings', None)
        if base_param_settings is not None:
            self.base_param_settings = base_param_settings
        self.optimizer.load_state_dict(state_dict)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(accumulative_counts={self._accumulative_counts}, '
                f'clip_grad={self.clip_grad_kwargs}, optimizer={self.optimizer!r})')
