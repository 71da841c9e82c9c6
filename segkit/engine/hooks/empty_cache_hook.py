"""``EmptyCacheHook``: releases PyTorch's cached, unused GPU memory at chosen points."""
from __future__ import annotations

from typing import Any, Optional

import torch

from segkit.registry import HOOKS

from .hook import Hook


@HOOKS.register_module()
class EmptyCacheHook(Hook):
    """Calls ``torch.cuda.empty_cache()`` after each epoch (train, val and test) and, when asked, before each
    epoch and after each iteration; useful when input sizes vary and the cache fragments. A no-op without CUDA."""

    priority = 'NORMAL'

    def __init__(self, before_epoch: bool = False, after_epoch: bool = True, after_iter: bool = False) -> None:
        self._do_before_epoch = before_epoch
        self._do_after_epoch = after_epoch
        self._do_after_iter = after_iter

    @staticmethod
    def _empty_cache() -> None:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _before_epoch(self, runner: Any, mode: str = 'train') -> None:
        if self._do_before_epoch:
            self._empty_cache()

    def _after_epoch(self, runner: Any, mode: str = 'train') -> None:
        if self._do_after_epoch:
            self._empty_cache()

    def _after_iter(self, runner: Any, batch_idx: int, data_batch: Optional[dict] = None,
                    outputs: Any = None, mode: str = 'train') -> None:
        if self._do_after_iter:
            self._empty_cache()
