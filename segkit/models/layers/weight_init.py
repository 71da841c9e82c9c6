"""Weight initialisation from MMEngine-style ``init_cfg`` dicts, including loading pretrained weights.

An ``init_cfg`` is a dict or a list of dicts. ``type`` names the initialiser (``Constant``, ``Normal``,
``TruncNormal``, ``Uniform``, ``Kaiming``, ``Xavier``, ``Pretrained``), ``layer`` the module classes it applies to
(matched against the class and its bases, e.g. ``'Conv2d'`` or ``'_BatchNorm'``), ``bias`` the value for biases,
and ``override=dict(name=..., [type=..., args])`` an attribute to initialise as a whole (with the outer
initialiser when the override gives only a name). ``Pretrained`` (``checkpoint``, ``prefix``,
``map_location``) always runs last and loads non-strictly, as MMEngine does; mismatches are logged as warnings.
"""
from __future__ import annotations

import logging
import warnings
from typing import Callable, Dict, List, Optional, Union

import torch
import torch.nn as nn

from segkit.checkpoint import extract_state_dict, load_file, load_state_dict
from segkit.registry import UnknownTypeError

InitCfg = Union[dict, List[dict], None]

logger = logging.getLogger('segkit')


def _kaiming(weight: torch.Tensor, a: float = 0, mode: str = 'fan_out', nonlinearity: str = 'relu',
             distribution: str = 'normal') -> None:
    init = nn.init.kaiming_uniform_ if distribution == 'uniform' else nn.init.kaiming_normal_
    init(weight, a=a, mode=mode, nonlinearity=nonlinearity)


def _xavier(weight: torch.Tensor, gain: float = 1.0, distribution: str = 'normal') -> None:
    init = nn.init.xavier_uniform_ if distribution == 'uniform' else nn.init.xavier_normal_
    init(weight, gain=gain)


# Weight initialisers with MMEngine's defaults; each takes the weight tensor and its own keyword arguments.
WEIGHT_INITIALIZERS: Dict[str, Callable[..., None]] = {
    'Constant': lambda w, val: nn.init.constant_(w, val),
    'Normal': lambda w, mean=0.0, std=1.0: nn.init.normal_(w, mean, std),
    'TruncNormal': lambda w, mean=0.0, std=1.0, a=-2.0, b=2.0: nn.init.trunc_normal_(w, mean, std, a, b),
    'Uniform': lambda w, a=0.0, b=1.0: nn.init.uniform_(w, a, b),
    'Kaiming': _kaiming,
    'Xavier': _xavier,
}


def resolve_init_cfg(init_cfg: InitCfg, pretrained: Optional[str], owner: str) -> InitCfg:
    """Fold MMSeg's deprecated ``pretrained='path'`` argument into ``init_cfg``."""
    if pretrained is None:
        return init_cfg
    if not isinstance(pretrained, str):
        raise TypeError(f'{owner}: pretrained must be a checkpoint path (str) or None, got {type(pretrained).__name__}')
    if init_cfg:
        raise ValueError(f'{owner}: set either init_cfg or pretrained, not both (got init_cfg={init_cfg}, '
                         f'pretrained={pretrained!r})')
    warnings.warn(f'{owner}: pretrained= is deprecated, use init_cfg=dict(type="Pretrained", checkpoint=...)',
                  DeprecationWarning, stacklevel=3)
    return dict(type='Pretrained', checkpoint=pretrained)


def load_pretrained(module: nn.Module, checkpoint: str, prefix: Optional[str] = None,
                    map_location: Union[str, torch.device] = 'cpu') -> None:
    """Load ``checkpoint`` (a local file) into ``module`` non-strictly, logging the keys that did not fit."""
    owner = type(module).__name__
    if '://' in str(checkpoint):
        raise FileNotFoundError(
            f'{owner}: init_cfg checkpoint {checkpoint!r} is a URL or model-zoo name, and segkit never downloads '
            f'weights. Download the file yourself, then set init_cfg=dict(type="Pretrained", '
            f'checkpoint="/path/to/file.pth") on this module (in a segmentor config: model.backbone.init_cfg, '
            f'or model.pretrained).')
    state_dict = extract_state_dict(load_file(checkpoint, map_location), prefix)
    report = load_state_dict(module, state_dict, strict=False, source=checkpoint)
    logger.info('%s: loaded pretrained weights from %s', owner, checkpoint)
    for title, keys in report.items():
        if keys:
            logger.warning('%s: %d %s while loading %s: %s', owner, len(keys), title.replace('_', ' '),
                           checkpoint, ', '.join(keys))


def _class_names(module: nn.Module) -> List[str]:
    return [cls.__name__ for cls in type(module).__mro__]


def _check_type(module: nn.Module, init_type: str) -> None:
    if init_type not in WEIGHT_INITIALIZERS:
        raise UnknownTypeError(f'{type(module).__name__}: unknown init_cfg type {init_type!r}; choose one of '
                               f'{sorted(WEIGHT_INITIALIZERS) + ["Pretrained"]}', init_type)


def _init_module(module: nn.Module, init_type: str, args: dict) -> None:
    """Initialise ``module.weight`` with ``init_type`` and ``module.bias`` with ``args['bias']`` (default 0)."""
    _check_type(module, init_type)
    args = dict(args)
    bias = args.pop('bias', 0.0)
    if getattr(module, 'weight', None) is not None:
        try:
            WEIGHT_INITIALIZERS[init_type](module.weight, **args)
        except TypeError as e:
            raise TypeError(f'init_cfg of type {init_type!r} got unsupported arguments {args}: {e}') from e
    if getattr(module, 'bias', None) is not None:
        nn.init.constant_(module.bias, bias)


def _apply_one(module: nn.Module, cfg: dict) -> None:
    cfg = dict(cfg)
    init_type = cfg.pop('type', None)
    if init_type == 'Pretrained':
        load_pretrained(module, **cfg)
        return
    _check_type(module, init_type)
    layers = cfg.pop('layer', None)
    overrides = cfg.pop('override', None)
    if layers is not None:
        layers = {layers} if isinstance(layers, str) else set(layers)
        for m in module.modules():
            if layers.intersection(_class_names(m)):
                _init_module(m, init_type, cfg)
    for override in [overrides] if isinstance(overrides, dict) else overrides or []:
        override = dict(override)
        name = override.pop('name', None)
        target = getattr(module, name, None) if name else None
        if not isinstance(target, nn.Module):
            raise KeyError(f'{type(module).__name__}: init_cfg override names {name!r}, which is not a submodule')
        if not override:  # only a name: the outer initialiser and its arguments
            override = dict(cfg, type=init_type)
        if 'type' not in override:
            raise KeyError(f'{type(module).__name__}: init_cfg override {name!r} has arguments but no "type"')
        _init_module(target, override.pop('type'), override)


def initialize(module: nn.Module, init_cfg: InitCfg) -> None:
    """Apply ``init_cfg`` (a dict or list of dicts, see the module docstring) to ``module``."""
    cfgs = [init_cfg] if isinstance(init_cfg, dict) else list(init_cfg or [])
    for cfg in cfgs:
        if not isinstance(cfg, dict) or 'type' not in cfg:
            raise TypeError(f'{type(module).__name__}: each init_cfg must be a dict with a "type" key, got {cfg!r}')
    for cfg in sorted(cfgs, key=lambda c: c['type'] == 'Pretrained'):
        _apply_one(module, cfg)
