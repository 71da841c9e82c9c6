"""``Pad``: pad the image and seg maps at the bottom/right to a fixed size or a multiple of a number."""
from __future__ import annotations

import math
from numbers import Number
from typing import Optional, Tuple, Union

import cv2
import numpy as np

from ...registry import TRANSFORMS
from .base import BaseTransform

_BORDERS = {
    'constant': cv2.BORDER_CONSTANT,
    'edge': cv2.BORDER_REPLICATE,
    'reflect': cv2.BORDER_REFLECT_101,
    'symmetric': cv2.BORDER_REFLECT,
}


def pad_to(array: np.ndarray, shape_hw: Tuple[int, int], value: Number, mode: str = 'constant') -> np.ndarray:
    """Pad ``array`` at the bottom and right up to ``shape_hw`` (an edge already longer stays as is)."""
    bottom = max(shape_hw[0] - array.shape[0], 0)
    right = max(shape_hw[1] - array.shape[1], 0)
    if not bottom and not right:
        return array
    channels = array.shape[2] if array.ndim == 3 else 1
    return cv2.copyMakeBorder(array, 0, bottom, 0, right, _BORDERS[mode], value=(value,) * min(channels, 4))


@TRANSFORMS.register_module()
class Pad(BaseTransform):
    """Pad to ``size`` (w, h), to a multiple of ``size_divisor``, or to a square (MMCV's ``Pad``).

    ``pad_val`` is a number (image; seg maps get 255) or ``dict(img=..., seg=...)``. Sets ``img_shape`` to
    the padded (h, w), ``pad_shape`` to the padded image's full shape ((h, w, c) for a colour image, as MMCV
    records it; readers take ``pad_shape[:2]``), ``pad_fixed_size`` and ``pad_size_divisor``.
    """

    def __init__(self, size: Optional[Tuple[int, int]] = None, size_divisor: Optional[int] = None,
                 pad_to_square: bool = False, pad_val: Union[Number, dict] = dict(img=0, seg=255),
                 padding_mode: str = 'constant') -> None:
        if pad_to_square:
            if size is not None:
                raise ValueError('Pad: size must be None when pad_to_square=True')
        elif (size is None) == (size_divisor is None):
            raise ValueError('Pad needs exactly one of size and size_divisor')
        if padding_mode not in _BORDERS:
            raise ValueError(f'padding_mode must be one of {sorted(_BORDERS)}, got {padding_mode!r}')
        self.size = size
        self.size_divisor = size_divisor
        self.pad_to_square = pad_to_square
        self.pad_val = dict(img=pad_val, seg=255) if isinstance(pad_val, Number) else dict(pad_val)
        self.padding_mode = padding_mode

    def _target_shape(self, shape: Tuple[int, ...]) -> Tuple[int, int]:
        h, w = shape[:2]
        if self.pad_to_square:
            h = w = max(h, w)
        if self.size_divisor is not None:
            return math.ceil(h / self.size_divisor) * self.size_divisor, \
                math.ceil(w / self.size_divisor) * self.size_divisor
        if self.size is not None:
            return self.size[1], self.size[0]
        return h, w

    def transform(self, results: dict) -> dict:
        target = self._target_shape(results['img'].shape)
        img = pad_to(results['img'], target, self.pad_val.get('img', 0), self.padding_mode)
        results['img'] = img
        results['pad_shape'] = img.shape  # all of it, channels included, as MMCV's Pad does
        results['img_shape'] = img.shape[:2]
        results['pad_fixed_size'] = self.size
        results['pad_size_divisor'] = self.size_divisor
        for key in results.get('seg_fields', []):
            if results.get(key) is not None:
                results[key] = pad_to(results[key], img.shape[:2], self.pad_val.get('seg', 255), self.padding_mode)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(size={self.size}, size_divisor={self.size_divisor}, '
                f'pad_to_square={self.pad_to_square}, pad_val={self.pad_val}, padding_mode={self.padding_mode!r})')
