"""Checks that a label map holds class indices a model can learn from, with messages that name the file.

These run on every loaded annotation, so the common case costs one ``max`` over the array; the slower
inspection (``np.unique``) only happens once the quick test has found something unusual.
"""
from __future__ import annotations

from typing import Optional

import numpy as np


def as_index_mask(seg_map: np.ndarray, path: str) -> np.ndarray:
    """Return ``seg_map`` as an (H, W) uint8 index mask, or raise ValueError saying what is wrong with it.

    A 3-channel image whose channels are identical (a grey mask saved as RGB) is accepted as its first
    channel; a true colour mask is refused, since its colours must first be mapped to class indices.
    """
    if seg_map.ndim == 3 and seg_map.shape[2] == 1:
        seg_map = seg_map[:, :, 0]
    if seg_map.ndim == 3:
        channels = seg_map.shape[2]
        if channels >= 3 and (seg_map[:, :, 0] == seg_map[:, :, 1]).all() \
                and (seg_map[:, :, 0] == seg_map[:, :, 2]).all():
            seg_map = seg_map[:, :, 0]
        else:
            raise ValueError(
                f'label map {path} is a {channels}-channel colour image; segmentation labels must be '
                f'single-channel class indices (0..num_classes-1, ignore_index for void). Convert it by mapping '
                f'each palette colour to its class index and saving a mode "L" (or palette "P") PNG.')
    if seg_map.ndim != 2:
        raise ValueError(f'label map {path} has shape {seg_map.shape}; expected (H, W) class indices')
    if seg_map.dtype != np.uint8:
        if seg_map.size and (seg_map.min() < 0 or seg_map.max() > 255):
            raise ValueError(
                f'label map {path} holds values in [{seg_map.min()}, {seg_map.max()}], which do not fit the '
                f'0..255 range of class indices (is it an instance-id or a depth map?)')
        seg_map = seg_map.astype(np.uint8)
    return seg_map


def check_label_values(seg_map: np.ndarray, path: str, num_classes: int,
                       ignore_index: int = 255) -> Optional[str]:
    """Raise ValueError if ``seg_map`` has a value outside [0, num_classes) other than ``ignore_index``.

    Returns a warning text for the tell-tale binary mask stored as 0/255 (its foreground equals the
    ignore index, so it would silently never be learnt), and None when nothing looks wrong.
    """
    if seg_map.size == 0 or int(seg_map.max()) < num_classes:
        return None
    bad = (seg_map >= num_classes) & (seg_map != ignore_index)
    if bad.any():
        values = np.unique(seg_map[bad])
        shown = ', '.join(str(v) for v in values[:10]) + (', ...' if len(values) > 10 else '')
        hint = ''
        if set(np.unique(seg_map).tolist()) <= {0, 255}:
            hint = (' The mask holds only 0 and 255: for a binary dataset stored as 0/255, divide the masks '
                    'by 255 so that the foreground is class 1.')
        raise ValueError(
            f'label map {path} has values [{shown}] outside [0, {num_classes}) that are not '
            f'ignore_index={ignore_index} (values after reduce_zero_label and label_map). Check the number '
            f'of classes, reduce_zero_label and ignore_index of the dataset.{hint}')
    if num_classes == 2 and ignore_index == 255 and not (seg_map == 1).any():
        return (f'label map {path} holds only 0 and 255 with 2 classes: 255 is ignore_index, so if this '
                f'is a binary mask stored as 0/255 its foreground is ignored and never learnt. Divide such '
                f'masks by 255 (foreground = 1), or keep 255 only for void pixels.')
    return None
