"""Base of decode heads that refine a previous head's output (used by ``CascadeEncoderDecoder``)."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch

from .decode_head import BaseDecodeHead


class BaseCascadeDecodeHead(BaseDecodeHead):
    """A decode head whose ``forward(inputs, prev_output)`` also takes the previous stage's logits."""

    def forward(self, inputs: Sequence[torch.Tensor], prev_output: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f'{type(self).__name__} must implement forward(inputs, prev_output)')

    def loss(self, inputs: Sequence[torch.Tensor], prev_output: torch.Tensor, data_samples: List[dict],
             train_cfg: Optional[dict] = None) -> Dict[str, torch.Tensor]:
        return self.loss_by_feat(self.forward(inputs, prev_output), data_samples)

    def predict(self, inputs: Sequence[torch.Tensor], prev_output: torch.Tensor, batch_img_metas: List[dict],
                test_cfg: Optional[dict] = None) -> torch.Tensor:
        return self.predict_by_feat(self.forward(inputs, prev_output), batch_img_metas)
