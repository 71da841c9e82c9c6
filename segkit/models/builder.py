"""Model parts given either as configs or as modules built in plain Python."""
from __future__ import annotations

from typing import Union

import torch.nn as nn

from segkit.registry import MODELS


def build_module(part: Union[dict, nn.Module]) -> nn.Module:
    """``part`` as is when it is already a module (``EncoderDecoder(backbone=MixVisionTransformer(...), ...)``),
    else the ``MODELS`` config built."""
    if isinstance(part, nn.Module):
        return part
    return MODELS.build(part)
