"""Wrapping a model for distributed data-parallel training, and unwrapping it again."""
from __future__ import annotations

import inspect
import warnings
from typing import Any, Dict, List, Optional

import torch
import torch.nn as nn

from segkit.models.layers.norm import SyncBatchNorm, convert_sync_batchnorm
from segkit.models.segmentors.seg_tta import SegTTAModel

WRAPPER_TYPES = ('MMDistributedDataParallel', 'DistributedDataParallel', 'SegDistributedDataParallel')
# torch 2.13 renamed ``broadcast_buffers`` (no buffer broadcast before each forward) to ``forward_sync_buffers``.
_BUFFER_SYNC_ARG = ('forward_sync_buffers'
                    if 'forward_sync_buffers' in inspect.signature(nn.parallel.DistributedDataParallel).parameters
                    else 'broadcast_buffers')


class SegDistributedDataParallel(nn.parallel.DistributedDataParallel):
    """DistributedDataParallel with the segmentor's ``train_step`` / ``val_step`` / ``test_step``.

    Training runs the forward pass through the wrapper, so gradients are averaged over ranks; preprocessing,
    loss parsing and evaluation use the inner model, which needs no synchronisation.
    """

    def train_step(self, data: dict, optim_wrapper: Any) -> Dict[str, torch.Tensor]:
        with optim_wrapper.optim_context(self):
            data = self.module.data_preprocessor(data, True)
            losses = self(**data, mode='loss')
        loss, log_vars = self.module.parse_losses(losses)
        optim_wrapper.update_params(loss)
        return log_vars

    def val_step(self, data: dict) -> List[dict]:
        return self.module.val_step(data)

    def _passing_sync_batchnorm_handle(self, module: nn.Module) -> None:
        """torch rejects SyncBatchNorm in CPU models; segkit's ``SyncBatchNorm`` synchronises CPU (gloo)
        processes itself, so only other SyncBatchNorm layers are checked."""
        if not all(isinstance(m, SyncBatchNorm) for m in module.modules() if isinstance(m, nn.SyncBatchNorm)):
            super()._passing_sync_batchnorm_handle(module)

    def test_step(self, data: dict) -> List[dict]:
        return self.module.test_step(data)


def check_sync_bn(sync_bn: Optional[str]) -> None:
    """MMEngine's ``sync_bn`` values: None, ``'torch'`` or ``'mmcv'`` (segkit's SyncBatchNorm for both)."""
    if sync_bn not in (None, 'torch', 'mmcv'):
        raise ValueError(f'sync_bn must be None, "torch" or "mmcv", got {sync_bn!r}')


def unwrap_model(model: nn.Module) -> nn.Module:
    """The segmentor inside a DistributedDataParallel or test-time-augmentation wrapper (whose checkpoints
    hold the segmentor's weights); the model itself otherwise."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, SegTTAModel)):
        model = model.module
    return model


def wrap_model_for_distributed(model: nn.Module, device: torch.device, model_wrapper_cfg: Optional[dict] = None,
                               find_unused_parameters: bool = False,
                               sync_bn: Optional[str] = None) -> SegDistributedDataParallel:
    """Wrap ``model`` (already on ``device``) in :class:`SegDistributedDataParallel`, as MMSeg does.

    BatchNorm buffers are not broadcast from rank 0 each forward (``broadcast_buffers=False``). ``sync_bn='torch'``
    turns every BatchNorm layer into segkit's ``SyncBatchNorm`` (synchronised on GPUs and on CPU alike); layers
    configured as ``SyncBN`` synchronise anyway.

    Args:
        model_wrapper_cfg: MMEngine's ``model_wrapper_cfg``: an optional ``type`` (one of ``WRAPPER_TYPES``, all
            meaning this wrapper) plus DistributedDataParallel arguments such as ``find_unused_parameters``.
        find_unused_parameters: used when ``model_wrapper_cfg`` does not set it (the config's top-level key).
        sync_bn: None, ``'torch'`` or ``'mmcv'`` (the config's top-level ``sync_bn``; both values convert).
    """
    check_sync_bn(sync_bn)
    if sync_bn is not None:
        model = convert_sync_batchnorm(model)
    kwargs = dict(model_wrapper_cfg or {})
    wrapper_type = kwargs.pop('type', 'MMDistributedDataParallel')
    if wrapper_type not in WRAPPER_TYPES:
        raise ValueError(f'model_wrapper_cfg.type {wrapper_type!r} is not supported; use one of {WRAPPER_TYPES}')
    kwargs.setdefault('find_unused_parameters', find_unused_parameters)
    if 'broadcast_buffers' not in kwargs and 'forward_sync_buffers' not in kwargs:
        kwargs[_BUFFER_SYNC_ARG] = False
    device_ids = [device.index] if device.type == 'cuda' else None
    # MiT's convolutions run on channels-last maps, so the weight gradients of its 1x1 and depth-wise convs come
    # out channels-last. For those kernels that differs from the weights' own strides only on dimensions of
    # size 1 (the same bytes in the same order), which autograd's layout contract accepts but DDP's check does
    # not: it warns once that performance may suffer, while it copies the gradients into its buckets anyway.
    warnings.filterwarnings('ignore', message='Grad strides do not match bucket view strides', category=UserWarning)
    return SegDistributedDataParallel(model, device_ids=device_ids, **kwargs)
