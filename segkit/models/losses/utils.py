"""Helpers shared by the losses: class weights from lists or files, and weighted reduction."""
from __future__ import annotations

import json
import os
from typing import List, Optional, Sequence, Union

import numpy as np
import torch

# float32 machine epsilon: keeps a mean over zero valid pixels at 0 instead of NaN (as MMSeg does).
EPS = torch.finfo(torch.float32).eps

ClassWeight = Union[Sequence[float], str, None]


def get_class_weight(class_weight: ClassWeight) -> Optional[List[float]]:
    """Per-class loss weights from a list, or from a file: ``.npy``, ``.json`` or ``.yaml``/``.yml``.

    Pickle files are refused: loading one can run arbitrary code.
    """
    if class_weight is None:
        return None
    if isinstance(class_weight, str):
        path = class_weight
        if not os.path.isfile(path):
            raise FileNotFoundError(f'class_weight file not found: {path}')
        ext = os.path.splitext(path)[1].lower()
        if ext == '.npy':
            values = np.load(path, allow_pickle=False)
        elif ext == '.json':
            with open(path) as f:
                values = json.load(f)
        elif ext in ('.yaml', '.yml'):
            import yaml
            with open(path) as f:
                values = yaml.safe_load(f)
        else:
            raise ValueError(f'class_weight file {path}: unsupported format {ext!r}; '
                             f'use .npy, .json or .yaml (pickle is refused as unsafe)')
        try:
            return [float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1)]
        except (TypeError, ValueError) as e:
            raise ValueError(f'class_weight file {path} must hold a flat list of numbers: {e}') from e
    return [float(v) for v in class_weight]


def weight_reduce_loss(loss: torch.Tensor, weight: Optional[torch.Tensor] = None, reduction: str = 'mean',
                       avg_factor: Optional[Union[float, torch.Tensor]] = None) -> torch.Tensor:
    """Multiply ``loss`` by element weights, then reduce it.

    With ``avg_factor`` a 'mean' is ``sum / avg_factor`` (not the element count); 'none' keeps the elements.
    """
    if weight is not None:
        loss = loss * weight
    if reduction == 'none':
        return loss
    if reduction == 'sum':
        if avg_factor is not None:
            raise ValueError('avg_factor cannot be used with reduction="sum"')
        return loss.sum()
    if reduction != 'mean':
        raise ValueError(f'reduction must be "none", "mean" or "sum", got {reduction!r}')
    if avg_factor is None:
        return loss.mean()
    return loss.sum() / (avg_factor + EPS)


def validate_reduction(reduction: str, name: str = 'reduction') -> str:
    """``reduction`` if it is "none", "mean" or "sum"; a ValueError naming ``name`` otherwise."""
    if reduction not in ('none', 'mean', 'sum'):
        raise ValueError(f'{name} must be "none", "mean" or "sum", got {reduction!r}')
    return reduction


def check_reduction(reduction_override: Optional[str], default: str) -> str:
    """The reduction to use: ``reduction_override`` when given, else ``default``."""
    if reduction_override is None:
        return default
    return validate_reduction(reduction_override, 'reduction_override')
