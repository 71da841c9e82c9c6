"""``auto_scale_lr`` (MMEngine's config key): scale the learning rate with the total batch size."""
from __future__ import annotations

from typing import Optional

from .optim_wrapper import OptimWrapper


def scale_lr(optim_wrapper: OptimWrapper, auto_scale_lr: Optional[dict], total_batch_size: int) -> Optional[float]:
    """With ``auto_scale_lr=dict(enable=True, base_batch_size=B)``, multiply every learning rate by
    ``total_batch_size / B`` (the linear scaling rule: the config's rates were tuned for a total batch of B).

    Call it before the schedulers are built, so that they start from the scaled rates. Returns the ratio, or
    None when scaling is off (the key unset, or ``enable`` False as in MMEngine's default).
    """
    if auto_scale_lr is None:
        return None
    if not isinstance(auto_scale_lr, dict):
        raise TypeError(f'auto_scale_lr must be a dict such as dict(enable=True, base_batch_size=16), '
                        f'got {auto_scale_lr!r}')
    if not auto_scale_lr.get('enable', False):
        return None
    base = auto_scale_lr.get('base_batch_size')
    if not isinstance(base, int) or base < 1:
        raise ValueError(f'auto_scale_lr.base_batch_size must be a positive int (the total batch size the '
                         f'learning rate was set for), got {base!r}')
    ratio = total_batch_size / base
    for group in optim_wrapper.param_groups:  # with paramwise settings, also the base settings that are logged
        group['lr'] *= ratio
    return ratio
