"""``AmpOptimWrapper``: mixed-precision training with ``torch.autocast`` and, for float16, ``torch.amp.GradScaler``."""
from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from typing import Iterator, Optional, Union

import torch
import torch.nn as nn

from segkit.registry import OPTIM_WRAPPERS

from .optim_wrapper import OptimWrapper

logger = logging.getLogger('segkit')

AMP_DTYPES = {'float16': torch.float16, 'bfloat16': torch.bfloat16}


@OPTIM_WRAPPERS.register_module()
class AmpOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose ``optim_context`` runs the forward pass under ``torch.autocast``.

    The autocast device is the one holding the optimizer's parameters (build the wrapper after moving the
    model). float16 gradients can underflow, so their loss is multiplied by a ``GradScaler`` scale and the
    gradients divided back before clipping and the update; steps with inf/NaN gradients are skipped.
    bfloat16 has float32's range and needs no scaler.

    Args:
        loss_scale: ``'dynamic'`` (grow/shrink the scale as torch's GradScaler does), a number (a fixed scale)
            or a dict of ``GradScaler`` arguments (``init_scale``, ``growth_interval``, ...). Used for float16 only.
        dtype: ``'float16'``, ``'bfloat16'`` or None for the device's autocast default (float16 on CUDA,
            bfloat16 on CPU).
        **kwargs: ``OptimWrapper`` arguments (``optimizer``, ``accumulative_counts``, ``clip_grad``).
    """

    def __init__(self, loss_scale: Union[str, float, dict] = 'dynamic',
                 dtype: Union[str, torch.dtype, None] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.device_type = next(p for g in self.optimizer.param_groups for p in g['params']).device.type
        self.cast_dtype = self._resolve_dtype(dtype)
        self._fixed_scale: Optional[float] = None
        self.loss_scaler: Optional[torch.amp.GradScaler] = None
        if self.cast_dtype == torch.float16:
            self.loss_scaler = self._build_loss_scaler(loss_scale)
        logger.info('AmpOptimWrapper: autocast to %s on %s, %s', self.cast_dtype, self.device_type,
                    'with loss scaling' if self.loss_scaler else 'no loss scaling')

    def _resolve_dtype(self, dtype: Union[str, torch.dtype, None]) -> torch.dtype:
        if dtype is None:
            dtype = torch.get_autocast_dtype(self.device_type)
        elif isinstance(dtype, str):
            if dtype not in AMP_DTYPES:
                raise ValueError(f'optim_wrapper.dtype must be one of {sorted(AMP_DTYPES)} or None, got {dtype!r}')
            dtype = AMP_DTYPES[dtype]
        if dtype not in AMP_DTYPES.values():
            raise ValueError(f'optim_wrapper.dtype must be one of {sorted(AMP_DTYPES)} or None, got {dtype!r}')
        self._check_autocast_support(dtype)
        return dtype

    def _check_autocast_support(self, dtype: torch.dtype) -> None:
        """Fail now, with the reason, if this torch cannot autocast to ``dtype`` on the parameters' device
        (older torch silently disables autocast instead, which would train in float32 unnoticed)."""
        problem = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                with torch.autocast(self.device_type, dtype=dtype):
                    if not (torch.is_autocast_enabled(self.device_type)
                            and torch.get_autocast_dtype(self.device_type) == dtype):
                        problem = 'autocast was disabled'
        except (RuntimeError, ValueError) as e:
            problem = str(e)
        if problem is not None:
            raise RuntimeError(f'AmpOptimWrapper: torch {torch.__version__} cannot autocast to {dtype} on '
                               f'{self.device_type} ({problem}); set optim_wrapper.dtype to another type '
                               f'(e.g. "bfloat16" on CPU) or use type="OptimWrapper"')

    def _build_loss_scaler(self, loss_scale: Union[str, float, dict]) -> torch.amp.GradScaler:
        if loss_scale == 'dynamic':
            return torch.amp.GradScaler(self.device_type)
        if isinstance(loss_scale, (int, float)) and not isinstance(loss_scale, bool):
            self._fixed_scale = float(loss_scale)
            return torch.amp.GradScaler(self.device_type, init_scale=self._fixed_scale)
        if isinstance(loss_scale, dict):
            return torch.amp.GradScaler(self.device_type, **loss_scale)
        raise TypeError(f'optim_wrapper.loss_scale must be "dynamic", a number or a dict, got {loss_scale!r}')

    def backward(self, loss: torch.Tensor, **kwargs) -> None:
        if self.loss_scaler is not None:
            loss = self.loss_scaler.scale(loss)
        super().backward(loss, **kwargs)

    def step(self, **kwargs) -> None:
        if self.loss_scaler is None:
            super().step(**kwargs)
            return
        if self.clip_grad_kwargs:
            self.loss_scaler.unscale_(self.optimizer)
            self._clip_grad()
        self.loss_scaler.step(self.optimizer, **kwargs)
        self.loss_scaler.update(self._fixed_scale)

    @contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        with super().optim_context(model), torch.autocast(self.device_type, dtype=self.cast_dtype):
            yield

    def state_dict(self) -> dict:
        """The optimizer's state dict plus the scaler's under ``loss_scaler`` (MMEngine's layout)."""
        state = super().state_dict()
        if self.loss_scaler is not None:
            state['loss_scaler'] = self.loss_scaler.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        scaler_state = state_dict.pop('loss_scaler', None)
        if scaler_state is not None and self.loss_scaler is not None:
            self.loss_scaler.load_state_dict(scaler_state)
        elif scaler_state is not None:
            logger.info('Checkpoint has a loss-scaler state, unused by %s training', self.cast_dtype)
        super().load_state_dict(state_dict)
