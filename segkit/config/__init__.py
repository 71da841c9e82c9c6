"""Python config files with MMEngine semantics."""
from .config import Config, ConfigError
from .dict_action import DictAction, parse_cfg_options
from .keys import UnknownKeyError, check_keys

__all__ = ['Config', 'ConfigError', 'DictAction', 'check_keys', 'parse_cfg_options', 'UnknownKeyError']
