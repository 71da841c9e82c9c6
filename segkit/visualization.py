"""Colour overlays of label maps on images, shared by ``show_result``, the visualization hook and
``tools/test.py --show-dir``."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch

Palette = Sequence[Sequence[int]]


def default_palette(num_classes: int, seed: int = 0) -> np.ndarray:
    """A fixed pseudo-random RGB palette (``num_classes`` x 3 uint8) for models without dataset colours."""
    return np.random.default_rng(seed).integers(0, 256, size=(num_classes, 3), dtype=np.uint8)


def draw_overlay(img_bgr: np.ndarray, label_map: Union[np.ndarray, torch.Tensor], palette: Optional[Palette] = None,
                 opacity: float = 0.5) -> np.ndarray:
    """Blend the class colours of ``label_map`` (H, W) into ``img_bgr`` (H, W, 3 uint8, BGR).

    ``palette`` holds one RGB colour per class (a dataset's ``palette``); by default a fixed pseudo-random one.
    Pixels whose label has no colour (e.g. 255 = ignore) keep the image. Returns a new BGR uint8 image:
    ``img * (1 - opacity) + colour * opacity``.
    """
    if not 0 <= opacity <= 1:
        raise ValueError(f'opacity must be in [0, 1], got {opacity}')
    if isinstance(label_map, torch.Tensor):
        label_map = label_map.detach().cpu().numpy()
    label_map = np.asarray(label_map).reshape(label_map.shape[-2:]).astype(np.int64)
    if img_bgr.ndim != 3 or img_bgr.shape[2] != 3 or img_bgr.shape[:2] != label_map.shape:
        raise ValueError(f'draw_overlay: image {img_bgr.shape} must be H x W x 3 with the label map size '
                         f'{label_map.shape}')
    if palette is None:
        palette = default_palette(int(label_map.max()) + 1 if label_map.size else 1)
    colours_bgr = np.asarray(palette, dtype=np.float32).reshape(-1, 3)[:, ::-1]
    coloured = (label_map >= 0) & (label_map < len(colours_bgr))
    out = img_bgr.astype(np.float32)
    out[coloured] = out[coloured] * (1 - opacity) + colours_bgr[label_map[coloured]] * opacity
    return out.round().clip(0, 255).astype(np.uint8)
