"""Turns a collated batch into the model's input: device move, channel flip, normalisation, padding."""
from __future__ import annotations

from numbers import Number
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from segkit.config import check_keys
from segkit.registry import MODELS

Batch = Dict[str, Any]


@MODELS.register_module()
class SegDataPreProcessor(nn.Module):
    """MMSeg's ``SegDataPreProcessor``: ``{'inputs': [uint8 (3, H, W) BGR, ...], 'data_samples': [dict, ...]}``
    -> ``{'inputs': float (N, 3, H, W), 'data_samples': [dict, ...]}``.

    In training, images are padded (bottom/right, with ``pad_val``) to ``size`` or to the batch's largest size
    rounded up to ``size_divisor`` (or just to the largest size), and ``gt_sem_seg`` (made int64) likewise with
    ``seg_pad_val``; each sample records ``img_shape``, ``pad_shape`` and ``padding_size`` (left, right, top,
    bottom). In testing, images are padded only when ``test_cfg`` gives ``size`` or ``size_divisor``, and labels
    are left alone. The returned sample dicts are new; the input ones are not changed.

    ``inputs`` may also be an already batched (N, 3, H, W) tensor; it gets the same conversion.

    Args:
        mean / std: per-channel normalisation (after the channel flip); both or neither.
        size / size_divisor: training padding target (at most one of them).
        pad_val / seg_pad_val: padding values of images and labels.
        bgr_to_rgb / rgb_to_bgr: reverse the channel order of 3-channel inputs.
        batch_augments: not supported (must be None).
        test_cfg: test-time padding, ``dict(size=...)`` or ``dict(size_divisor=...)``.
    """

    def __init__(self, mean: Optional[Sequence[Number]] = None, std: Optional[Sequence[Number]] = None,
                 size: Optional[Tuple[int, int]] = None, size_divisor: Optional[int] = None, pad_val: Number = 0,
                 seg_pad_val: Number = 255, bgr_to_rgb: bool = False, rgb_to_bgr: bool = False,
                 batch_augments: Optional[List[dict]] = None, test_cfg: Optional[dict] = None) -> None:
        super().__init__()
        if bgr_to_rgb and rgb_to_bgr:
            raise ValueError('SegDataPreProcessor: bgr_to_rgb and rgb_to_bgr cannot both be True')
        if (mean is None) != (std is None):
            raise ValueError('SegDataPreProcessor: give both mean and std, or neither')
        if size is not None and size_divisor is not None:
            raise ValueError('SegDataPreProcessor: give size or size_divisor, not both')
        if batch_augments is not None:
            raise ValueError('SegDataPreProcessor: batch_augments are not supported')
        self.size = size
        self.size_divisor = size_divisor
        self.pad_val = pad_val
        self.seg_pad_val = seg_pad_val
        self.channel_conversion = bgr_to_rgb or rgb_to_bgr
        check_keys('data_preprocessor.test_cfg', test_cfg or {}, ('size', 'size_divisor'))
        self.test_cfg = test_cfg
        self._enable_normalize = mean is not None
        # an empty buffer that follows the module across .to()/.cuda(): where to put the inputs
        self.register_buffer('_device_probe', torch.empty(0), persistent=False)
        if mean is not None:
            self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1), persistent=False)
            self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(-1, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self._device_probe.device

    def _convert(self, img: torch.Tensor) -> torch.Tensor:
        """Channel flip, float conversion and normalisation of one (C, H, W) or a batched (N, C, H, W) image."""
        img = img.to(self.device, non_blocking=True)
        if self.channel_conversion and img.shape[-3] == 3:
            img = img.flip(-3)
        img = img.float()
        if self._enable_normalize:
            img = (img - self.mean) / self.std
        return img

    def forward(self, data: Batch, training: bool = False) -> Batch:
        inputs = data['inputs']
        samples = data.get('data_samples')
        samples = None if samples is None else [dict(s) for s in samples]
        if training and samples is None:
            raise ValueError('SegDataPreProcessor: training needs data_samples (with gt_sem_seg)')
        if isinstance(inputs, torch.Tensor):
            if inputs.dim() != 4:
                raise ValueError(f'SegDataPreProcessor: a tensor input must be (N, C, H, W), '
                                 f'got {tuple(inputs.shape)}')
            inputs = list(self._convert(inputs))
        else:
            inputs = [self._convert(img) for img in inputs]

        if training:
            inputs, samples = self._pad_batch(inputs, samples, self.size, self.size_divisor, pad_labels=True)
        elif self.test_cfg and (self.test_cfg.get('size') or self.test_cfg.get('size_divisor')):
            inputs, samples = self._pad_batch(inputs, samples, self.test_cfg.get('size'),
                                              self.test_cfg.get('size_divisor'), pad_labels=False)
        else:
            sizes = {tuple(img.shape[-2:]) for img in inputs}
            if len(sizes) > 1:
                raise ValueError(f'SegDataPreProcessor: test images of one batch must share a size (or set '
                                 f'test_cfg=dict(size_divisor=...) to pad them), got {sorted(sizes)}')
            inputs = torch.stack(inputs)
        return dict(inputs=inputs, data_samples=samples)

    def _pad_batch(self, inputs: List[torch.Tensor], samples: Optional[List[dict]],
                   size: Optional[Sequence[int]], size_divisor: Optional[int],
                   pad_labels: bool) -> Tuple[torch.Tensor, Optional[List[dict]]]:
        """Pad every image (and, if ``pad_labels``, its ``gt_sem_seg``) at the bottom/right to a common size."""
        if size is not None:
            target_h, target_w = size[-2], size[-1]
        else:
            target_h = max(img.shape[-2] for img in inputs)
            target_w = max(img.shape[-1] for img in inputs)
            if size_divisor:
                target_h = -(-target_h // size_divisor) * size_divisor
                target_w = -(-target_w // size_divisor) * size_divisor
        padded = []
        for i, img in enumerate(inputs):
            h, w = img.shape[-2:]
            padding = (0, max(target_w - w, 0), 0, max(target_h - h, 0))  # left, right, top, bottom
            img = F.pad(img, padding, value=self.pad_val) if any(padding) else img
            padded.append(img)
            if samples is None:
                continue
            sample = samples[i]
            if pad_labels and 'gt_sem_seg' in sample:
                # sent as it comes (uint8 from PackSegInputs), widened on the device
                seg = sample['gt_sem_seg'].to(img.device, non_blocking=True).long()
                sample['gt_sem_seg'] = F.pad(seg, padding, value=self.seg_pad_val) if any(padding) else seg
            sample.update(img_shape=(h, w), pad_shape=tuple(img.shape[-2:]), padding_size=padding)
        return torch.stack(padded), samples
