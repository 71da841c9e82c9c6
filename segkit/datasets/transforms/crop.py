"""``RandomCrop``: a random window of ``crop_size``, optionally avoiding windows dominated by one class."""
from __future__ import annotations

from typing import Tuple, Union

import cv2
import numpy as np

from ...registry import TRANSFORMS
from .base import BaseTransform


@TRANSFORMS.register_module()
class RandomCrop(BaseTransform):
    """Crop ``img`` and the seg maps to ``crop_size`` (h, w) at a random offset (``np.random``).

    An image smaller than the crop keeps its size along that edge. With ``cat_max_ratio < 1`` up to ten
    windows are tried until one holds more than one class and none covers ``cat_max_ratio`` or more of
    its non-ignored pixels (MMSeg's rule; the last window drawn is used if none qualifies).
    """

    def __init__(self, crop_size: Union[int, Tuple[int, int]], cat_max_ratio: float = 1.,
                 ignore_index: int = 255) -> None:
        if isinstance(crop_size, int):
            crop_size = (crop_size, crop_size)
        if len(crop_size) != 2 or min(crop_size) <= 0:
            raise ValueError(f'crop_size must be a positive int or (h, w), got {crop_size!r}')
        self.crop_size = tuple(crop_size)
        self.cat_max_ratio = cat_max_ratio
        self.ignore_index = ignore_index

    def _random_window(self, shape: Tuple[int, ...]) -> Tuple[int, int, int, int]:
        margin_h = max(shape[0] - self.crop_size[0], 0)
        margin_w = max(shape[1] - self.crop_size[1], 0)
        y1 = np.random.randint(0, margin_h + 1)
        x1 = np.random.randint(0, margin_w + 1)
        return y1, y1 + self.crop_size[0], x1, x1 + self.crop_size[1]

    def _is_balanced(self, seg_map: np.ndarray) -> bool:
        if seg_map.dtype == np.uint8:
            counts = cv2.calcHist([seg_map], [0], None, [256], [0, 256]).ravel().astype(np.int64)
        else:
            counts = np.bincount(seg_map.ravel())
        if 0 <= self.ignore_index < len(counts):
            counts[self.ignore_index] = 0
        counts = counts[counts > 0]
        return len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio

    def _choose_window(self, results: dict) -> Tuple[int, int, int, int]:
        window = self._random_window(results['img'].shape)
        if self.cat_max_ratio < 1.:
            for _ in range(10):
                y1, y2, x1, x2 = window
                if self._is_balanced(results['gt_seg_map'][y1:y2, x1:x2]):
                    break
                window = self._random_window(results['img'].shape)
        return window

    def transform(self, results: dict) -> dict:
        y1, y2, x1, x2 = self._choose_window(results)
        # contiguous copies: later steps run faster on them, and the large uncropped arrays are freed
        img = np.ascontiguousarray(results['img'][y1:y2, x1:x2, ...])
        for key in results.get('seg_fields', []):
            results[key] = np.ascontiguousarray(results[key][y1:y2, x1:x2, ...])
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(crop_size={self.crop_size}, cat_max_ratio={self.cat_max_ratio})'
