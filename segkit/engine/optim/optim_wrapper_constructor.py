"""Build an ``OptimWrapper`` from MMSeg's ``optim_wrapper`` config, with per-parameter lr and weight decay.

The per-parameter rules reproduce MMEngine's ``DefaultOptimWrapperConstructor``, so a config's
``paramwise_cfg`` assigns exactly the learning rates and weight decays it does in MMSeg, quirks included:

- ``custom_keys`` match as substrings of the full parameter name (``backbone.layers.0.1.0.norm1.weight``).
  When several keys match, the longest wins, and among equally long keys the alphabetically first.
  A parameter matched by a custom key ignores every other rule.
- The other rules look at the module that owns the parameter: ``norm_decay_mult`` applies to parameters of
  BatchNorm/SyncBN/GroupNorm/LayerNorm/InstanceNorm modules (by type, not by name), ``bias_lr_mult`` and
  ``bias_decay_mult`` to other modules' ``bias``, ``dwconv_decay_mult`` to convolutions with
  ``groups == in_channels``, ``flat_decay_mult`` to remaining 1-D parameters, in that order of precedence.

So with SegFormer's ``custom_keys={'norm': dict(decay_mult=0.)}`` the LayerNorm that closes each MiT stage
(named ``backbone.layers.{i}.2``, no "norm" in its name) keeps its weight decay; and ``pos_block`` (a PVT
name) matches nothing in MiT.
"""
from __future__ import annotations

import copy
import logging
from collections import defaultdict
from typing import Dict, List, Optional

import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from segkit.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS, OPTIMIZERS

from .optim_wrapper import OptimWrapper

logger = logging.getLogger('segkit')

NORM_TYPES = (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm)
PARAMWISE_KEYS = ('custom_keys', 'bias_lr_mult', 'bias_decay_mult', 'norm_decay_mult', 'dwconv_decay_mult',
                  'flat_decay_mult', 'bypass_duplicate', 'dcn_offset_lr_mult')
