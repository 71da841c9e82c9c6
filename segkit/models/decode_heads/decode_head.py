"""The decode-head base class: input selection, the classifier, loss composition and resizing."""
from __future__ import annotations

import warnings
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn

from segkit.registry import MODELS
from ..builder import build_module
from ..layers import initialize, resize
from ..losses import accuracy

Features = Union[torch.Tensor, List[torch.Tensor]]


class BaseDecodeHead(nn.Module):
    """Base of all decode heads; a subclass builds its layers and implements ``forward(inputs) -> logits``.

    Args:
        in_channels: input channels (a list when several inputs are selected).
        channels: channels of the last feature map, before ``conv_seg``.
        num_classes: number of classes.
        out_channels: channels of ``conv_seg``; ``num_classes``, or 1 for binary segmentation with a sigmoid
            and ``threshold`` (then ``num_classes`` must be 2).
        threshold: probability above which a one-channel output predicts class 1 (default 0.3, MMSeg's).
        dropout_ratio: ``Dropout2d`` rate before ``conv_seg``.
        conv_cfg / norm_cfg / act_cfg: layer configs for the head's ``ConvModule`` blocks.
        in_index: which backbone output(s) to use.
        input_transform: None (one input), 'resize_concat' (resize all selected to the first's size and
            concatenate) or 'multiple_select' (pass the selected list on).
        loss_decode: a loss (config or module), or a list of them; losses with the same ``loss_name`` are summed.
        ignore_index: label excluded from losses and accuracy.
        sampler: pixel sampler config (``OHEMPixelSampler``) weighting the loss per pixel.
        align_corners: ``align_corners`` of every bilinear resize.
        init_cfg: weight init of the head's own layers (default: ``conv_seg`` ~ N(0, 0.01), bias 0).
    """

    def __init__(self, in_channels: Union[int, Sequence[int]], channels: int, *, num_classes: int,
                 out_channels: Optional[int] = None, threshold: Optional[float] = None, dropout_ratio: float = 0.1,
                 conv_cfg: Optional[dict] = None, norm_cfg: Optional[dict] = None,
                 act_cfg: Optional[dict] = dict(type='ReLU'), in_index: Union[int, Sequence[int]] = -1,
                 input_transform: Optional[str] = None,
                 loss_decode: Union[dict, nn.Module, Sequence[Union[dict, nn.Module]]] = dict(
                     type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                 ignore_index: int = 255, sampler: Optional[dict] = None, align_corners: bool = False,
                 init_cfg: Optional[dict] = dict(type='Normal', std=0.01, override=dict(name='conv_seg'))) -> None:
        super().__init__()
        self._init_inputs(in_channels, in_index, input_transform)
        self.channels = channels
        self.dropout_ratio = dropout_ratio
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.act_cfg = act_cfg
        self.ignore_index = ignore_index
        self.align_corners = align_corners
        self.init_cfg = init_cfg

        if out_channels is None:
            if num_classes == 2:
                warnings.warn('For binary segmentation consider out_channels=1 with a threshold: one sigmoid '
                              'channel instead of a two-class softmax')
            out_channels = num_classes
        if out_channels != num_classes and out_channels != 1:
            raise ValueError(f'out_channels must equal num_classes, or be 1 for binary segmentation '
                             f'(num_classes=2); got out_channels={out_channels}, num_classes={num_classes}')
        if out_channels == 1 and threshold is None:
            threshold = 0.3
            warnings.warn('threshold is not set for a one-channel (binary) head; using 0.3')
        self.num_classes = num_classes
        self.out_channels = out_channels
        self.threshold = threshold

        if isinstance(loss_decode, (dict, nn.Module)):
            self.loss_decode = build_module(loss_decode)
        elif isinstance(loss_decode, (list, tuple)):
            self.loss_decode = nn.ModuleList(build_module(loss) for loss in loss_decode)
        else:
            raise TypeError(f'loss_decode must be a loss (config or module) or a list of them, '
                            f'got {type(loss_decode).__name__}')
        self.sampler = None if sampler is None else MODELS.build(sampler, default_args=dict(context=self))

        self.conv_seg = nn.Conv2d(channels, self.out_channels, kernel_size=1)
        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else None

    def _init_inputs(self, in_channels: Union[int, Sequence[int]], in_index: Union[int, Sequence[int]],
                     input_transform: Optional[str]) -> None:
        """Check that ``in_channels``, ``in_index`` and ``input_transform`` agree; set ``self.in_channels``."""
        if input_transform not in (None, 'resize_concat', 'multiple_select'):
            raise ValueError(f"input_transform must be None, 'resize_concat' or 'multiple_select', "
                             f'got {input_transform!r}')
        self.input_transform = input_transform
        self.in_index = in_index
        if input_transform is None:
            if not isinstance(in_channels, int) or not isinstance(in_index, int):
                raise TypeError(f'with input_transform=None, in_channels and in_index must be ints, '
                                f'got {in_channels!r} and {in_index!r}')
            self.in_channels = in_channels
            return
        if not isinstance(in_channels, (list, tuple)) or not isinstance(in_index, (list, tuple)) \
                or len(in_channels) != len(in_index):
            raise TypeError(f'with input_transform={input_transform!r}, in_channels and in_index must be lists '
                            f'of the same length, got {in_channels!r} and {in_index!r}')
        self.in_channels = sum(in_channels) if input_transform == 'resize_concat' else list(in_channels)

    def extra_repr(self) -> str:
        return (f'input_transform={self.input_transform}, ignore_index={self.ignore_index}, '
                f'align_corners={self.align_corners}')

    @property
    def losses(self) -> List[nn.Module]:
        """The loss modules, as a list."""
        return list(self.loss_decode) if isinstance(self.loss_decode, nn.ModuleList) else [self.loss_decode]

    def init_weights(self) -> None:
        """Apply ``init_cfg`` to the head, then let the sub-blocks (``ConvModule``...) run their own init."""
        initialize(self, self.init_cfg)
        for module in self.children():
            if hasattr(module, 'init_weights'):
                module.init_weights()

    def _transform_inputs(self, inputs: Sequence[torch.Tensor]) -> Features:
        """Pick the input(s) named by ``in_index`` from the backbone outputs, as ``input_transform`` says."""
        if self.input_transform is None:
            return inputs[self.in_index]
        selected = [inputs[i] for i in self.in_index]
        if self.input_transform == 'multiple_select':
            return selected
        size = selected[0].shape[2:]
        return torch.cat([resize(x, size, mode='bilinear', align_corners=self.align_corners) for x in selected],
                         dim=1)

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError(f'{type(self).__name__} must implement forward(inputs) -> logits')

    def cls_seg(self, feat: torch.Tensor) -> torch.Tensor:
        """Per-pixel classification: dropout, then the 1x1 ``conv_seg``.

        The logits come out in the standard contiguous layout even from channels-last features (MiT's): a
        channels-last tensor would be copied, upsampled to full resolution, by each softmax / loss over classes.
        """
        if self.dropout is not None:
            feat = self.dropout(feat)
        return self.conv_seg(feat).contiguous()

    def loss(self, inputs: Sequence[torch.Tensor], data_samples: List[dict],
             train_cfg: Optional[dict] = None) -> Dict[str, torch.Tensor]:
        """Forward, then the losses against each sample's ``gt_sem_seg``."""
        return self.loss_by_feat(self.forward(inputs), data_samples)

    def predict(self, inputs: Sequence[torch.Tensor], batch_img_metas: List[dict],
                test_cfg: Optional[dict] = None) -> torch.Tensor:
        """Forward, then logits resized to the (padded) input size."""
        return self.predict_by_feat(self.forward(inputs), batch_img_metas)

    def loss_by_feat(self, seg_logits: torch.Tensor, data_samples: List[dict]) -> Dict[str, torch.Tensor]:
        """Losses (one entry per ``loss_name``) and ``acc_seg`` of logits resized to the label size."""
        seg_label = torch.stack([sample['gt_sem_seg'].reshape(sample['gt_sem_seg'].shape[-2:])
                                 for sample in data_samples]).long()
        # float32 from here even under autocast: the full-resolution loss would cast a bf16/fp16 upsampling back
        # to float32 anyway, at a full-size copy (and upsampling is not faster in bf16 on CPU)
        seg_logits = resize(seg_logits.float(), seg_label.shape[1:], mode='bilinear', align_corners=self.align_corners)
        seg_weight = None if self.sampler is None else self.sampler.sample(seg_logits, seg_label)
        losses: Dict[str, torch.Tensor] = {}
        for loss_fn in self.losses:
            value = loss_fn(seg_logits, seg_label, weight=seg_weight, ignore_index=self.ignore_index)
            losses[loss_fn.loss_name] = losses[loss_fn.loss_name] + value if loss_fn.loss_name in losses else value
        losses['acc_seg'] = self._accuracy(seg_logits.detach(), seg_label)
        return losses

    def _accuracy(self, seg_logits: torch.Tensor, seg_label: torch.Tensor) -> torch.Tensor:
        """Pixel accuracy in percent; a one-channel head is scored on its thresholded prediction."""
        if self.out_channels == 1:
            positive = seg_logits.sigmoid() > self.threshold
            seg_logits = torch.cat([~positive, positive], dim=1).float()
        return accuracy(seg_logits, seg_label, ignore_index=self.ignore_index)

    def predict_by_feat(self, seg_logits: torch.Tensor, batch_img_metas: List[dict]) -> torch.Tensor:
        """Resize logits to the batch's padded input size (``pad_shape``, else ``img_shape``)."""
        meta = batch_img_metas[0]
        size = meta['pad_shape'] if meta.get('pad_shape') is not None else meta.get('img_shape')
        if size is None:
            raise KeyError(f'image metas need img_shape (or pad_shape) to size the logits; got keys {sorted(meta)}')
        return resize(seg_logits, tuple(size)[:2], mode='bilinear', align_corners=self.align_corners)
