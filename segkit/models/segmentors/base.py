"""The segmentor base class: MMSeg's forward modes, train/val/test steps, loss parsing and post-processing."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn

from ..builder import build_module
from ..layers import initialize, resize

Batch = Dict[str, Any]

INFERENCE_AUTOCAST_DTYPES = {'bfloat16': torch.bfloat16, 'float16': torch.float16}


class BaseSegmentor(nn.Module):
    """Base of segmentors, called as ``model(inputs, data_samples=None, mode='tensor'|'predict'|'loss')``.

    ``inputs`` is a float (N, 3, H, W) tensor (already preprocessed); ``data_samples`` a list of per-image
    dicts holding the meta keys (``img_shape``, ``ori_shape``, ``pad_shape``, ``padding_size``, ``flip``,
    ``flip_direction``) and, for training, ``gt_sem_seg``. The raw collated batch goes through
    ``data_preprocessor`` first; ``train_step`` / ``val_step`` / ``test_step`` do both.

    Reduced-precision inference is opt-in: ``test_cfg=dict(..., autocast_dtype='bfloat16')`` (or ``'float16'``)
    runs the ``'tensor'`` and ``'predict'`` modes (and ``whole_inference`` / ``slide_inference``) under
    ``torch.autocast`` and gives float32 logits. Training precision is the optim wrapper's (``AmpOptimWrapper``).

    Args:
        data_preprocessor: config (or module) of the data preprocessor; default a ``SegDataPreProcessor``
            that only stacks the images.
        init_cfg: weight init applied to the whole model after the parts' own init (e.g. ``Pretrained``).
    """

    def __init__(self, data_preprocessor: Union[dict, nn.Module, None] = None,
                 init_cfg: Union[dict, List[dict], None] = None) -> None:
        super().__init__()
        if data_preprocessor is None:
            data_preprocessor = dict(type='SegDataPreProcessor')
        self.data_preprocessor = build_module(data_preprocessor)
        self.init_cfg = init_cfg

    @property
    def with_neck(self) -> bool:
        return getattr(self, 'neck', None) is not None

    @property
    def with_auxiliary_head(self) -> bool:
        return getattr(self, 'auxiliary_head', None) is not None

    @property
    def with_decode_head(self) -> bool:
        return getattr(self, 'decode_head', None) is not None

    def init_weights(self) -> None:
        """Run each part's own ``init_weights``, then this model's ``init_cfg`` (pretrained weights last)."""
        for module in self.children():
            if hasattr(module, 'init_weights'):
                module.init_weights()
        initialize(self, self.init_cfg)

    def forward(self, inputs: torch.Tensor, data_samples: Optional[List[dict]] = None,
                mode: str = 'tensor') -> Union[torch.Tensor, Dict[str, torch.Tensor], List[dict]]:
        """'tensor': raw decode-head logits; 'predict': per-image result dicts; 'loss': a dict of losses."""
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.autocast_inference(self._forward, inputs, data_samples)
        raise ValueError(f"invalid mode {mode!r}: use 'tensor', 'predict' or 'loss'")

    def autocast_inference(self, run: Callable[..., torch.Tensor], inputs: torch.Tensor,
                           *args: Any) -> torch.Tensor:
        """``run(inputs, *args)``, under ``torch.autocast`` to ``test_cfg.autocast_dtype`` with float32 logits
        returned when that is set; as is otherwise (an enclosing autocast is left alone)."""
        test_cfg = getattr(self, 'test_cfg', None) or {}
        name = test_cfg.get('autocast_dtype')
        if name is None:
            return run(inputs, *args)
        if name not in INFERENCE_AUTOCAST_DTYPES:
            raise ValueError(f'test_cfg.autocast_dtype must be one of {sorted(INFERENCE_AUTOCAST_DTYPES)} or None, '
                             f'got {name!r}')
        with torch.autocast(inputs.device.type, dtype=INFERENCE_AUTOCAST_DTYPES[name]):
            return run(inputs, *args).float()

    def loss(self, inputs: torch.Tensor, data_samples: List[dict]) -> Dict[str, torch.Tensor]:
        raise NotImplementedError

    def predict(self, inputs: torch.Tensor, data_samples: Optional[List[dict]] = None) -> List[dict]:
        raise NotImplementedError

    def _forward(self, inputs: torch.Tensor, data_samples: Optional[List[dict]] = None) -> torch.Tensor:
        raise NotImplementedError

    def train_step(self, data: Batch, optim_wrapper: Any) -> Dict[str, torch.Tensor]:
        """Preprocess, compute the losses and let ``optim_wrapper`` (MMEngine's ``OptimWrapper`` interface:
        ``optim_context(model)``, ``update_params(loss)``) step; returns the detached log values."""
        with optim_wrapper.optim_context(self):
            data = self.data_preprocessor(data, True)
            losses = self(**data, mode='loss')
        loss, log_vars = self.parse_losses(losses)
        optim_wrapper.update_params(loss)
        return log_vars

    @torch.no_grad()
    def val_step(self, data: Batch) -> List[dict]:
        """Preprocess and predict: one result dict per image."""
        data = self.data_preprocessor(data, False)
        return self(**data, mode='predict')

    test_step = val_step

    @staticmethod
    def parse_losses(losses: Dict[str, Any]) -> Tuple[torch.Tensor, 'OrderedDict[str, torch.Tensor]']:
        """Sum every entry whose key contains ``loss``; returns it and the detached means of all entries
        (``'loss'`` first), for logging."""
        log_vars = OrderedDict()
        for name, value in losses.items():
            if isinstance(value, torch.Tensor):
                log_vars[name] = value.mean()
            elif isinstance(value, (list, tuple)) and all(isinstance(v, torch.Tensor) for v in value):
                log_vars[name] = sum(v.mean() for v in value)
            else:
                raise TypeError(f'loss {name!r} is a {type(value).__name__}, not a tensor or list of tensors')
        loss = sum(value for name, value in log_vars.items() if 'loss' in name)
        if not isinstance(loss, torch.Tensor):
            raise ValueError(f'no entry of {list(losses)} has "loss" in its name: nothing to optimise')
        log_vars = OrderedDict([('loss', loss.detach()), *((k, v.detach()) for k, v in log_vars.items())])
        return loss, log_vars

    def postprocess_result(self, seg_logits: torch.Tensor, data_samples: List[dict]) -> List[dict]:
        """Per image: crop the padding, undo a flip, resize to ``ori_shape``, and predict.

        Returns new dicts: the sample's keys plus ``seg_logits`` (C, H, W) and ``pred_sem_seg`` (H, W, int64).
        A one-channel model gives sigmoid probabilities as ``seg_logits`` and thresholds them.
        """
        results = []
        height, width = seg_logits.shape[2:]
        for logits, sample in zip(seg_logits, data_samples):
            left, right, top, bottom = sample.get('padding_size') or (0, 0, 0, 0)
            logits = logits[None, :, top:height - bottom, left:width - right]
            if sample.get('flip'):
                direction = sample.get('flip_direction')
                if direction not in ('horizontal', 'vertical'):
                    raise ValueError(f"cannot undo flip_direction {direction!r}: only 'horizontal' and 'vertical'")
                logits = logits.flip(3 if direction == 'horizontal' else 2)
            logits = resize(logits, tuple(sample['ori_shape'])[:2], mode='bilinear',
                            align_corners=self.align_corners)[0]
            if logits.shape[0] > 1:
                pred = logits.argmax(dim=0)
            else:
                logits = logits.sigmoid()
                pred = (logits[0] > self.threshold).long()
            results.append({**sample, 'seg_logits': logits, 'pred_sem_seg': pred})
        return results

