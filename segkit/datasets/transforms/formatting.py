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


@TRANSFORMS.register_module()
class PackSegInputs(BaseTransform):
    """Pack into ``{'inputs': uint8 tensor (C, H, W) BGR, 'data_samples': dict}`` (docs/architecture.md).

    The data-sample dict holds the ``meta_keys`` present in the results and, when a label map was loaded,
    ``gt_sem_seg`` as an int64 (H, W) tensor.
    """

    def __init__(self, meta_keys: Sequence[str] = DEFAULT_META_KEYS) -> None:
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: dict) -> dict:
        packed = {}
        if 'img' in results:
            img = results['img']
            # per-channel planes stacked: a faster HWC -> CHW copy than a strided transpose
            planes = [img] if img.ndim == 2 else cv2.split(img)
            packed['inputs'] = torch.from_numpy(np.stack(planes))
        data_sample = {key: results[key] for key in self.meta_keys if key in results}
        if 'gt_seg_map' in results:
            data_sample['gt_sem_seg'] = torch.from_numpy(results['gt_seg_map'].astype(np.int64))
        packed['data_samples'] = data_sample
        return packed

    def __repr__(self) -> str:
        return f'{type(self).__name__}(meta_keys={self.meta_keys})'
