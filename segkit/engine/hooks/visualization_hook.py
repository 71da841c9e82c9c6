"""``SegVisualizationHook``: colour overlays of predictions during validation and testing."""
from __future__ import annotations

import logging
import os
from typing import Any, List, Optional

import cv2

from segkit.registry import HOOKS

from .hook import Hook

logger = logging.getLogger('segkit')


@HOOKS.register_module()
class SegVisualizationHook(Hook):
    """Draws the ground truth and prediction of every ``interval``-th val/test batch over the original image
    (read from ``img_path``).

    Drawings go to the visualizer's backends (``vis_data/vis_image/`` and TensorBoard, tagged
    ``val_<file name>`` at the current training iteration), or, in testing with ``out_dir`` set (``tools/test.py
    --show-dir``), to ``<out_dir>/<image name>.png``. With ``draw=False`` (MMSeg's default) it does nothing.

    Args:
        draw: whether to draw at all.
        interval: draw every this many batches.
        show: show each drawing in a window instead of saving it.
        wait_time: seconds each shown window stays up.
        out_dir: folder for test drawings.
    """

    priority = 'NORMAL'

    def __init__(self, draw: bool = False, interval: int = 50, show: bool = False, wait_time: float = 0.,
                 out_dir: Optional[str] = None) -> None:
        self.draw = draw
        self.interval = interval
        self.show = show
        self.wait_time = wait_time
        self.out_dir = out_dir

    def _after_iter(self, runner: Any, batch_idx: int, data_batch: Optional[dict] = None,
                    outputs: Optional[List[dict]] = None, mode: str = 'train') -> None:
        if not self.draw or mode == 'train' or not self.every_n_inner_iters(batch_idx, self.interval):
            return
        for sample in outputs or []:
            img_path = sample.get('img_path')
            image = cv2.imread(img_path, cv2.IMREAD_COLOR) if img_path else None
            if image is None:
                logger.warning(f'SegVisualizationHook: cannot read the image {img_path!r}; sample not drawn')
                continue
            name = os.path.basename(img_path)
            out_file = None
            if mode == 'test' and self.out_dir is not None:
                out_file = os.path.join(self.out_dir, os.path.splitext(name)[0] + '.png')
            runner.visualizer.add_datasample(f'{mode}_{name}', image, sample, show=self.show,
                                             wait_time=self.wait_time, out_file=out_file, step=runner.iter)
