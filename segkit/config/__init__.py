"""Python config files with MMEngine semantics."""
from .config import Config, ConfigError
from .dict_action import DictAction, parse_cfg_options

__all__ = ['Config', 'ConfigError', 'DictAction', 'parse_cfg_options']
