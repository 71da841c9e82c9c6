"""``PhotoMetricDistortion``: MMSeg's random brightness, contrast, saturation and hue, done with lookup tables.

MMSeg converts the whole image to float32 and back for every step. Each step here is a per-value map of
uint8 to uint8, so it is computed once on the 256 possible values (with MMSeg's exact float32 arithmetic)
and applied with ``cv2.LUT`` (or a saturating add): the output is identical, the cost a fraction.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from ...registry import TRANSFORMS
from .base import BaseTransform

_VALUES = np.arange(256, dtype=np.float32)
_IDENTITY = np.arange(256, dtype=np.uint8)


def _affine_table(alpha: float = 1., beta: float = 0.) -> np.ndarray:
    """uint8 table of clip(v * alpha + beta, 0, 255), truncated like MMSeg's ``astype(np.uint8)``."""
    return np.clip(_VALUES * alpha + beta, 0, 255).astype(np.uint8)


def _apply_table(img: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[img]``; a table that is a saturating integer shift (most brightness tables) runs as one
    vectorised add or subtract, several times faster than ``cv2.LUT``."""
    shift = int(table[128]) - 128
    if np.array_equal(table, np.clip(_IDENTITY.astype(np.int16) + shift, 0, 255)):
        if shift >= 0:
            return cv2.add(img, (shift,) * 4)
        return cv2.subtract(img, (-shift,) * 4)
    return cv2.LUT(img, table)


def _apply_to_channel(hsv: np.ndarray, channel: int, table: np.ndarray) -> np.ndarray:
    """Apply a table to one channel of a freshly converted HSV image, in place."""
    cv2.insertChannel(cv2.LUT(cv2.extractChannel(hsv, channel), table), hsv, channel)
    return hsv


@TRANSFORMS.register_module()
class PhotoMetricDistortion(BaseTransform):
    """Randomly distort the colours of ``img`` (uint8 BGR), each step with probability 0.5, in MMSeg's order:

    1. brightness: add ``U(-brightness_delta, brightness_delta)``;
    2. contrast (when the coin picked mode 1): multiply by ``U(*contrast_range)``;
    3. saturation: in HSV, multiply S by ``U(*saturation_range)``;
    4. hue: in HSV, shift H (0..179) by ``randint(-hue_delta, hue_delta)`` modulo 180;
    5. contrast (when the coin picked mode 0).

    Random numbers come from ``np.random`` in the same sequence as MMSeg, so a seeded run matches it.
    The image stays uint8 of the same shape.
    """

    def __init__(self, brightness_delta: int = 32, contrast_range: Sequence[float] = (0.5, 1.5),
                 saturation_range: Sequence[float] = (0.5, 1.5), hue_delta: int = 18) -> None:
        self.brightness_delta = brightness_delta
        self.contrast_lower, self.contrast_upper = contrast_range
        self.saturation_lower, self.saturation_upper = saturation_range
        self.hue_delta = hue_delta

    def _brightness(self, img: np.ndarray) -> np.ndarray:
        if np.random.randint(2):
            return _apply_table(img, _affine_table(beta=np.random.uniform(-self.brightness_delta,
                                                                          self.brightness_delta)))
        return img

    def _contrast(self, img: np.ndarray) -> np.ndarray:
        if np.random.randint(2):
            return _apply_table(img, _affine_table(alpha=np.random.uniform(self.contrast_lower,
                                                                           self.contrast_upper)))
        return img

    def _saturation(self, img: np.ndarray) -> np.ndarray:
        if np.random.randint(2):
            table = _affine_table(alpha=np.random.uniform(self.saturation_lower, self.saturation_upper))
            hsv = _apply_to_channel(cv2.cvtColor(img, cv2.COLOR_BGR2HSV), 1, table)
            return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
        return img

    def _hue(self, img: np.ndarray) -> np.ndarray:
        if np.random.randint(2):
            shift = np.random.randint(-self.hue_delta, self.hue_delta)
            table = ((np.arange(256) + shift) % 180).astype(np.uint8)
            hsv = _apply_to_channel(cv2.cvtColor(img, cv2.COLOR_BGR2HSV), 0, table)
            return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
        return img

    def transform(self, results: dict) -> dict:
        img = results['img']
        if img.dtype != np.uint8:
            raise TypeError(f'PhotoMetricDistortion needs a uint8 image, got {img.dtype} '
                            f'(drop to_float32 from LoadImageFromFile)')
        img = self._brightness(img)
        contrast_first = np.random.randint(2) == 1
        if contrast_first:
            img = self._contrast(img)
        img = self._hue(self._saturation(img))
        if not contrast_first:
            img = self._contrast(img)
        results['img'] = img
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(brightness_delta={self.brightness_delta}, '
                f'contrast_range=({self.contrast_lower}, {self.contrast_upper}), '
                f'saturation_range=({self.saturation_lower}, {self.saturation_upper}), '
                f'hue_delta={self.hue_delta})')
