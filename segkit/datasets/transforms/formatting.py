"""``PackSegInputs``: turn a results dict into the packed sample every model and metric consumes."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch

from ...registry import TRANSFORMS
from .base import BaseTransform

DEFAULT_META_KEYS = ('img_path', 'seg_map_path', 'ori_shape', 'img_shape', 'pad_shape', 'scale_factor', 'flip',
                     'flip_direction', 'reduce_zero_label')


def to_chw(img: np.ndarray) -> np.ndarray:
    """A contiguous (C, H, W) copy of an (H, W) or (H, W, C) image.

    For the usual images (up to 4 channels of uint8 or float32) ``cv2.split`` writes the planes straight into
    the CHW array: one copy, several times faster than a strided transpose. Other images (multi-band, other
    dtypes) take the transpose: ``cv2.split`` leaves the output untouched above 128 channels.
    """
    if img.ndim == 2:
        return img[None].copy()
    if img.shape[2] <= 4 and img.dtype in (np.uint8, np.float32):
        chw = np.empty((img.shape[2], *img.shape[:2]), img.dtype)
        cv2.split(img, list(chw))
        return chw
    return np.ascontiguousarray(img.transpose(2, 0, 1))


@TRANSFORMS.register_module()
class PackSegInputs(BaseTransform):
    """Pack into ``{'inputs': uint8 tensor (C, H, W) BGR, 'data_samples': dict}`` (docs/architecture.md).

    The data-sample dict holds the ``meta_keys`` present in the results and, when a label map was loaded,
    ``gt_sem_seg`` as an (H, W) tensor: uint8 when the map is 8-bit (as label PNGs are), int64 otherwise.
    Labels stay narrow until the data preprocessor widens them on the model's device: an int64 map is eight
    times the bytes to convert, to send from a loader worker through shared memory, and to copy to a GPU.
    """

    def __init__(self, meta_keys: Sequence[str] = DEFAULT_META_KEYS) -> None:
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: dict) -> dict:
        packed = {}
        if 'img' in results:
            packed['inputs'] = torch.from_numpy(to_chw(results['img']))
        data_sample = {key: results[key] for key in self.meta_keys if key in results}
        if 'gt_seg_map' in results:
            label = results['gt_seg_map']
            label = np.ascontiguousarray(label) if label.dtype == np.uint8 else label.astype(np.int64)
            data_sample['gt_sem_seg'] = torch.from_numpy(label)
        packed['data_samples'] = data_sample
        return packed

    def __repr__(self) -> str:
        return f'{type(self).__name__}(meta_keys={self.meta_keys})'
