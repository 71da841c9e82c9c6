"""Build a model from a config and checkpoint, segment images with it, draw the result."""
from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
import torch.nn as nn

from segkit.checkpoint import extract_state_dict, load_file, load_state_dict, require_every_weight
from segkit.config import Config
from segkit.datasets.transforms import Compose
from segkit.registry import DATASETS, MODELS, UnknownTypeError
from segkit.visualization import Palette, draw_overlay

ImageInput = Union[str, Path, np.ndarray]


def init_model(config: Union[str, Path, Config], checkpoint: Optional[str] = None, device: str = 'cpu',
               cfg_options: Optional[dict] = None) -> nn.Module:
    """Build ``config.model`` for inference and load ``checkpoint`` into it.

    The backbone's pretrained initialisation (``init_cfg``/``pretrained``) and ``train_cfg`` are dropped. A
    top-level ``data_preprocessor`` serves a model config that has none, as in training.
    Checkpoint tensors the model lacks (e.g. an auxiliary head left out of the config) are skipped with a
    warning; a missing or wrong-shape tensor raises, naming the keys.
    The model gets ``cfg`` (the config) and ``dataset_meta`` (``classes``/``palette`` from the checkpoint's
    ``meta``, None when it has none), is moved to ``device`` and put in eval mode.
    """
    if isinstance(config, (str, Path)):
        config = Config.fromfile(str(config))
    elif isinstance(config, Config):
        config = copy.deepcopy(config)
    else:
        raise TypeError(f'config must be a file path or a Config, got {type(config).__name__}')
    if cfg_options:
        config.merge_from_dict(cfg_options)
    if 'model' not in config:
        raise KeyError(f'config {config.filename or ""} has no "model"')
    model_cfg = config.model
    if config.get('data_preprocessor') is not None:  # as Runner.from_cfg: it serves a model config without one
        model_cfg.setdefault('data_preprocessor', config.data_preprocessor)
    if 'init_cfg' in model_cfg.get('backbone', {}):
        model_cfg.backbone.init_cfg = None
    for key in ('pretrained', 'train_cfg'):  # only where set: a custom segmentor may not take them
        if key in model_cfg:
            model_cfg[key] = None
    try:
        model = MODELS.build(model_cfg)
    except UnknownTypeError as e:
        e.locate_in(config.to_dict())  # model.decode_head.type, as the config spells it
        raise
    meta = {} if checkpoint is None else _load_weights(model, checkpoint)
    if 'dataset_meta' in meta:
        dataset_meta = meta['dataset_meta']
    elif 'CLASSES' in meta:  # MMSeg 0.x checkpoints
        dataset_meta = dict(classes=meta['CLASSES'], palette=meta.get('PALETTE'))
    elif checkpoint is not None:
        dataset_name, dataset_meta = _config_dataset_meta(config, model)
        warnings.warn(f'{checkpoint} carries no dataset_meta (classes, palette): '
                      + (f"using those of the config's test dataset, {dataset_name}" if dataset_meta
                         else 'model.dataset_meta is None (show_result then uses its default palette)'))
    else:
        dataset_meta = None
    model.cfg = config
    model.dataset_meta = dataset_meta
    return model.to(device).eval()


def _config_dataset_meta(config: Config, model: nn.Module) -> Tuple[Optional[str], Optional[dict]]:
    """(name, classes and palette) of the config's test dataset (its class's ``METAINFO`` updated by the config's
    ``metainfo``) when it has as many classes as the model; (None, None) otherwise. (MMSeg falls back to
    Cityscapes' classes.)"""
    dataset_cfg = (config.get('test_dataloader') or {}).get('dataset') or {}
    dataset_cls = DATASETS.get(dataset_cfg.get('type'), None) if isinstance(dataset_cfg.get('type'), str) else None
    if dataset_cls is None or not hasattr(dataset_cls, '_load_metainfo'):
        return None, None
    metainfo = dataset_cls._load_metainfo(dataset_cfg.get('metainfo'))
    classes = metainfo.get('classes')
    if not classes or len(classes) != getattr(model, 'num_classes', None):
        return None, None
    return dataset_cls.__name__, dict(classes=tuple(classes), palette=metainfo.get('palette'))


def _load_weights(model: nn.Module, checkpoint: str) -> dict:
    """Load the tensors the model has, warning about the others and raising when a weight is missing or of another
    shape (the rule evaluation applies in the runner); returns the checkpoint's ``meta``."""
    loaded = load_file(checkpoint)
    report = load_state_dict(model, extract_state_dict(loaded), strict=False, source=checkpoint)
    require_every_weight(model, report, checkpoint)
    unused = report['unexpected_keys']
    if unused:
        warnings.warn(f'{checkpoint}: {len(unused)} tensors the model does not have are skipped: '
                      f'{", ".join(unused[:10])}{" ..." if len(unused) > 10 else ""}')
    return (loaded.get('meta') if isinstance(loaded, dict) else None) or {}


def _test_pipeline_steps(model: nn.Module) -> List[dict]:
    cfg = getattr(model, 'cfg', None)
    if cfg is None or 'test_pipeline' not in cfg:
        raise ValueError('inference_model needs model.cfg.test_pipeline: build the model with init_model(config)')
    return [step for step in cfg.test_pipeline if step['type'] != 'LoadAnnotations']


def inference_model(model: nn.Module, img: Union[ImageInput, Sequence[ImageInput]]) -> Union[dict, List[dict]]:
    """Segment image file(s) or BGR ``np.ndarray`` image(s) with ``model.cfg.test_pipeline``.

    Each result is a dict with the image's meta keys, ``seg_logits`` (C, H, W) and ``pred_sem_seg`` (H, W, int64)
    at the original image size. A single input gives a single dict, a list gives a list. Images run one at a
    time, so they may differ in size.
    """
    steps = _test_pipeline_steps(model)
    from_file = Compose(steps)
    if not steps or not steps[0]['type'].startswith('Load'):
        raise ValueError(f'test_pipeline must start with an image loader (LoadImageFromFile), got {steps[:1]}')
    from_array = Compose(steps[1:])  # arrays skip the loader
    images = list(img) if isinstance(img, (list, tuple)) else [img]
    results = []
    for image in images:
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f'an image array must be H x W x 3 (BGR), got shape {image.shape}')
            packed = from_array(dict(img=image, img_path=None, img_shape=image.shape[:2], ori_shape=image.shape[:2]))
        else:
            packed = from_file(dict(img_path=str(image)))
        batch = dict(inputs=[packed['inputs']], data_samples=[packed['data_samples']])
        with torch.no_grad():
            results.extend(model.test_step(batch))
    return results if isinstance(img, (list, tuple)) else results[0]


def show_result(img: ImageInput, result: dict, palette: Optional[Palette] = None, opacity: float = 0.5,
                out_file: Optional[str] = None) -> np.ndarray:
    """Draw ``result['pred_sem_seg']`` over ``img`` (a path or a BGR array); returns the BGR overlay and writes
    it to ``out_file`` when given. ``palette``: one RGB colour per class (default: a fixed random one)."""
    if isinstance(img, (str, Path)):
        image = cv2.imread(str(img), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f'cannot read image {img}')
    else:
        image = img
    overlay = draw_overlay(image, result['pred_sem_seg'], palette, opacity)
    if out_file is not None:
        os.makedirs(os.path.dirname(os.path.abspath(out_file)), exist_ok=True)
        if not cv2.imwrite(str(out_file), overlay):
            raise OSError(f'cannot write {out_file} (is the extension an image format?)')
    return overlay
