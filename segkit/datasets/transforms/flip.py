"""``RandomFlip``: flip the image and its seg maps together, horizontally, vertically or both."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import cv2
import numpy as np

from ...registry import TRANSFORMS
from .base import BaseTransform

_FLIP_CODES = {'horizontal': 1, 'vertical': 0, 'diagonal': -1}  # cv2.flip's
_FLIP_AXES = {'horizontal': 1, 'vertical': 0, 'diagonal': (0, 1)}  # np.flip's


def flip(array: np.ndarray, direction: str) -> np.ndarray:
    """A flipped (contiguous) copy of an H×W or H×W×C array, of the same shape.

    ``cv2.flip`` serves images of up to 4 channels (the fast path); it would drop the channel axis of an
    H×W×1 array and refuses more than 128 channels, so multi-band images are flipped with NumPy.
    """
    if array.ndim == 2 or 1 < array.shape[2] <= 4:
        return cv2.flip(array, _FLIP_CODES[direction])
    return np.ascontiguousarray(np.flip(array, _FLIP_AXES[direction]))


@TRANSFORMS.register_module()
class RandomFlip(BaseTransform):
    """Flip with probability ``prob`` (MMCV's three modes).

    - ``prob`` float, ``direction`` str: flip that way with probability ``prob``;
    - ``prob`` float, ``direction`` list: each direction with probability ``prob / len(direction)``;
    - ``prob`` list, ``direction`` list: direction i with probability ``prob[i]``.

    Sets ``flip`` and ``flip_direction`` (None when not flipped). ``swap_seg_labels`` lists label pairs
    exchanged after a flip (e.g. left/right arm).
    """

    def __init__(self, prob: Optional[Union[float, Sequence[float]]] = None,
                 direction: Union[str, Sequence[str]] = 'horizontal',
                 swap_seg_labels: Optional[Sequence] = None) -> None:
        directions = [direction] if isinstance(direction, str) else list(direction)
        unknown = set(directions) - set(_FLIP_CODES)
        if unknown or not directions:
            raise ValueError(f'direction must be among {sorted(_FLIP_CODES)}, got {direction!r}')
        if isinstance(prob, (list, tuple)):
            if len(prob) != len(directions) or not 0 <= sum(prob) <= 1:
                raise ValueError(f'prob {prob} must give one probability per direction {directions}, '
                                 f'summing to at most 1')
            probs = [float(p) for p in prob]
        elif isinstance(prob, (float, int)) and 0 <= prob <= 1:
            probs = [float(prob) / len(directions)] * len(directions)
        else:
            raise ValueError(f'prob must be a float in [0, 1] or a list of floats, got {prob!r}')
        self.prob = prob
        self.direction = direction
        self.swap_seg_labels = swap_seg_labels
        self._choices = directions + [None]
        self._probs = probs + [1. - sum(probs)]

    def _flip_seg_map(self, seg_map: np.ndarray, direction: str) -> np.ndarray:
        flipped = flip(seg_map, direction)
        if self.swap_seg_labels:
            source = flipped.copy()
            for a, b in self.swap_seg_labels:
                flipped[source == a] = b
                flipped[source == b] = a
        return flipped

    def transform(self, results: dict) -> dict:
        direction = np.random.choice(self._choices, p=self._probs)
        results['flip'] = direction is not None
        results['flip_direction'] = direction
        if direction is not None:
            results['img'] = flip(results['img'], direction)
            for key in results.get('seg_fields', []):
                if results.get(key) is not None:
                    results[key] = self._flip_seg_map(results[key], direction)
                    results['swap_seg_labels'] = self.swap_seg_labels
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(prob={self.prob}, direction={self.direction!r})'
