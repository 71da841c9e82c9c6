"""Normalisation layers from ``norm_cfg`` dicts, with MMCV's attribute names (``bn``, ``gn``, ``ln``), and a
SyncBatchNorm that also synchronises across CPU processes (plus BN <-> SyncBN conversion helpers)."""
from __future__ import annotations

import warnings
from typing import Callable, Optional, Tuple, Union

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from segkit.registry import UnknownTypeError


class _CpuSyncBatchNormFunction(torch.autograd.Function):
    """Training-mode batch norm over the union of every rank's batch, for CPU tensors (gloo).

    Forward all-reduces per-channel sums and counts for the mean, then sums of squared deviations for the
    variance (two passes: no cancellation error from E[x^2] - E[x]^2). Backward all-reduces the two
    per-channel gradient sums that the input gradient depends on, so each rank gets the gradient of the
    sum of all ranks' losses, as torch's CUDA SyncBatchNorm does. Statistics are computed in float32 at least.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor],
                running_mean: Optional[torch.Tensor], running_var: Optional[torch.Tensor], eps: float,
                momentum: float, group: dist.ProcessGroup) -> torch.Tensor:
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.to(torch.promote_types(x.dtype, torch.float32))
        # Cross-rank reductions in float64: exact counts, and sums that do not lose digits over large batches.
        sums = torch.cat([xf.sum(dims, dtype=torch.float64),
                          torch.tensor([xf.numel() // xf.shape[1]], dtype=torch.float64)])
        dist.all_reduce(sums, group=group)
        count = int(sums[-1].item())
        if count <= 1:
            raise ValueError(f'SyncBatchNorm needs more than 1 value per channel when training, got {count} '
                             f'over all ranks (input shape on this rank: {tuple(x.shape)})')
        mean = (sums[:-1] / count).to(xf.dtype)
        centered = xf - mean.view(shape)
        var = centered.square().sum(dims, dtype=torch.float64)
        dist.all_reduce(var, group=group)
        var = (var / count).to(xf.dtype)
        invstd = torch.rsqrt(var + eps)
        x_hat = centered * invstd.view(shape)
        if running_mean is not None:
            running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
            unbiased_var = var * (count / (count - 1))
            running_var.mul_(1 - momentum).add_(unbiased_var.to(running_var.dtype), alpha=momentum)
        ctx.save_for_backward(x_hat, invstd, weight)
        ctx.count, ctx.group, ctx.input_dtype = count, group, x.dtype
        out = x_hat if weight is None else x_hat * weight.view(shape) + bias.view(shape)
        return out.to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x_hat, invstd, weight = ctx.saved_tensors
        dims = [0] + list(range(2, x_hat.dim()))
        shape = [1, -1] + [1] * (x_hat.dim() - 2)
        grad = grad_out.to(x_hat.dtype)
        sum_grad = grad.sum(dims)
        sum_grad_x_hat = (grad * x_hat).sum(dims)
        grad_x = None
        if ctx.needs_input_grad[0]:
            global_sums = torch.cat([sum_grad, sum_grad_x_hat])
            dist.all_reduce(global_sums, group=ctx.group)
            mean_grad, mean_grad_x_hat = (global_sums / ctx.count).chunk(2)
            scale = invstd if weight is None else invstd * weight
            grad_x = (grad - mean_grad.view(shape) - x_hat * mean_grad_x_hat.view(shape)) * scale.view(shape)
            grad_x = grad_x.to(ctx.input_dtype)
        grad_weight = sum_grad_x_hat if weight is not None and ctx.needs_input_grad[1] else None
        grad_bias = sum_grad if weight is not None and ctx.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias, None, None, None, None, None


class SyncBatchNorm(nn.SyncBatchNorm):
    """``nn.SyncBatchNorm`` that also runs where torch's refuses to.

    - In a single process (no process group, or a group of one) it behaves as plain BatchNorm and warns once,
      so a config written for 8 GPUs runs on a laptop unchanged.
    - Across processes on CPU (gloo) it synchronises the batch statistics itself, giving the same outputs,
      gradients and running statistics as one process running BatchNorm on the concatenated batch.
    - On GPUs it is torch's ``nn.SyncBatchNorm``.

    State-dict keys equal ``nn.BatchNorm2d``'s.
    """

    _warned = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        group = self.process_group or (dist.group.WORLD if dist.is_available() and dist.is_initialized() else None)
        world_size = 1 if group is None else dist.get_world_size(group)
        if not self.training or world_size == 1:
            if self.training and not SyncBatchNorm._warned:
                SyncBatchNorm._warned = True
                warnings.warn('SyncBN in a single process: running it as plain BatchNorm')
            return _BatchNorm.forward(self, x)
        if x.device.type != 'cpu':
            return super().forward(x)
        self._check_input_dim(x)
        track = self.track_running_stats
        return _CpuSyncBatchNormFunction.apply(
            x, self.weight, self.bias, self.running_mean if track else None, self.running_var if track else None,
            self.eps, self._running_stats_momentum(), group)

    def _running_stats_momentum(self) -> float:
        """Count this batch and return the running-average factor (``momentum=None``: cumulative average)."""
        if not self.track_running_stats:
            return 0.0
        self.num_batches_tracked.add_(1)
        return 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum


class _BatchNormXd(_BatchNorm):
    """BatchNorm for inputs of any rank (what ``revert_sync_batchnorm`` puts back: SyncBN does not record
    whether it normalised 1-D, 2-D or 3-D maps)."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f'BatchNorm expects an input with a channel dimension, got shape {tuple(input.shape)}')


