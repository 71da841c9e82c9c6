"""``F.interpolate`` wrapper used by heads and segmentors."""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F


def resize(x: torch.Tensor, size: Optional[Sequence[int]] = None, scale_factor: Optional[float] = None,
           mode: str = 'bilinear', align_corners: Optional[bool] = None) -> torch.Tensor:
    if size is not None:
        size = tuple(int(s) for s in size)
        if tuple(x.shape[-2:]) == size:
            return x
    if mode == 'nearest':
        align_corners = None
    return F.interpolate(x, size, scale_factor, mode, align_corners)
