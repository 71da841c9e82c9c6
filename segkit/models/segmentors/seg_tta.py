"""Test-time augmentation: run the model on every view of an image and average the class probabilities."""
from __future__ import annotations

from typing import Any, Dict, List, Union

import torch
import torch.nn as nn

from segkit.registry import MODELS


@MODELS.register_module()
class SegTTAModel(nn.Module):
    """Wraps a segmentor for the batches that the ``TestTimeAug`` transform produces.

    Such a batch holds, per view, the batch of that view: ``{'inputs': [view0_images, view1_images, ...],
    'data_samples': [view0_samples, view1_samples, ...]}``. Each view runs through ``module.test_step``, which
    already undoes its flip and resizes to the original size; the views' softmax probabilities (sigmoid for a
    one-channel model) are then averaged and the prediction is their argmax (or threshold).

    Each result is the first view's sample dict with ``seg_logits`` = the averaged probabilities (C, H, W) and
    ``pred_sem_seg`` (H, W). (MMSeg keeps one view's raw logits there and applies a second sigmoid to a
    one-channel model's probabilities; segkit does neither.)

    Args:
        module: the segmentor, or its config.
        data_preprocessor: replaces the module's data preprocessor when ``module`` is a config.
    """

    def __init__(self, module: Union[dict, nn.Module], data_preprocessor: Union[dict, None] = None) -> None:
        super().__init__()
        if isinstance(module, dict):
            if data_preprocessor is not None:
                module = {**module, 'data_preprocessor': data_preprocessor}
            module = MODELS.build(module)
        if not isinstance(module, nn.Module) or not hasattr(module, 'test_step'):
            raise TypeError(f'SegTTAModel: module must be a segmentor or its config, got {type(module).__name__}')
        self.module = module

    @torch.no_grad()
    def test_step(self, data: Dict[str, List[Any]]) -> List[dict]:
        """Predict every view, then merge the views of each image."""
        num_views = len(data['inputs'])
        views = [{key: value[i] for key, value in data.items()} for i in range(num_views)]
        predictions = [self.module.test_step(view) for view in views]
        return self.merge_preds([list(per_image) for per_image in zip(*predictions)])

    val_step = test_step

    def merge_preds(self, data_samples_list: List[List[dict]]) -> List[dict]:
        """One result per image from its list of per-view results."""
        merged = []
        for views in data_samples_list:
            if self.module.out_channels > 1:
                probs = torch.stack([v['seg_logits'].softmax(dim=0) for v in views]).mean(0)
                pred = probs.argmax(dim=0)
            else:
                probs = torch.stack([v['seg_logits'] for v in views]).mean(0)
                pred = (probs[0] > self.module.threshold).long()
            merged.append({**views[0], 'seg_logits': probs, 'pred_sem_seg': pred})
        return merged

    def forward(self, *args, **kwargs) -> None:
        raise NotImplementedError('SegTTAModel is used through test_step(data), not called directly')