DECAY_MULT_KEYS = ('bias_decay_mult', 'norm_decay_mult', 'dwconv_decay_mult', 'flat_decay_mult')


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class DefaultOptimWrapperConstructor:
    """Turns ``optim_wrapper`` (minus ``paramwise_cfg``/``constructor``) and ``paramwise_cfg`` into an
    ``OptimWrapper`` for a model.

    Without ``paramwise_cfg`` the optimizer gets ``model.parameters()`` as one group. With it, every trainable
    parameter becomes its own param group carrying its ``lr``/``weight_decay`` (and the matched custom key's
    other entries); frozen parameters (``requires_grad=False``) are left out. ``dcn_offset_lr_mult`` is
    accepted for config compatibility but matches nothing: segkit has no deformable convolutions.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None) -> None:
        if not isinstance(optim_wrapper_cfg, dict) or 'optimizer' not in optim_wrapper_cfg:
            raise KeyError(f'optim_wrapper must be a dict with an "optimizer" entry, got {optim_wrapper_cfg!r}')
        self.optim_wrapper_cfg = copy.deepcopy(dict(optim_wrapper_cfg))
        self.optimizer_cfg = dict(self.optim_wrapper_cfg.pop('optimizer'))
        self.paramwise_cfg = dict(paramwise_cfg or {})
        self.base_lr = self.optimizer_cfg.get('lr')
        self.base_wd = self.optimizer_cfg.get('weight_decay')
        self._validate_paramwise_cfg()

    def _validate_paramwise_cfg(self) -> None:
        unknown = sorted(set(self.paramwise_cfg) - set(PARAMWISE_KEYS))
        if unknown:
            raise KeyError(f'optim_wrapper.paramwise_cfg has unknown keys {unknown}; '
                           f'known keys: {list(PARAMWISE_KEYS)}')
        custom_keys = self.paramwise_cfg.get('custom_keys', {})
        if not isinstance(custom_keys, dict) or not all(isinstance(v, dict) for v in custom_keys.values()):
            raise TypeError(f'optim_wrapper.paramwise_cfg.custom_keys must map names to dicts, got {custom_keys!r}')
        uses_decay = any(self.paramwise_cfg.get(k) is not None for k in DECAY_MULT_KEYS) or any(
            'decay_mult' in v for v in custom_keys.values())
        if uses_decay and self.base_wd is None:
            raise ValueError('optim_wrapper.paramwise_cfg sets a decay_mult but optim_wrapper.optimizer has no '
                             'weight_decay to multiply')
        uses_lr = self.paramwise_cfg.get('bias_lr_mult') is not None or custom_keys
        if uses_lr and self.base_lr is None:
            raise ValueError('optim_wrapper.paramwise_cfg sets an lr_mult but optim_wrapper.optimizer has no lr')

    def __call__(self, model: nn.Module) -> OptimWrapper:
        model = getattr(model, 'module', model)  # unwrap DDP
        optimizer_cfg = dict(self.optimizer_cfg)
        optimizer_cfg['params'] = self.param_groups(model) if self.paramwise_cfg else model.parameters()
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        wrapper_cfg = dict(self.optim_wrapper_cfg)
        wrapper_cfg.setdefault('type', 'OptimWrapper')
        return OPTIM_WRAPPERS.build(wrapper_cfg, default_args=dict(optimizer=optimizer))

    def param_groups(self, model: nn.Module) -> List[dict]:
        """One ``{'params': [p], 'lr': ..., 'weight_decay': ...}`` per trainable parameter, in module order."""
        custom_keys = self.paramwise_cfg.get('custom_keys', {})
        # Longest key first; ties in alphabetical order (a stable sort keeps the alphabetical pre-order).
        sorted_keys = sorted(sorted(custom_keys), key=len, reverse=True)
        matches: Dict[str, List[str]] = defaultdict(list)
        frozen: List[str] = []
        seen: set = set()
        groups: List[dict] = []
        for module_name, module in model.named_modules(remove_duplicate=False):
            for param_name, param in module.named_parameters(recurse=False):
                name = f'{module_name}.{param_name}' if module_name else param_name
                if self.paramwise_cfg.get('bypass_duplicate', False) and id(param) in seen:
                    logger.warning('%s is shared with an earlier parameter; added to the optimizer once '
                                   '(bypass_duplicate=True)', name)
                    continue
                seen.add(id(param))
                if not param.requires_grad:
                    frozen.append(name)
                    continue
                group = {'params': [param]}
                key = next((k for k in sorted_keys if k in f'{module_name}.{param_name}'), None)
                if key is not None:
                    matches[key].append(name)
                    group.update(self._custom_key_settings(custom_keys[key]))
                else:
                    group.update(self._module_rule_settings(module, param_name, param.ndim))
                groups.append(group)
        self._log_summary(custom_keys, matches, frozen)
        return groups

    def _custom_key_settings(self, key_cfg: dict) -> dict:
        settings = {'lr': self.base_lr * key_cfg.get('lr_mult', 1.0)}
        if self.base_wd is not None:
            settings['weight_decay'] = self.base_wd * key_cfg.get('decay_mult', 1.0)
        settings.update(key_cfg)  # MMEngine keeps lr_mult/decay_mult (and any other entry) in the group
        return settings

    def _module_rule_settings(self, module: nn.Module, param_name: str, ndim: int) -> dict:
        mult = {key: self.paramwise_cfg.get(key) for key in ('bias_lr_mult',) + DECAY_MULT_KEYS}
        is_norm = isinstance(module, NORM_TYPES)
        is_dwconv = isinstance(module, nn.Conv2d) and module.in_channels == module.groups
        settings = {}
        if param_name == 'bias' and not is_norm and mult['bias_lr_mult'] is not None:
            settings['lr'] = self.base_lr * mult['bias_lr_mult']
        if self.base_wd is None:
            return settings
        if is_norm and mult['norm_decay_mult'] is not None:
            settings['weight_decay'] = self.base_wd * mult['norm_decay_mult']
        elif param_name == 'bias' and mult['bias_decay_mult'] is not None:
            settings['weight_decay'] = self.base_wd * mult['bias_decay_mult']
        elif is_dwconv and mult['dwconv_decay_mult'] is not None:
            settings['weight_decay'] = self.base_wd * mult['dwconv_decay_mult']
        elif ndim == 1 and mult['flat_decay_mult'] is not None:
            settings['weight_decay'] = self.base_wd * mult['flat_decay_mult']
        return settings

    @staticmethod
    def _log_summary(custom_keys: dict, matches: Dict[str, List[str]], frozen: List[str]) -> None:
        for key, key_cfg in custom_keys.items():
            names = matches.get(key, [])
            if not names:
                logger.info('paramwise_cfg: custom key %r %s matched no parameter', key, key_cfg)
                continue
            shown = ', '.join(names[:3]) + (', ...' if len(names) > 3 else '')
            logger.info('paramwise_cfg: custom key %r %s matched %d parameters (%s)', key, key_cfg, len(names), shown)
        if frozen:
            logger.info('paramwise_cfg: %d parameters with requires_grad=False are left out of the optimizer (%s%s)',
                        len(frozen), ', '.join(frozen[:3]), ', ...' if len(frozen) > 3 else '')


def build_optim_wrapper(model: nn.Module, cfg: dict) -> OptimWrapper:
    """The ``OptimWrapper`` described by a config's ``optim_wrapper`` dict, for ``model``'s parameters.

    ``cfg`` holds ``type`` (``'OptimWrapper'``/``'AmpOptimWrapper'``), ``optimizer`` (built from OPTIMIZERS,
    which holds every ``torch.optim`` optimizer), the wrapper's own arguments, and optionally ``paramwise_cfg``
    and ``constructor`` (default ``'DefaultOptimWrapperConstructor'``).
    """
    cfg = copy.deepcopy(dict(cfg))
    constructor_type = cfg.pop('constructor', 'DefaultOptimWrapperConstructor')
    paramwise_cfg = cfg.pop('paramwise_cfg', None)
    constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(
        dict(type=constructor_type, optim_wrapper_cfg=cfg, paramwise_cfg=paramwise_cfg))
    return constructor(model)
