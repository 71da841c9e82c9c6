"""Python config files with MMEngine's inheritance rules.

A config file is Python whose top-level variables become the config. ``_base_`` names files (relative to the
including file, or MMEngine's ``mmseg::segformer/...py`` for a file in segkit's configs folder) that are loaded
first and merged in order; the file's own values are then merged on top:
dicts merge key by key, everything else (lists included) is replaced whole, and a dict holding
``_delete_=True`` replaces the inherited dict instead of merging into it.

Base values can be reused in a child three ways: as plain Python names (``train_pipeline`` defined in a base is
readable in the child), as ``{{_base_.crop_size}}`` (MMEngine's text substitution), and through the predefined
``{{fileDirname}}``, ``{{fileBasename}}``, ``{{fileBasenameNoExtension}}`` and ``{{fileExtname}}``.
"""
from __future__ import annotations

import copy
import difflib
import importlib
import json
import os
import re
import sys
import traceback
import types
import uuid
import warnings
from typing import Any, Dict, Iterator, List, Optional, Tuple

from addict import Dict as AddictDict

BASE_KEY = '_base_'
DELETE_KEY = '_delete_'
# MMEngine's package-scoped bases (``'mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py'``) name files
# in segkit's configs folder, which keeps MMSeg's file names: a user's package can inherit them from anywhere.
# A wheel ships the folder as ``segkit/configs`` (see setup.py); a source checkout has it beside the package.
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PACKAGED_CONFIGS = os.path.join(_PACKAGE_DIR, 'configs')
CONFIGS_DIR = (_PACKAGED_CONFIGS if os.path.isdir(_PACKAGED_CONFIGS)
               else os.path.join(os.path.dirname(_PACKAGE_DIR), 'configs'))
PACKAGE_SCOPES = ('mmseg', 'segkit')
_BASE_REF = re.compile(r'\{\{\s*_base_\.([\w.]+)\s*\}\}')
_PREDEFINED = re.compile(r'\{\{\s*(fileDirname|fileBasename|fileBasenameNoExtension|fileExtname)\s*\}\}')


class ConfigError(Exception):
    """A config file cannot be read, merged or overridden; the message names the file and key."""


class ConfigDict(AddictDict):
    """A dict with attribute access whose missing keys raise instead of appearing empty (unlike addict)."""

    def __missing__(self, name: str) -> Any:
        raise KeyError(name)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            close = difflib.get_close_matches(name, [str(k) for k in self.keys()], n=3)
            hint = f'; did you mean {", ".join(map(repr, close))}?' if close else ''
            raise AttributeError(f'config has no key {name!r}{hint}') from None

    def to_dict(self) -> dict:
        return _to_plain(self)

    def __deepcopy__(self, memo: dict) -> 'ConfigDict':
        return ConfigDict({copy.deepcopy(k, memo): copy.deepcopy(v, memo) for k, v in self.items()})

    def copy(self) -> 'ConfigDict':
        return ConfigDict(dict(self))


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_to_plain(v) for v in value)
    return value


