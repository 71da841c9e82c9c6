"""Backbone (+ neck) + decode head (+ auxiliary heads): MMSeg's ``EncoderDecoder``."""
from __future__ import annotations

from typing import Dict, List, Optional, Union

import torch
import torch.nn as nn

from segkit.config import check_keys
from segkit.registry import MODELS
from ..builder import build_module
from .base import BaseSegmentor

# Windows per forward pass in slide inference. One, as MMSeg: on CPU, batching SegFormer-B0's three 1024x1024
# windows of a 1024x2048 image took 4.7 s against 3.9 s one by one (docs/benchmark.md); larger batches may pay
# on a GPU with small crops (set test_cfg.slide_batch_size).
DEFAULT_SLIDE_BATCH_SIZE = 1
TEST_CFG_KEYS = ('mode', 'crop_size', 'stride', 'slide_batch_size', 'autocast_dtype')
Part = Union[dict, nn.Module]


def add_prefix(losses: Dict[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    return {f'{prefix}.{name}': value for name, value in losses.items()}


@MODELS.register_module()
class EncoderDecoder(BaseSegmentor):
    """Encoder-decoder segmentor; the auxiliary heads only add training losses.

    Args:
        backbone / neck / decode_head: the parts, as configs or as built modules.
        auxiliary_head: a head (config or module) or a list of them (losses prefixed ``aux.`` or ``aux_0.``,
            ``aux_1.``...).
        train_cfg: passed to the heads' ``loss``.
        test_cfg: ``mode='whole'`` (default) or ``mode='slide'`` with ``crop_size=(h, w)`` and ``stride=(h, w)``;
            ``slide_batch_size`` (segkit) is how many windows run in one forward pass (default 1);
            ``autocast_dtype`` (segkit, opt-in): ``'bfloat16'`` or ``'float16'`` inference, see
            :class:`BaseSegmentor`.
            A dict or a Config-like object read with ``.get``; another key is a KeyError.
        data_preprocessor / init_cfg: see :class:`BaseSegmentor`.
        pretrained: a backbone checkpoint path (deprecated MMSeg argument, handed to the backbone).
    """

    def __init__(self, backbone: Part, decode_head: Union[Part, List[Part]], neck: Optional[Part] = None,
                 auxiliary_head: Union[Part, List[Part], None] = None, train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None, data_preprocessor: Optional[dict] = None,
                 pretrained: Optional[str] = None, init_cfg: Optional[dict] = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if pretrained is not None:
            if isinstance(backbone, nn.Module):
                raise ValueError('pretrained= is handed to the backbone config; with a built backbone, load its '
                                 'weights before passing it in (e.g. segkit.checkpoint.load_checkpoint)')
            if backbone.get('pretrained') is not None:
                raise ValueError('both the segmentor and its backbone set pretrained weights')
            backbone = {**backbone, 'pretrained': pretrained}
        self.backbone = build_module(backbone)
        if neck is not None:
            self.neck = build_module(neck)
        self._init_decode_head(decode_head)
        self._init_auxiliary_head(auxiliary_head)
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg if test_cfg is not None else {}
        check_keys('model.test_cfg', self.test_cfg, TEST_CFG_KEYS)
        if self.test_cfg.get('mode') == 'slide' and not {'crop_size', 'stride'} <= set(self.test_cfg):
            raise ValueError(f"model.test_cfg mode='slide' needs crop_size=(h, w) and stride=(h, w), "
                             f"got {dict(self.test_cfg)}")

    def _init_decode_head(self, decode_head: Part) -> None:
        self.decode_head = build_module(decode_head)
        self._copy_head_attributes(self.decode_head)

    def _copy_head_attributes(self, head: nn.Module) -> None:
        """The final head decides how logits are post-processed."""
        self.align_corners = head.align_corners
        self.num_classes = head.num_classes
        self.out_channels = head.out_channels
        self.threshold = head.threshold

    def _init_auxiliary_head(self, auxiliary_head: Union[Part, List[Part], None]) -> None:
        if isinstance(auxiliary_head, (list, tuple)):
            self.auxiliary_head = nn.ModuleList(build_module(head) for head in auxiliary_head)
        elif auxiliary_head is not None:
            self.auxiliary_head = build_module(auxiliary_head)

    def extract_feat(self, inputs: torch.Tensor) -> List[torch.Tensor]:
        """Backbone (and neck) features."""
        x = self.backbone(inputs)
        return self.neck(x) if self.with_neck else x

    def encode_decode(self, inputs: torch.Tensor, batch_img_metas: List[dict]) -> torch.Tensor:
        """Logits resized to the (padded) input size given by the metas."""
        return self.decode_head.predict(self.extract_feat(inputs), batch_img_metas, self.test_cfg)

    def _decode_head_forward_train(self, inputs: List[torch.Tensor],
                                   data_samples: List[dict]) -> Dict[str, torch.Tensor]:
        return add_prefix(self.decode_head.loss(inputs, data_samples, self.train_cfg), 'decode')

    def _auxiliary_head_forward_train(self, inputs: List[torch.Tensor],
                                      data_samples: List[dict]) -> Dict[str, torch.Tensor]:
        if not isinstance(self.auxiliary_head, nn.ModuleList):
            return add_prefix(self.auxiliary_head.loss(inputs, data_samples, self.train_cfg), 'aux')
        losses = {}
        for i, head in enumerate(self.auxiliary_head):
            losses.update(add_prefix(head.loss(inputs, data_samples, self.train_cfg), f'aux_{i}'))
        return losses

    def loss(self, inputs: torch.Tensor, data_samples: List[dict]) -> Dict[str, torch.Tensor]:
        """Losses of the decode head (``decode.*``) and auxiliary heads (``aux*.*``)."""
        x = self.extract_feat(inputs)
        losses = self._decode_head_forward_train(x, data_samples)
        if self.with_auxiliary_head:
            losses.update(self._auxiliary_head_forward_train(x, data_samples))
        return losses

    def predict(self, inputs: torch.Tensor, data_samples: Optional[List[dict]] = None) -> List[dict]:
        """One result dict per image with ``seg_logits`` and ``pred_sem_seg`` at its ``ori_shape``; without
        ``data_samples`` the input size is the original size."""
        if data_samples is None:
            size = tuple(inputs.shape[2:])
            data_samples = [dict(ori_shape=size, img_shape=size, pad_shape=size, padding_size=(0, 0, 0, 0))
                            for _ in range(inputs.shape[0])]
        return self.postprocess_result(self.inference(inputs, data_samples), data_samples)

    def _forward(self, inputs: torch.Tensor, data_samples: Optional[List[dict]] = None) -> torch.Tensor:
        """Raw decode-head logits, no resizing."""
        return self.decode_head.forward(self.extract_feat(inputs))

    def inference(self, inputs: torch.Tensor, batch_img_metas: List[dict]) -> torch.Tensor:
        """Logits at the (padded) input size, by ``test_cfg.mode``: 'whole' or 'slide'."""
        mode = self.test_cfg.get('mode', 'whole')
        if mode == 'slide':
            return self.slide_inference(inputs, batch_img_metas)
        if mode == 'whole':
            return self.whole_inference(inputs, batch_img_metas)
        raise ValueError(f"test_cfg.mode must be 'whole' or 'slide', got {mode!r}")

    def whole_inference(self, inputs: torch.Tensor, batch_img_metas: List[dict]) -> torch.Tensor:
        return self.autocast_inference(self.encode_decode, inputs, batch_img_metas)

    def slide_inference(self, inputs: torch.Tensor, batch_img_metas: List[dict]) -> torch.Tensor:
        """Overlapping ``crop_size`` windows every ``stride``; the last row/column of windows is shifted back
        inside the image, and each pixel's logits are averaged over the windows that cover it (MMSeg's
        arithmetic). A crop larger than the image is cut to it. ``slide_batch_size`` windows run per forward."""
        h_stride, w_stride = self.test_cfg['stride']
        h_crop, w_crop = self.test_cfg['crop_size']
        windows_per_pass = self.test_cfg.get('slide_batch_size', DEFAULT_SLIDE_BATCH_SIZE)
        batch_size, _, h_img, w_img = inputs.shape
        h_grids = max(h_img - h_crop + h_stride - 1, 0) // h_stride + 1
        w_grids = max(w_img - w_crop + w_stride - 1, 0) // w_stride + 1
        windows = []
        for h_idx in range(h_grids):
            for w_idx in range(w_grids):
                y2 = min(h_idx * h_stride + h_crop, h_img)
                x2 = min(w_idx * w_stride + w_crop, w_img)
                windows.append((max(y2 - h_crop, 0), y2, max(x2 - w_crop, 0), x2))

        preds = inputs.new_zeros((batch_size, self.out_channels, h_img, w_img))
        count = inputs.new_zeros((1, 1, h_img, w_img))
        for start in range(0, len(windows), windows_per_pass):
            chunk = windows[start:start + windows_per_pass]
            crops = torch.cat([inputs[:, :, y1:y2, x1:x2] for y1, y2, x1, x2 in chunk])
            crop_metas = [dict(img_shape=tuple(crops.shape[2:]))] * crops.shape[0]
            crop_logits = self.autocast_inference(self.encode_decode, crops, crop_metas).split(batch_size)
            for (y1, y2, x1, x2), logits in zip(chunk, crop_logits):
                preds[:, :, y1:y2, x1:x2] += logits
                count[:, :, y1:y2, x1:x2] += 1
        return preds.div_(count)  # in place: a second full-size copy costs more than the division
