"""Name -> class registries that turn config dicts (``dict(type='Name', ...)``) into objects.

segkit keeps one registry per kind of component. MMSeg 0.x spelled the model registries
``BACKBONES``/``NECKS``/``HEADS``/``LOSSES``/``SEGMENTORS``; MMSeg 1.x folded them into ``MODELS``.
Here they are all the same object, so either decorator registers a class that any model config can name.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
from typing import Any, Dict, Iterator, List, Mapping, Optional, Union

_BUILTINS_LOADED = False
SCOPES = ('mmseg', 'mmengine', 'mmcv', 'mmdet', 'mmpretrain', 'segkit')


def import_builtin_modules() -> None:
    """Import segkit's own component modules so that their classes are registered.

    Done lazily, on the first registry miss, so that ``import segkit`` stays cheap and free of import cycles.
    """
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    for name in ('segkit.models', 'segkit.datasets', 'segkit.evaluation', 'segkit.engine'):
        importlib.import_module(name)


def _is_builtin(obj: Any) -> bool:
    return (getattr(obj, '__module__', None) or '').partition('.')[0] == 'segkit'


def find_type_keys(cfg: Any, name: str, path: str = '') -> List[str]:
    """Dotted paths (``model.decode_head.loss_decode.0.type``, as ``--cfg-options`` spells them) of the
    ``type`` keys in ``cfg`` whose value is ``name``."""
    found = []
    if isinstance(cfg, Mapping):
        if cfg.get('type') == name:
            found.append(f'{path}type')
        for key, value in cfg.items():
            found += find_type_keys(value, name, f'{path}{key}.')
    elif isinstance(cfg, (list, tuple)):
        for index, value in enumerate(cfg):
            found += find_type_keys(value, name, f'{path}{index}.')
    return found


class UnknownTypeError(KeyError):
    """A ``type`` that its registry does not hold; ``key_paths`` are where the config sets it, when known."""

    def __init__(self, message: str, name: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.name = name
        self.key_paths: List[str] = []

    def locate_in(self, cfg: Any) -> None:
        """Point ``key_paths`` at where ``cfg`` (the outermost config known so far) sets this type."""
        if self.name is not None:
            self.key_paths = find_type_keys(cfg, self.name) or self.key_paths

    def __str__(self) -> str:
        if self.key_paths in ([], ['type']):
            return self.message
        return f'config key {", ".join(self.key_paths)}: {self.message}'


class Registry:
    """A mapping from names to classes (or functions) that can build objects from config dicts.

    Listing or querying a registry first imports segkit's own components, and so does registering a class from
    outside segkit: a clash with a built-in name is then reported at the user's decorator, and a ``force=True``
    replacement of a built-in stays in place.
    """

    def __init__(self, name: str, variable: Optional[str] = None) -> None:
        self.name = name
        self.variable = variable or name.upper()  # how ``segkit.registry`` exports it, for messages
        self._modules: Dict[str, Any] = {}

    def __repr__(self) -> str:
        return f'Registry(name={self.name!r}, items={self.keys()})'

    def __len__(self) -> int:
        import_builtin_modules()
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __contains__(self, name: str) -> bool:
        return self.get(name, default=None) is not None

    @property
    def module_dict(self) -> Dict[str, Any]:
        import_builtin_modules()
        return dict(self._modules)

    def keys(self) -> List[str]:
        import_builtin_modules()
        return sorted(self._modules)

    def register_module(self, name: Union[str, List[str], None] = None, force: bool = False,
                        module: Optional[Any] = None) -> Any:
        """Register ``module`` under ``name`` (default: its ``__name__``); usable as a decorator or a call."""
        if name is not None and not isinstance(name, (str, list, tuple)):
            raise TypeError(f'name must be None, a str or a list of str, got {type(name).__name__}')
        if module is not None:
            self._register(module, name, force)
            return module

        def decorator(obj: Any) -> Any:
            self._register(obj, name, force)
            return obj
        return decorator

    def _register(self, obj: Any, name: Union[str, List[str], None], force: bool) -> None:
        if not (inspect.isclass(obj) or callable(obj)):
            raise TypeError(f'only classes and functions can be registered, got {type(obj).__name__}')
        if not _is_builtin(obj):
            import_builtin_modules()
        names = [obj.__name__] if name is None else ([name] if isinstance(name, str) else list(name))
        for key in names:
            taken = self._modules.get(key)
            if taken is not None and taken is not obj and not force:
                raise KeyError(
                    f'cannot register {_qualified_name(obj)} as {key!r}: {key!r} is already registered in the '
                    f'{self.name!r} registry by {_qualified_name(taken)}; pass force=True to replace it, '
                    f'or register yours under another name')
            self._modules[key] = obj

    def get(self, name: str, default: Any = ...) -> Any:
        """Return the class registered as ``name``; a miss raises KeyError unless ``default`` is given.

        An MMEngine scope prefix (``'mmseg.SegformerHead'``, ``'mmengine.AdamW'``) is accepted and ignored.
        """
        given = name
        if isinstance(name, str) and '.' in name and name.split('.', 1)[0] in SCOPES:
            name = name.split('.', 1)[1]
        if name not in self._modules:
            import_builtin_modules()
        if name in self._modules:
            return self._modules[name]
        if default is not ...:
            return default
        raise UnknownTypeError(self._unknown_message(name), given)

    def _unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(str(name), self._modules, n=3, cutoff=0.6)
        hint = f' Did you mean {", ".join(repr(c) for c in close)}?' if close else ''
        return (f'{name!r} is not registered in the {self.name!r} registry.{hint} '
                f'A custom class must be registered with @{self.variable}.register_module() (from segkit.registry) '
                f"and its module imported first, e.g. custom_imports = dict(imports=['my_pkg.my_module']) "
                f'in the config.')

    def build(self, cfg: Union[dict, Any], default_args: Optional[dict] = None) -> Any:
        """Build ``cfg['type'](**rest)``; ``default_args`` fill keys the config does not set."""
        if not isinstance(cfg, dict):
            raise TypeError(f'{self.name}: a config must be a dict with a "type" key, got {type(cfg).__name__}')
        args = dict(cfg)
        if 'type' not in args:
            if default_args is None or 'type' not in default_args:
                raise KeyError(f'{self.name}: the config {dict(cfg)} has no "type" key')
        for key, value in (default_args or {}).items():
            args.setdefault(key, value)
        obj_type = args.pop('type')
        if not (isinstance(obj_type, str) or callable(obj_type)):
            raise TypeError(f'{self.name}: "type" must be a str or a class, got {type(obj_type).__name__}')
        try:
            obj_cls = self.get(obj_type) if isinstance(obj_type, str) else obj_type
            return obj_cls(**args)
        except UnknownTypeError as e:  # this one's or a part's: say where in this config it is set
            e.locate_in(cfg)
            raise
        except TypeError as e:
            if 'argument' not in str(e):
                raise
            raise TypeError(f'{self.name}: building {getattr(obj_cls, "__name__", obj_cls)} failed: {e}') from e


def _qualified_name(obj: Any) -> str:
    return f'{getattr(obj, "__module__", "?")}.{getattr(obj, "__qualname__", repr(obj))}'


# Models: backbones, necks, heads, losses, segmentors and data preprocessors share one namespace (MMSeg 1.x).
MODELS = Registry('models')
BACKBONES = NECKS = HEADS = LOSSES = SEGMENTORS = MODELS

DATASETS = Registry('datasets')
TRANSFORMS = Registry('transforms')
DATA_SAMPLERS = Registry('data_samplers')
HOOKS = Registry('hooks')
OPTIMIZERS = Registry('optimizers')
OPTIM_WRAPPERS = Registry('optim_wrappers')
OPTIM_WRAPPER_CONSTRUCTORS = Registry('optim_wrapper_constructors')
PARAM_SCHEDULERS = Registry('param_schedulers')
METRICS = Registry('metrics')
LOOPS = Registry('loops')
VISBACKENDS = Registry('vis_backends', variable='VISBACKENDS')


def _register_torch_optimizers() -> None:
    import torch.optim
    for name in dir(torch.optim):
        obj = getattr(torch.optim, name)
        if inspect.isclass(obj) and issubclass(obj, torch.optim.Optimizer) and obj is not torch.optim.Optimizer:
            OPTIMIZERS._modules[obj.__name__] = obj  # at import: no built-in loading, as for segkit's own classes


_register_torch_optimizers()