def _to_config_dict(value: Any) -> Any:
    """Wrap every nested dict (also inside lists and tuples) as a ConfigDict."""
    if isinstance(value, dict):
        return ConfigDict({k: _to_config_dict(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_to_config_dict(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_to_config_dict(v) for v in value)
    return value


def merge_dicts(child: dict, base: dict) -> dict:
    """Merge ``child`` onto a copy of ``base``: dicts recursively, other values replaced, ``_delete_`` honoured."""
    merged = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and value.get(DELETE_KEY, False):
            merged[key] = _strip_delete(value)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_dicts(value, merged[key])
        else:
            merged[key] = _strip_delete(value)
    return merged


def _strip_delete(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_delete(v) for k, v in value.items() if k != DELETE_KEY}
    if isinstance(value, list):
        return [_strip_delete(v) for v in value]
    return value


def _copies_of(cfg: dict, key: str) -> Iterator[str]:
    """Dotted paths outside ``cfg[key]`` whose value equals it: where a config file reused the variable.

    Only strings, lists, tuples and dicts count: equal numbers and flags are too common to mean a copy.
    """
    value = cfg[key]
    if not isinstance(value, (str, list, tuple, dict)) or not value:
        return

    def search(node: Any, path: str) -> Iterator[str]:
        if type(node) is type(value) or (isinstance(node, dict) and isinstance(value, dict)):
            if node == value:
                yield path
                return
        if isinstance(node, dict):
            for k, v in node.items():
                yield from search(v, f'{path}.{k}')
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                yield from search(v, f'{path}.{i}')

    for other, node in cfg.items():
        if other != key:
            yield from search(node, other)


class Config:
    """A merged config: attribute and item access, ``pretty_text``, ``dump`` and dotted-key overrides."""

    def __init__(self, cfg_dict: Optional[dict] = None, filename: Optional[str] = None) -> None:
        if cfg_dict is not None and not isinstance(cfg_dict, dict):
            raise TypeError(f'cfg_dict must be a dict, got {type(cfg_dict).__name__}')
        object.__setattr__(self, '_cfg_dict', _to_config_dict(dict(cfg_dict or {})))
        object.__setattr__(self, '_filename', filename)

    # -- loading -----------------------------------------------------------------------------------------------
    @staticmethod
    def fromfile(filename: str, import_custom_modules: bool = True) -> 'Config':
        """Load ``filename`` (a path, or ``mmseg::`` + a path in segkit's configs folder) with its ``_base_``
        chain; import ``custom_imports`` modules unless told not to."""
        filename = resolve_config_path(str(filename), os.getcwd())
        cfg_dict = _load_file(filename, chain=())
        cfg = Config(cfg_dict, filename=filename)
        if import_custom_modules and cfg_dict.get('custom_imports'):
            import_custom_modules_from_cfg(cfg_dict['custom_imports'], filename)
        return cfg

    # -- access ------------------------------------------------------------------------------------------------
    @property
    def filename(self) -> Optional[str]:
        return self._filename

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cfg_dict, name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._cfg_dict[name] = _to_config_dict(value)

    def __delattr__(self, name: str) -> None:
        del self._cfg_dict[name]

    def __getitem__(self, name: str) -> Any:
        return self._cfg_dict[name]

    def __setitem__(self, name: str, value: Any) -> None:
        self._cfg_dict[name] = _to_config_dict(value)

    def __delitem__(self, name: str) -> None:
        del self._cfg_dict[name]

    def __contains__(self, name: object) -> bool:
        return name in self._cfg_dict

    def __iter__(self) -> Iterator[str]:
        return iter(self._cfg_dict)

    def __len__(self) -> int:
        return len(self._cfg_dict)

    def __eq__(self, other: object) -> bool:
        other_dict = other._cfg_dict if isinstance(other, Config) else other
        return _to_plain(self._cfg_dict) == _to_plain(other_dict)

    def __repr__(self) -> str:
        return f'Config (path: {self._filename}): {self.to_dict()}'

    def __deepcopy__(self, memo: dict) -> 'Config':
        return Config(copy.deepcopy(self.to_dict(), memo), self._filename)

    def copy(self) -> 'Config':
        return copy.deepcopy(self)

    def get(self, name: str, default: Any = None) -> Any:
        return self._cfg_dict.get(name, default)

    def keys(self):
        return self._cfg_dict.keys()

    def items(self):
        return self._cfg_dict.items()

    def values(self):
        return self._cfg_dict.values()

    def pop(self, name: str, *default: Any) -> Any:
        return self._cfg_dict.pop(name, *default)

    def setdefault(self, name: str, default: Any = None) -> Any:
        return self._cfg_dict.setdefault(name, _to_config_dict(default))

    def to_dict(self) -> dict:
        return _to_plain(self._cfg_dict)

    # -- overrides ---------------------------------------------------------------------------------------------
    def merge_from_dict(self, options: Dict[str, Any], allow_list_keys: bool = True) -> None:
        """Apply ``{'model.decode_head.num_classes': 11, 'train_pipeline.1.type': 'X'}`` style overrides.

        A missing part of the path that resembles an existing key (``model.decod_head.x``) is an error naming
        it; any other missing part is created with a warning. An integer part indexes into a list.

        Overriding a top-level variable that the file copied into other keys when it was read (``train_pipeline``
        into ``train_dataloader.dataset.pipeline``, ``data_root`` into each dataset, ``val_dataloader`` into
        ``test_dataloader``) leaves the copies unchanged, as in MMEngine; a warning names them.

        A new key that resembles an existing one (``dtype`` beside ``type``) is added with a warning, unless the
        same overrides change that dict's ``type``: another type takes other arguments.
        """
        retyped = {dotted.rpartition('.')[0] for dotted in options if dotted.rpartition('.')[2] == 'type'}
        for dotted, value in options.items():
            top, _, rest = dotted.partition('.')
            copies = list(_copies_of(self._cfg_dict, top)) if top in self._cfg_dict else []
            self._set_dotted(dotted, value, allow_list_keys, warn_new_key=dotted.rpartition('.')[0] not in retyped)
            if copies:
                instead = ', '.join('.'.join(filter(None, (path, rest))) for path in copies)
                warnings.warn(f'override {dotted!r} changes {top!r} but not the copies of it that the config file '
                              f'made when it was read: {", ".join(copies)}; to change those too, override {instead}')

    def _set_dotted(self, dotted: str, value: Any, allow_list_keys: bool, warn_new_key: bool = True) -> None:
        parts = dotted.split('.')
        node: Any = self._cfg_dict
        for depth, part in enumerate(parts):
            where = '.'.join(parts[:depth]) or '<top level>'
            last = depth == len(parts) - 1
            if isinstance(node, list):
                if not (allow_list_keys and part.isdigit()):
                    raise ConfigError(f'override {dotted!r}: {where} is a list; index it with a number, '
                                      f'got {part!r}')
                index = int(part)
                if index >= len(node):
                    raise ConfigError(f'override {dotted!r}: index {index} is out of range for {where} '
                                      f'(a list of {len(node)})')
                if last:
                    node[index] = _merge_override(node[index], value)
                    return
                node = node[index]
            elif isinstance(node, dict):
                if last:
                    if part not in node and warn_new_key:
                        close = difflib.get_close_matches(part, [str(k) for k in node], n=3)
                        if close:
                            warnings.warn(f'override {dotted!r} adds a new key {part!r} to {where}; '
                                          f'did you mean {", ".join(map(repr, close))}?')
                    node[part] = _merge_override(node.get(part), value)
                    return
                if part not in node:
                    close = difflib.get_close_matches(part, [str(k) for k in node], n=3)
                    if close:
                        raise ConfigError(f'override {dotted!r}: {where} has no key {part!r}; '
                                          f'did you mean {", ".join(map(repr, close))}?')
                    warnings.warn(f'override {dotted!r}: {where} has no key {part!r}; creating it')
                    node[part] = ConfigDict()
                node = node[part]
            else:
                raise ConfigError(f'override {dotted!r}: {where} is a {type(node).__name__}, not a dict or list')

    # -- output ------------------------------------------------------------------------------------------------
    @property
    def text(self) -> str:
        """The source text of the loaded file (empty for a config built in Python)."""
        if self._filename and os.path.isfile(self._filename):
            with open(self._filename, encoding='utf-8') as f:
                return f.read()
        return ''

    @property
    def pretty_text(self) -> str:
        """The merged config as Python source that ``Config.fromfile`` reads back to an equal config."""
        return ''.join(f'{key} = {format_value(value, 0)}\n' for key, value in self.to_dict().items())

    def dump(self, path: Optional[str] = None) -> Optional[str]:
        """Write ``pretty_text`` to ``path`` (``.py``), or return it when no path is given."""
        if path is None:
            return self.pretty_text
        os.makedirs(os.path.dirname(os.path.abspath(path)) or '.', exist_ok=True)
        with open(path, 'w', encoding='utf-8') as f:
            f.write(self.pretty_text)
        return None


def _merge_override(old: Any, new: Any) -> Any:
    if isinstance(old, dict) and isinstance(new, dict):
        return _to_config_dict(merge_dicts(new, old))
    return _to_config_dict(new)


def format_value(value: Any, indent: int) -> str:
    """Python source for a config value (dict/list/tuple/str/number/bool/None), indented for readability."""
    pad, inner = ' ' * indent, ' ' * (indent + 4)
    if isinstance(value, dict):
        if not value:
            return 'dict()'
        if all(isinstance(k, str) and k.isidentifier() and not _is_keyword(k) for k in value):
            items = [f'{inner}{k}={format_value(v, indent + 4)}' for k, v in value.items()]
            return 'dict(\n' + ',\n'.join(items) + ')'
        items = [f'{inner}{k!r}: {format_value(v, indent + 4)}' for k, v in value.items()]
        return '{\n' + ',\n'.join(items) + f'\n{pad}}}'
    if isinstance(value, (list, tuple)):
        open_, close = ('[', ']') if isinstance(value, list) else ('(', ')')
        if not value:
            return open_ + close
        if isinstance(value, tuple) and len(value) == 1:
            return f'({format_value(value[0], indent)},)'
        parts = [format_value(v, indent + 4) for v in value]
        if sum(len(p) for p in parts) < 80 and not any('\n' in p for p in parts):
            return open_ + ', '.join(parts) + close
        return open_ + '\n' + ',\n'.join(inner + p for p in parts) + f'\n{pad}{close}'
    if isinstance(value, float) and (value != value or value in (float('inf'), float('-inf'))):
        return f"float('{value}')"
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    raise ConfigError(f'cannot write a config value of type {type(value).__name__}: {value!r}')


def _is_keyword(name: str) -> bool:
    import keyword
    return keyword.iskeyword(name)


# -- reading files -------------------------------------------------------------------------------------------------

def _load_file(filename: str, chain: Tuple[str, ...]) -> dict:
    """Read one config file and everything it inherits, returning the merged plain dict."""
    if filename in chain:
        raise ConfigError(f'circular _base_ inheritance: {" -> ".join(chain + (filename,))}')
    if not os.path.isfile(filename):
        raise ConfigError(f'config file not found: {filename}')
    ext = os.path.splitext(filename)[1]
    with open(filename, encoding='utf-8') as f:
        text = f.read()
    text = _substitute_predefined(text, filename)

    base_files = _read_base_list(text, filename, ext)
    base_dicts = []
    for base in base_files:
        try:
            base_path = resolve_config_path(base, os.path.dirname(filename))
        except ConfigError as e:
            raise ConfigError(f'{filename}: _base_ {e}') from None
        if not os.path.isfile(base_path):
            raise ConfigError(f'{filename}: _base_ file {base!r} not found (looked for {base_path})')
        base_dicts.append((base_path, _load_file(base_path, chain + (filename,))))

    merged_base: dict = {}
    owner: Dict[str, str] = {}
    for base_path, base_dict in base_dicts:
        for key in base_dict:
            if key in owner:
                raise ConfigError(f'{filename}: key {key!r} is defined in two of its bases, '
                                  f'{owner[key]} and {base_path}; define it in one only')
            owner[key] = base_path
        merged_base.update(base_dict)

    text, placeholders = _hide_base_refs(text)
    own = _parse_text(text, filename, ext, merged_base)
    own = _resolve_base_refs(own, placeholders, merged_base, filename)
    return merge_dicts(own, merged_base)


def resolve_config_path(path: str, directory: str) -> str:
    """A config path relative to ``directory``, or ``mmseg::``/``segkit::`` + a path in segkit's configs folder."""
    scope, sep, rest = path.partition('::')
    if not sep:
        return os.path.normpath(os.path.join(directory, os.path.expanduser(path)))
    if scope not in PACKAGE_SCOPES:
        raise ConfigError(f'{path!r} names the package {scope!r}; segkit resolves '
                          f'{" and ".join(s + "::" for s in PACKAGE_SCOPES)} (to its configs folder {CONFIGS_DIR})')
    return os.path.normpath(os.path.join(CONFIGS_DIR, rest))


def _substitute_predefined(text: str, filename: str) -> str:
    name = os.path.basename(filename)
    values = dict(fileDirname=os.path.dirname(filename), fileBasename=name,
                  fileBasenameNoExtension=os.path.splitext(name)[0], fileExtname=os.path.splitext(name)[1])
    return _PREDEFINED.sub(lambda m: values[m.group(1)].replace('\\', '/'), text)


def _read_base_list(text: str, filename: str, ext: str) -> List[str]:
    """The ``_base_`` entries of a file, read without running it (so a missing base is reported first)."""
    if ext == '.py':
        import ast
        try:
            tree = ast.parse(text, filename=filename)
        except SyntaxError as e:
            raise ConfigError(f'{filename}, line {e.lineno}: syntax error: {e.msg}') from None
        bases: Any = []
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == BASE_KEY
                                                    for t in node.targets):
                try:
                    bases = ast.literal_eval(node.value)
                except ValueError:
                    raise ConfigError(f'{filename}, line {node.lineno}: _base_ must be a string or a list of '
                                      f'strings') from None
    else:
        bases = (_parse_data_file(text, filename, ext) or {}).get(BASE_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, (list, tuple)) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f'{filename}: _base_ must be a string or a list of strings, got {bases!r}')
    return list(bases)


def _hide_base_refs(text: str) -> Tuple[str, Dict[str, str]]:
    """Replace each ``{{_base_.key}}`` by a unique quoted placeholder, resolved after parsing."""
    placeholders: Dict[str, str] = {}

    def repl(match: 're.Match') -> str:
        token = f'_segkit_base_{uuid.uuid4().hex}'
        placeholders[token] = match.group(1)
        return f'"{token}"'
    return _BASE_REF.sub(repl, text), placeholders


def _resolve_base_refs(value: Any, placeholders: Dict[str, str], base: dict, filename: str) -> Any:
    if isinstance(value, dict):
        return {k: _resolve_base_refs(v, placeholders, base, filename) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_resolve_base_refs(v, placeholders, base, filename) for v in value)
    if isinstance(value, str) and value in placeholders:
        node: Any = base
        for part in placeholders[value].split('.'):
            if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif isinstance(node, dict) and part in node:
                node = node[part]
            else:
                raise ConfigError(f'{filename}: {{{{_base_.{placeholders[value]}}}}} refers to a key that '
                                  f'its bases do not define')
        return copy.deepcopy(node)
    return value


def _parse_data_file(text: str, filename: str, ext: str) -> dict:
    try:
        if ext == '.json':
            return json.loads(text)
        import yaml
        return yaml.safe_load(text) or {}
    except Exception as e:
        raise ConfigError(f'{filename}: cannot parse: {e}') from None


def _parse_text(text: str, filename: str, ext: str, base: dict) -> dict:
    """The file's own top-level values (for Python: variables it assigned, base names it did not touch)."""
    if ext in ('.json', '.yaml', '.yml'):
        data = _parse_data_file(text, filename, ext)
        data.pop(BASE_KEY, None)
        return data
    if ext != '.py':
        raise ConfigError(f'{filename}: unsupported config type {ext!r} (use .py, .json or .yaml)')
    inherited = {k: copy.deepcopy(v) for k, v in base.items()}
    namespace: Dict[str, Any] = dict(inherited, __file__=filename, __name__='__segkit_config__')
    try:
        exec(compile(text, filename, 'exec'), namespace)
    except SyntaxError as e:
        raise ConfigError(f'{filename}, line {e.lineno}: syntax error: {e.msg}') from None
    except Exception as e:
        lines = [fs.lineno for fs in traceback.extract_tb(e.__traceback__) if fs.filename == filename]
        where = f', line {lines[-1]}' if lines else ''
        raise ConfigError(f'{filename}{where}: {type(e).__name__}: {e}') from None
    own = {}
    for key, value in namespace.items():
        if key.startswith('__') or key == BASE_KEY:
            continue
        if isinstance(value, (types.ModuleType, types.FunctionType, type)):
            continue
        if key in base and value == base[key]:
            continue  # a base value the file only read (or set to the same value)
        own[key] = value
    return own


def import_custom_modules_from_cfg(custom_imports: dict, filename: Optional[str] = None) -> List[Any]:
    """Import ``custom_imports['imports']`` so the classes they register become buildable."""
    imports = custom_imports.get('imports', [])
    if isinstance(imports, str):
        imports = [imports]
    allow_failed = custom_imports.get('allow_failed_imports', False)
    modules = []
    for name in imports:
        try:
            modules.append(importlib.import_module(name))
        except ImportError as e:
            if not allow_failed:
                where = f'{filename}: ' if filename else ''
                raise ConfigError(f'{where}custom_imports could not import {name!r}: {e}. '
                                  f'{_import_hint(name, e)}') from e
            warnings.warn(f'custom_imports: {name!r} failed to import and is skipped: {e}')
    return modules


def _import_hint(module: str, error: ImportError) -> str:
    """What to do about a user's package that does not import; most often it sits in the working directory,
    which a script such as ``tools/train.py`` does not put on ``sys.path``."""
    top, cwd = module.partition('.')[0], os.getcwd()
    missing_itself = (error.name or '').partition('.')[0] == top
    cwd_on_path = any(os.path.abspath(entry or '.') == cwd for entry in sys.path)
    if missing_itself and not cwd_on_path and (os.path.isdir(top) or os.path.isfile(f'{top}.py')):
        return (f'{top!r} is in the working directory {cwd}, which is not on sys.path when a script such as '
                f'tools/train.py runs: run with PYTHONPATH=. (as for MMSeg) or install the package')
    return f'Is the package installed or on PYTHONPATH (sys.path[0] = {sys.path[0]!r})?'
