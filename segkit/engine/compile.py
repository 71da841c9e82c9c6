"""The ``compile`` config key (MMEngine's): ``torch.compile`` for the segmentor's networks, opt-in."""
from __future__ import annotations

from typing import Any, List, Union

import torch
import torch.nn as nn


def compile_options(value: Any) -> Union[dict, None]:
    """``compile`` as MMEngine reads it: None/False off, True with torch's defaults, a dict of
    ``torch.compile`` arguments (``backend``, ``mode``, ``dynamic``, ...)."""
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if isinstance(value, dict):
        return dict(value)
    raise TypeError(f'config key "compile" must be True, False or a dict of torch.compile arguments '
                    f'(e.g. compile=dict(mode="max-autotune")), got {value!r}')


def compile_networks(segmentor: nn.Module, options: dict) -> List[str]:
    """Compile the ``forward`` of every network of ``segmentor`` (backbone, neck, heads; each member of a
    ``ModuleList``) in place, and return their names.

    The data preprocessor stays eager: it handles lists of differently sized images in Python. Only ``forward``
    is replaced, so ``state_dict`` keys are unchanged (``torch.compile(model)`` would prefix them with
    ``_orig_mod.``), and heads that call ``self.forward`` directly, as decode heads do, use the compiled one.
    """
    compiled = []
    for name, child in segmentor.named_children():
        if name == 'data_preprocessor':
            continue
        members = child.named_children() if isinstance(child, nn.ModuleList) else [(None, child)]
        for index, module in members:
            module.forward = torch.compile(module.forward, **options)
            compiled.append(name if index is None else f'{name}.{index}')
    return compiled
