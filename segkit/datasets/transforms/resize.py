"""Resizing: to a fixed scale or factor (``Resize``), to a random scale (``RandomResize``) and to a size
divisible by a number (``ResizeToMultiple``). Label maps always use nearest-neighbour interpolation."""
from __future__ import annotations

import math
from numbers import Number
from typing import Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from ...registry import TRANSFORMS
from .base import BaseTransform

INTERPOLATIONS = {
    'nearest': cv2.INTER_NEAREST,
    'bilinear': cv2.INTER_LINEAR,
    'bicubic': cv2.INTER_CUBIC,
    'area': cv2.INTER_AREA,
    'lanczos': cv2.INTER_LANCZOS4,
}

Scale = Union[int, Tuple[int, int]]


def _is_pair(value) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, Number) for v in value)


def scale_size(size_wh: Tuple[int, int], factor: Union[float, Tuple[float, float]]) -> Tuple[int, int]:
    """(w, h) multiplied by ``factor`` and rounded half up, as MMCV does."""
    fw, fh = (factor, factor) if isinstance(factor, Number) else factor
    w, h = size_wh
    return int(w * float(fw) + 0.5), int(h * float(fh) + 0.5)


def rescaled_size(size_wh: Tuple[int, int], scale: Union[float, Sequence[int]]) -> Tuple[int, int]:
    """MMCV's keep-ratio rule: a number is a factor; a pair makes the image as large as possible with its
    long edge at most ``max(scale)`` and its short edge at most ``min(scale)``."""
    w, h = size_wh
    if isinstance(scale, Number):
        if scale <= 0:
            raise ValueError(f'invalid scale {scale}: must be positive')
        factor = float(scale)
    else:
        factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return scale_size((w, h), factor)


def _resize(array: np.ndarray, size_wh: Tuple[int, int], interpolation: str) -> np.ndarray:
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f'interpolation must be one of {sorted(INTERPOLATIONS)}, got {interpolation!r}')
    return cv2.resize(array, size_wh, interpolation=INTERPOLATIONS[interpolation])


@TRANSFORMS.register_module()
class Resize(BaseTransform):
    """Resize ``img`` and every map in ``seg_fields`` to ``scale`` (w, h), or by ``scale_factor``.

    With ``keep_ratio=True`` the aspect ratio is kept (MMCV's rescale rule, see :func:`rescaled_size`).
    ``scale`` wins when both are given. Sets ``img_shape``, ``scale`` (w, h), ``scale_factor``
    (w_scale, h_scale) and ``keep_ratio``.
    """

    def __init__(self, scale: Optional[Scale] = None, scale_factor: Optional[Union[float, Tuple[float, float]]] = None,
                 keep_ratio: bool = False, backend: str = 'cv2', interpolation: str = 'bilinear') -> None:
        if scale is None and scale_factor is None:
            raise ValueError('Resize needs scale or scale_factor')
        if backend != 'cv2':
            raise ValueError(f"Resize supports backend='cv2' only, got {backend!r}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f'interpolation must be one of {sorted(INTERPOLATIONS)}, got {interpolation!r}')
        self.scale = (scale, scale) if isinstance(scale, int) else scale
        if scale_factor is not None and not (isinstance(scale_factor, Number) or _is_pair(scale_factor)):
            raise TypeError(f'scale_factor must be a number or a (w, h) pair, got {scale_factor!r}')
        self.scale_factor = scale_factor
        self.keep_ratio = keep_ratio
        self.interpolation = interpolation

    def _target_size(self, array: np.ndarray, scale) -> Tuple[int, int]:
        h, w = array.shape[:2]
        if self.keep_ratio:
            return rescaled_size((w, h), scale)
        return int(scale[0]), int(scale[1])

    def transform(self, results: dict) -> dict:
        img = results['img']
        h, w = img.shape[:2]
        scale = tuple(self.scale) if self.scale else scale_size((w, h), self.scale_factor)
        results['scale'] = scale
        new_w, new_h = self._target_size(img, scale)
        img = _resize(img, (new_w, new_h), self.interpolation)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['scale_factor'] = (new_w / w, new_h / h)
        results['keep_ratio'] = self.keep_ratio
        for key in results.get('seg_fields', []):
            if results.get(key) is not None:
                results[key] = _resize(results[key], self._target_size(results[key], scale), 'nearest')
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(scale={self.scale}, scale_factor={self.scale_factor}, '
                f'keep_ratio={self.keep_ratio}, interpolation={self.interpolation!r})')


@TRANSFORMS.register_module()
class RandomResize(BaseTransform):
    """Resize to a random scale drawn with ``np.random``, then apply ``resize_type`` (default ``Resize``).

    - ``scale=(w, h)`` with ``ratio_range=(lo, hi)``: one ratio r ~ U(lo, hi); target ``(int(w*r), int(h*r))``.
    - ``scale=[(w1, h1), (w2, h2)]``: each edge drawn as an integer between the two bounds.

    Other keyword arguments (``keep_ratio``, ``interpolation``, ...) go to the resize transform.
    """

    def __init__(self, scale: Union[Tuple[int, int], Sequence[Tuple[int, int]]],
                 ratio_range: Optional[Tuple[float, float]] = None, resize_type: str = 'Resize',
                 **resize_kwargs) -> None:
        if _is_pair(scale):
            if ratio_range is None or len(ratio_range) != 2 or ratio_range[0] > ratio_range[1]:
                raise ValueError(f'RandomResize(scale={scale}) needs ratio_range=(min, max), got {ratio_range}')
        elif not (isinstance(scale, (list, tuple)) and len(scale) == 2 and all(_is_pair(s) for s in scale)):
            raise ValueError(f'RandomResize scale must be (w, h) or two (w, h) bounds, got {scale!r}')
        self.scale = scale
        self.ratio_range = ratio_range
        self.resize = TRANSFORMS.build(dict(type=resize_type, scale=0, **resize_kwargs))

    def _random_scale(self) -> Tuple[int, int]:
        if _is_pair(self.scale):
            lo, hi = self.ratio_range
            ratio = np.random.random_sample() * (hi - lo) + lo
            return int(self.scale[0] * ratio), int(self.scale[1] * ratio)
        (w1, h1), (w2, h2) = self.scale
        return (int(np.random.randint(min(w1, w2), max(w1, w2) + 1)),
                int(np.random.randint(min(h1, h2), max(h1, h2) + 1)))

    def transform(self, results: dict) -> dict:
        self.resize.scale = self._random_scale()
        return self.resize(results)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(scale={self.scale}, ratio_range={self.ratio_range}, resize={self.resize!r})'


@TRANSFORMS.register_module()
class ResizeToMultiple(BaseTransform):
    """Resize ``img`` (and seg maps) up to the next multiple of ``size_divisor`` in each dimension.

    Sets ``img_shape`` and ``pad_shape`` to the new size.
    """

    def __init__(self, size_divisor: int = 32, interpolation: Optional[str] = None) -> None:
        self.size_divisor = size_divisor
        self.interpolation = interpolation

    def _up_to_multiple(self, array: np.ndarray, interpolation: str) -> np.ndarray:
        h, w = array.shape[:2]
        d = self.size_divisor
        return _resize(array, (math.ceil(w / d) * d, math.ceil(h / d) * d), interpolation)

    def transform(self, results: dict) -> dict:
        img = self._up_to_multiple(results['img'], self.interpolation or 'bilinear')
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['pad_shape'] = img.shape[:2]
        for key in results.get('seg_fields', []):
            results[key] = self._up_to_multiple(results[key], 'nearest')
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(size_divisor={self.size_divisor}, interpolation={self.interpolation})'
