"""``ShapesDemoDataset``: a small synthetic dataset generated on first use, so that the demo needs no download.

Each 128x128 image shows a few filled shapes (circle, triangle, square, cross) at random positions, sizes and
rotations on a textured, mostly grey background. A shape's colour usually hints at its class (a hue per
class) but a third of the shapes take a random hue, so telling them apart also needs their outline. Shapes
may overlap; the later one covers the earlier in both the image and the label map. Everything is drawn from
fixed seeds, so every machine generates the same files.
"""
from __future__ import annotations

import logging
import os
import os.path as osp
import shutil
from typing import Tuple

import cv2
import numpy as np

from ..registry import DATASETS
from .base_dataset import BaseSegDataset

CLASSES = ('background', 'circle', 'triangle', 'square', 'cross')
PALETTE = [[0, 0, 0], [230, 25, 75], [60, 180, 75], [0, 130, 200], [255, 225, 25]]
_CLASS_HUES = {1: 0, 2: 60, 3: 120, 4: 28}  # OpenCV hue (0..179) suggested by each class
_SPLITS = {'train': 200, 'val': 50}

logger = logging.getLogger('segkit')


def _background(rng: np.random.RandomState, size: int) -> np.ndarray:
    """A grey image with a faint low-frequency colour field, stripes and grain (float32 BGR)."""
    grey = rng.uniform(60, 190)
    field = cv2.resize(rng.uniform(-1, 1, (4, 4, 3)).astype(np.float32), (size, size),
                       interpolation=cv2.INTER_CUBIC)
    angle, period = rng.uniform(0, np.pi), rng.uniform(6, 24)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    img = grey + 45 * field + rng.uniform(5, 25) * stripes[:, :, None]
    return img + rng.normal(0, 8, (size, size, 3))


def _outline(cls: int, centre: Tuple[float, float], radius: float, angle: float) -> np.ndarray:
    """Polygon vertices (int32, N×2) of a shape class; a circle is approximated finely."""
    if cls == 1:
        local = [(np.cos(t), np.sin(t)) for t in np.linspace(0, 2 * np.pi, 48, endpoint=False)]
    elif cls in (2, 3):
        corners = 3 if cls == 2 else 4
        local = [(np.cos(t), np.sin(t)) for t in np.arange(corners) * 2 * np.pi / corners]
    else:
        w = 0.35
        local = [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w), (-1, w),
                 (-1, -w), (-w, -w)]
    c, s = np.cos(angle), np.sin(angle)
    points = [(centre[0] + radius * (x * c - y * s), centre[1] + radius * (x * s + y * c)) for x, y in local]
    return np.round(points).astype(np.int32)


def draw_sample(seed: int, size: int = 128) -> Tuple[np.ndarray, np.ndarray]:
    """One (uint8 BGR image, uint8 label map) pair, fully determined by ``seed``."""
    rng = np.random.RandomState(seed)
    img = _background(rng, size)
    label = np.zeros((size, size), np.uint8)
    for _ in range(rng.randint(2, 6)):
        cls = rng.randint(1, len(CLASSES))
        radius = rng.uniform(10, 26)
        centre = rng.uniform(radius * 0.5, size - radius * 0.5, 2)
        region = np.zeros((size, size), np.uint8)
        cv2.fillPoly(region, [_outline(cls, centre, radius, rng.uniform(0, 2 * np.pi))], 1)
        hue = _CLASS_HUES[cls] + rng.randint(-12, 13) if rng.rand() < 2 / 3 else rng.randint(0, 180)
        hsv = np.array([[[hue % 180, rng.randint(150, 256), rng.randint(140, 256)]]], np.uint8)
        colour = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)
        inside = region.astype(bool)
        img[inside] = colour + rng.normal(0, 10, (int(inside.sum()), 3))
        label[inside] = cls
    return np.clip(img, 0, 255).astype(np.uint8), label


def make_shapes_demo(data_root: str, size: int = 128) -> None:
    """Write the demo set in MMSeg layout (``img_dir/{train,val}``, ``ann_dir/{train,val}``, PNG files).

    Files are written to a temporary folder that is then renamed into place, so concurrent processes
    (several ranks) never see a half-written dataset.
    """
    tmp_root = f'{data_root.rstrip(os.sep)}.tmp-{os.getpid()}'
    seed = 0
    for split, count in _SPLITS.items():
        for folder in ('img_dir', 'ann_dir'):
            os.makedirs(osp.join(tmp_root, folder, split), exist_ok=True)
        for i in range(count):
            img, label = draw_sample(seed, size)
            seed += 1
            cv2.imwrite(osp.join(tmp_root, 'img_dir', split, f'{i:04d}.png'), img)
            cv2.imwrite(osp.join(tmp_root, 'ann_dir', split, f'{i:04d}.png'), label)
    try:
        os.rename(tmp_root, data_root)
    except OSError:
        if not osp.isdir(data_root):
            raise
        shutil.rmtree(tmp_root)  # another process finished first


@DATASETS.register_module()
class ShapesDemoDataset(BaseSegDataset):
    """The synthetic shapes set (5 classes, 200 train / 50 val images of 128x128), generated under
    ``data_root`` (default ``data/shapes_demo``, relative to the working directory) when that folder does not exist
    yet; a warning names the absolute path it is written to."""

    METAINFO = dict(classes=CLASSES, palette=PALETTE)

    def __init__(self, data_root: str = 'data/shapes_demo', img_suffix: str = '.png', seg_map_suffix: str = '.png',
                 **kwargs) -> None:
        if not osp.isdir(data_root):
            target = osp.abspath(data_root)
            # As in MMSeg, a relative data_root is relative to the working directory (not to the config or the
            # repository): say where the files go, so a run started elsewhere does not fill a folder unnoticed.
            where = ('' if osp.isabs(data_root) else
                     f'; data_root {data_root!r} is relative to the working directory, {os.getcwd()}')
            logger.warning(f'ShapesDemoDataset: generating the demo set ({sum(_SPLITS.values())} images and label '
                           f'maps, about 9 MB) in {target}, which does not exist yet{where}. To use an existing copy '
                           f'instead, run from the folder that holds its data/shapes_demo, or set the datasets\' '
                           f'data_root to its absolute path.')
            os.makedirs(osp.dirname(target), exist_ok=True)
            make_shapes_demo(data_root)
        super().__init__(data_root=data_root, img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)
