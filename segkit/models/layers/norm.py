"""Normalisation layers from ``norm_cfg`` dicts, with MMCV's attribute names (``bn``, ``gn``, ``ln``)."""
from __future__ import annotations

import warnings
from typing import Tuple, Union

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F


class SyncBatchNorm(nn.SyncBatchNorm):
    """``nn.SyncBatchNorm`` that also runs where torch's refuses to.

    In a single process (no process group, or a group of one) it behaves as plain BatchNorm and warns once,
    so a config written for 8 GPUs runs on a laptop unchanged. State-dict keys equal ``nn.BatchNorm2d``'s.
    """

    _warned = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            if self.training and not SyncBatchNorm._warned:
                SyncBatchNorm._warned = True
                warnings.warn('SyncBN in a single process: running it as plain BatchNorm')
            return self._plain_batch_norm(x)
        return super().forward(x)

    def _plain_batch_norm(self, x: torch.Tensor) -> torch.Tensor:
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        use_batch_stats = self.training or not self.track_running_stats
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            use_batch_stats, momentum, self.eps)


NORM_LAYERS = {
    'BN': (nn.BatchNorm2d, 'bn'), 'BN1d': (nn.BatchNorm1d, 'bn'), 'BN2d': (nn.BatchNorm2d, 'bn'),
    'SyncBN': (SyncBatchNorm, 'bn'), 'GN': (nn.GroupNorm, 'gn'), 'LN': (nn.LayerNorm, 'ln'),
    'IN': (nn.InstanceNorm2d, 'in'),
}


def build_norm_layer(cfg: dict, num_features: int, postfix: Union[int, str] = '') -> Tuple[str, nn.Module]:
    """Build a norm layer; returns ``(name, layer)`` with MMCV's naming (``'bn' + postfix`` etc.).

    ``requires_grad=False`` freezes the affine parameters; GN needs ``num_groups``.
    """
    cfg = dict(cfg)
    layer_type = cfg.pop('type')
    if layer_type not in NORM_LAYERS:
        raise KeyError(f'unknown norm type {layer_type!r}; choose one of {sorted(NORM_LAYERS)}')
    layer_cls, abbr = NORM_LAYERS[layer_type]
    requires_grad = cfg.pop('requires_grad', True)
    if layer_type == 'GN':
        if 'num_groups' not in cfg:
            raise KeyError('norm_cfg of type GN needs num_groups')
        layer = layer_cls(num_channels=num_features, **cfg)
    elif layer_type == 'LN':
        layer = layer_cls(num_features, **cfg)
    else:
        cfg.setdefault('eps', 1e-5)
        layer = layer_cls(num_features, **cfg)
    for param in layer.parameters():
        param.requires_grad = requires_grad
    return abbr + str(postfix), layer