def convert_sync_batchnorm(module: nn.Module, process_group: Optional[dist.ProcessGroup] = None) -> nn.Module:
    """Replace every BatchNorm layer in ``module`` by segkit's ``SyncBatchNorm`` (the config's
    ``sync_bn='torch'``), keeping parameters, buffers and state-dict keys."""
    return _swap_batchnorm(module, lambda m: isinstance(m, _BatchNorm) and not isinstance(m, nn.SyncBatchNorm),
                           lambda m: SyncBatchNorm(m.num_features, m.eps, m.momentum, m.affine,
                                                   m.track_running_stats, process_group))


def revert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``SyncBatchNorm`` in ``module`` by plain BatchNorm, keeping parameters and buffers."""
    return _swap_batchnorm(module, lambda m: isinstance(m, nn.SyncBatchNorm),
                           lambda m: _BatchNormXd(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats))


def _swap_batchnorm(module: nn.Module, should_swap: Callable[[nn.Module], bool],
                    make: Callable[[nn.Module], nn.Module]) -> nn.Module:
    if should_swap(module):
        swapped = make(module)
        if module.affine:
            swapped.weight, swapped.bias = module.weight, module.bias
        if module.track_running_stats:
            swapped.running_mean, swapped.running_var = module.running_mean, module.running_var
            swapped.num_batches_tracked = module.num_batches_tracked
        swapped.train(module.training)
        return swapped
    for name, child in module.named_children():
        module.add_module(name, _swap_batchnorm(child, should_swap, make))
    return module


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
        raise UnknownTypeError(f'unknown norm type {layer_type!r}; choose one of {sorted(NORM_LAYERS)}', layer_type)
    layer_cls, abbr = NORM_LAYERS[layer_type]
    requires_grad = cfg.pop('requires_grad', True)
    if layer_type == 'GN':
        if 'num_groups' not in cfg:
            raise KeyError('norm_cfg of type GN needs num_groups')
        layer = layer_cls(num_channels=num_features, **cfg)
    else:
        layer = layer_cls(num_features, **cfg)
    for param in layer.parameters():
        param.requires_grad = requires_grad
    return abbr + str(postfix), layer
