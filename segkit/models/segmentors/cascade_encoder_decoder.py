"""Encoder-decoder whose decode heads run in sequence, each refining the previous one's logits."""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
import torch.nn as nn

from segkit.registry import MODELS
from ..builder import build_module
from .encoder_decoder import EncoderDecoder, Part, add_prefix


@MODELS.register_module()
class CascadeEncoderDecoder(EncoderDecoder):
    """MMSeg's ``CascadeEncoderDecoder``: ``decode_head`` is a list of ``num_stages`` head configs; heads after
    the first are cascade heads, called as ``head(features, previous_logits)``. Losses are ``decode_{i}.*``.

    Args:
        num_stages: number of heads.
        others: as :class:`EncoderDecoder`.
    """

    def __init__(self, num_stages: int, **kwargs) -> None:
        self.num_stages = num_stages
        super().__init__(**kwargs)

    def _init_decode_head(self, decode_head: List[Part]) -> None:
        if not isinstance(decode_head, (list, tuple)) or len(decode_head) != self.num_stages:
            raise ValueError(f'CascadeEncoderDecoder: decode_head must be a list of num_stages={self.num_stages} '
                             f'heads (configs or modules), got {decode_head!r}')
        self.decode_head = nn.ModuleList(build_module(head) for head in decode_head)
        self._copy_head_attributes(self.decode_head[-1])

    def _cascade(self, x: List[torch.Tensor], num_heads: int) -> torch.Tensor:
        """The raw logits of the first ``num_heads`` heads in sequence."""
        out = self.decode_head[0].forward(x)
        for head in self.decode_head[1:num_heads]:
            out = head.forward(x, out)
        return out

    def encode_decode(self, inputs: torch.Tensor, batch_img_metas: List[dict]) -> torch.Tensor:
        x = self.extract_feat(inputs)
        return self.decode_head[-1].predict(x, self._cascade(x, self.num_stages - 1), batch_img_metas,
                                            self.test_cfg)

    def _decode_head_forward_train(self, inputs: List[torch.Tensor],
                                   data_samples: List[dict]) -> Dict[str, torch.Tensor]:
        losses = add_prefix(self.decode_head[0].loss(inputs, data_samples, self.train_cfg), 'decode_0')
        prev_output = None
        for i in range(1, self.num_stages):
            prev_output = (self.decode_head[0].forward(inputs) if i == 1
                           else self.decode_head[i - 1].forward(inputs, prev_output))
            losses.update(add_prefix(self.decode_head[i].loss(inputs, prev_output, data_samples, self.train_cfg),
                                     f'decode_{i}'))
        return losses

    def _forward(self, inputs: torch.Tensor, data_samples: Optional[List[dict]] = None) -> torch.Tensor:
        return self._cascade(self.extract_feat(inputs), self.num_stages)
