"""segkit: a config-driven semantic-segmentation toolbox that speaks MMSegmentation 1.x."""
from .config import Config, DictAction
from .registry import (DATASETS, HOOKS, METRICS, MODELS, OPTIMIZERS, PARAM_SCHEDULERS, TRANSFORMS,
                       Registry)

__version__ = '0.1.0'

__all__ = ['Config', 'DictAction', 'Registry', 'MODELS', 'DATASETS', 'TRANSFORMS', 'HOOKS', 'OPTIMIZERS',
           'PARAM_SCHEDULERS', 'METRICS', '__version__']
