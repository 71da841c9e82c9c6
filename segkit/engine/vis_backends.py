"""Where scalars, images and the config of a run are written: local files and TensorBoard.

``LocalVisBackend`` appends one JSON object per logged step to ``vis_data/scalars.json`` (MMEngine's format,
each line carrying its ``step``) and saves images under ``vis_data/vis_image/``; ``TensorboardVisBackend``
writes event files under ``vis_data/`` for ``tensorboard --logdir``. ``SegLocalVisualizer`` fans calls out to
its backends and draws segmentation overlays.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

import cv2
import numpy as np
import torch

from segkit.registry import VISBACKENDS
from segkit.visualization import draw_overlay


def _plain_number(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


@VISBACKENDS.register_module()
class LocalVisBackend:
    """Scalars as JSON lines, images as PNG files and the config as a ``.py`` file under ``save_dir``."""

    def __init__(self, save_dir: str, img_save_dir: str = 'vis_image', config_save_file: str = 'config.py',
                 scalar_save_file: str = 'scalars.json') -> None:
        self.save_dir = save_dir
        self.img_save_dir = os.path.join(save_dir, img_save_dir)
        self.config_save_file = os.path.join(save_dir, config_save_file)
        self.scalar_save_file = os.path.join(save_dir, scalar_save_file)
        os.makedirs(save_dir, exist_ok=True)

    def add_config(self, config_text: str) -> None:
        with open(self.config_save_file, 'w', encoding='utf-8') as f:
            f.write(config_text)

    def add_scalars(self, scalars: Dict[str, Any], step: int) -> None:
        record = {key: _plain_number(value) for key, value in scalars.items()}
        record.setdefault('step', step)
        with open(self.scalar_save_file, 'a', encoding='utf-8') as f:
            f.write(json.dumps(record) + '\n')

    def add_image(self, name: str, image_rgb: np.ndarray, step: int) -> None:
        os.makedirs(self.img_save_dir, exist_ok=True)
        path = os.path.join(self.img_save_dir, f'{name}_{step}.png')
        cv2.imwrite(path, cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        pass


@VISBACKENDS.register_module()
class TensorboardVisBackend:
    """TensorBoard event files under ``save_dir`` (``torch.utils.tensorboard.SummaryWriter``)."""

    def __init__(self, save_dir: str) -> None:
        from torch.utils.tensorboard import SummaryWriter
        self.save_dir = save_dir
        self.writer = SummaryWriter(save_dir)

    def add_config(self, config_text: str) -> None:
        self.writer.add_text('config', f'```python\n{config_text}\n```')

    def add_scalars(self, scalars: Dict[str, Any], step: int) -> None:
        for key, value in scalars.items():
            value = _plain_number(value)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def add_image(self, name: str, image_rgb: np.ndarray, step: int) -> None:
        self.writer.add_image(name, image_rgb, step, dataformats='HWC')
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class SegLocalVisualizer:
    """Sends scalars, images and the config to every backend, and draws ground-truth / prediction overlays.

    Args:
        vis_backends: backend configs (``dict(type='LocalVisBackend')`` ...), built with ``save_dir``
            (``<save_dir>/vis_data``). An empty list (the non-zero ranks of a distributed run) writes nothing.
        save_dir: the run's log folder.
        name: kept for MMEngine config compatibility.
        alpha: opacity of the colour overlay.
        classes / palette: class names and RGB colours; the runner sets them from the dataset's metainfo.
    """

    def __init__(self, vis_backends: Optional[List[dict]] = None, save_dir: Optional[str] = None,
                 name: str = 'visualizer', alpha: float = 0.8, classes: Optional[List[str]] = None,
                 palette: Optional[List[List[int]]] = None) -> None:
        self.name = name
        self.alpha = alpha
        self.dataset_meta: Dict[str, Any] = {'classes': classes, 'palette': palette}
        self.backends: List[Any] = []
        if vis_backends:
            if save_dir is None:
                raise ValueError('SegLocalVisualizer: vis_backends need a save_dir')
            vis_dir = os.path.join(save_dir, 'vis_data')
            self.backends = [VISBACKENDS.build(cfg, default_args=dict(save_dir=vis_dir)) for cfg in vis_backends]

    def add_config(self, config_text: str) -> None:
        for backend in self.backends:
            backend.add_config(config_text)

    def add_scalars(self, scalars: Dict[str, Any], step: int) -> None:
        for backend in self.backends:
            backend.add_scalars(scalars, step)

    def add_image(self, name: str, image_rgb: np.ndarray, step: int) -> None:
        for backend in self.backends:
            backend.add_image(name, image_rgb, step)

    def draw_sample(self, image_bgr: np.ndarray, data_sample: dict, draw_gt: bool = True,
                    draw_pred: bool = True) -> np.ndarray:
        """The image with its ground truth (left, when present) and prediction (right) overlaid, as BGR.

        Colours come from the dataset's ``palette``, or a fixed pseudo-random one when it has none.
        """
        palette = (self.dataset_meta or {}).get('palette')
        panels = []
        if draw_gt and data_sample.get('gt_sem_seg') is not None:
            panels.append(draw_overlay(image_bgr, _label_map(data_sample['gt_sem_seg']), palette, self.alpha))
        if draw_pred and data_sample.get('pred_sem_seg') is not None:
            panels.append(draw_overlay(image_bgr, _label_map(data_sample['pred_sem_seg']), palette, self.alpha))
        return np.concatenate(panels, axis=1) if panels else image_bgr

    def add_datasample(self, name: str, image_bgr: np.ndarray, data_sample: dict, draw_gt: bool = True,
                       draw_pred: bool = True, show: bool = False, wait_time: float = 0,
                       out_file: Optional[str] = None, step: int = 0) -> np.ndarray:
        """Draw a sample; show it in a window, write it to ``out_file``, or else send it to the backends."""
        drawn = self.draw_sample(image_bgr, data_sample, draw_gt, draw_pred)
        if show:
            cv2.imshow(name, drawn)
            cv2.waitKey(max(int(wait_time * 1000), 1))
        if out_file is not None:
            os.makedirs(os.path.dirname(os.path.abspath(out_file)), exist_ok=True)
            cv2.imwrite(out_file, drawn)
        elif not show:
            self.add_image(name, cv2.cvtColor(drawn, cv2.COLOR_BGR2RGB), step)
        return drawn

    def close(self) -> None:
        for backend in self.backends:
            backend.close()


def _label_map(seg: Any) -> np.ndarray:
    """An (H, W) integer array from a label tensor/array of shape (H, W) or (1, H, W)."""
    if isinstance(seg, torch.Tensor):
        seg = seg.detach().cpu().numpy()
    seg = np.asarray(seg)
    return seg[0] if seg.ndim == 3 else seg


VISUALIZERS = {'SegLocalVisualizer': SegLocalVisualizer, 'Visualizer': SegLocalVisualizer}


def build_visualizer(cfg: Optional[dict], save_dir: str, write: bool) -> SegLocalVisualizer:
    """Build the run's visualizer from ``cfg`` (MMSeg's ``visualizer`` dict); ``write=False`` drops its
    backends (used on non-zero ranks)."""
    cfg = dict(cfg or dict(type='SegLocalVisualizer'))
    visualizer_type = cfg.pop('type', 'SegLocalVisualizer')
    if visualizer_type not in VISUALIZERS:
        raise KeyError(f'visualizer.type {visualizer_type!r} is not supported; use one of {sorted(VISUALIZERS)}')
    cfg.setdefault('save_dir', save_dir)
    if not write:
        cfg['vis_backends'] = []
    return VISUALIZERS[visualizer_type](**cfg)
