"""Checkpoint reading and writing: safe loading, clear mismatch reports, atomic saves."""
from __future__ import annotations

import os
import tempfile
import warnings
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Union

import torch
import torch.nn as nn


class CheckpointError(RuntimeError):
    """A checkpoint does not fit the model it is loaded into."""


class CheckpointMismatchError(CheckpointError):
    """A strict load met missing, unexpected or wrong-shape keys. ``details`` names them all; ``report`` is
    :func:`load_state_dict`'s report; the message adds how to load the matching tensors only from Python (the
    command-line tools give their own advice, see ``segkit.engine.cli``)."""

    def __init__(self, details: str, report: Dict[str, List[str]], source: str) -> None:
        super().__init__(f'{details}\n(from Python, segkit.checkpoint.load_checkpoint(model, path, strict=False) '
                         f'loads the matching tensors only)')
        self.details, self.report, self.source = details, report, source


# How a ``torch.save`` file starts: a zip archive, or (legacy format) the pickled magic number, protocol 2 or later.
_ZIP_MAGIC = b'PK\x03\x04'
_LEGACY_MAGIC = b'\x8a\x0a' + torch.serialization.MAGIC_NUMBER.to_bytes(10, 'little')


def load_file(path: str, map_location: Union[str, torch.device] = 'cpu', weights_only: bool = True) -> Any:
    """``torch.load`` with ``weights_only=True`` by default and a clear error for a missing or remote file."""
    if str(path).startswith(('http://', 'https://')):
        raise FileNotFoundError(
            f'segkit never downloads weights: {path} is a URL. Download it yourself, then point the config '
            f'at the local file (e.g. init_cfg=dict(type="Pretrained", checkpoint="/path/to/file.pth") '
            f'or load_from="/path/to/file.pth").')
    if not os.path.isfile(path):
        shown = path if os.path.isabs(path) else f'{path} (resolved to {os.path.abspath(path)})'
        raise FileNotFoundError(f'checkpoint file not found: {shown}')
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError ... for corrupt files
        if not _is_torch_file(path):
            raise CheckpointError(f'{path} is not a PyTorch checkpoint ({os.path.getsize(path)} bytes, not in a format '
                                  f'torch.save writes: a zip archive or the legacy pickle); check the path, or the '
                                  f'file is corrupt or truncated') from e
        if weights_only and 'weights_only' in str(e):
            return _load_with_inert_stand_ins(path, map_location, e)
        raise CheckpointError(f'cannot read checkpoint {path}: {type(e).__name__}: {e}') from e


def _is_torch_file(path: str) -> bool:
    """Whether ``path`` starts as a file written by ``torch.save`` does."""
    with open(path, 'rb') as f:
        head = f.read(32)
    return head.startswith(_ZIP_MAGIC) or _LEGACY_MAGIC in head


def _load_with_inert_stand_ins(path: str, map_location: Union[str, torch.device], error: Exception) -> Any:
    """Load a checkpoint whose extras pickle foreign classes (e.g. MMEngine's ``message_hub``), safely.

    Each foreign global is replaced by an inert stand-in class that only stores what it is given, so nothing
    from the file is executed; tensors and plain containers (the weights) load as usual.
    """
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:
        names = []
    if not names:
        raise CheckpointError(f'cannot read checkpoint {path}: {type(error).__name__}: {error}') from error
    stand_ins = [(_inert_class(name), name) for name in names]
    with torch.serialization.safe_globals(stand_ins):
        try:
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as e:
            raise CheckpointError(f'cannot read checkpoint {path}: {type(e).__name__}: {e}') from e
    warnings.warn(f'{path}: {len(names)} non-tensor object type(s) ({", ".join(sorted(names)[:5])}'
                  f'{", ..." if len(names) > 5 else ""}) were read as inert placeholders; the weights are intact')
    return checkpoint


def _inert_class(qualified_name: str) -> type:
    """A class that accepts any construction arguments or pickled state and does nothing with them."""
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self: Any, state: Any) -> None:
        self.state = state

    module, _, name = qualified_name.rpartition('.')
    return type(name, (), {'__module__': module, '__init__': __init__, '__setstate__': __setstate__,
                           '__reduce__': None})


def extract_state_dict(checkpoint: Any, prefix: Optional[str] = None) -> 'OrderedDict[str, torch.Tensor]':
    """The tensors of a checkpoint: a bare state_dict or ``{'state_dict'|'model': ...}``; ``module.`` stripped.

    ``prefix`` keeps only keys under it, with the prefix removed (e.g. ``'backbone.'``).
    """
    if isinstance(checkpoint, dict) and 'state_dict' in checkpoint:
        checkpoint = checkpoint['state_dict']
    elif isinstance(checkpoint, dict) and 'model' in checkpoint and isinstance(checkpoint['model'], dict):
        checkpoint = checkpoint['model']
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'expected a state_dict (a dict of tensors), got {type(checkpoint).__name__}')
    state = OrderedDict()
    for key, value in checkpoint.items():
        while key.startswith('module.'):
            key = key[len('module.'):]
        state[key] = value
    if prefix:
        state = OrderedDict((k[len(prefix):], v) for k, v in state.items() if k.startswith(prefix))
        if not state:
            raise CheckpointError(f'the checkpoint has no keys under the prefix {prefix!r}')
    return state


def load_state_dict(model: nn.Module, state_dict: Dict[str, torch.Tensor], strict: bool = True,
                    source: str = 'checkpoint') -> Dict[str, List[str]]:
    """Load ``state_dict`` into ``model``, reporting missing, unexpected and wrong-shape keys together.

    With ``strict=True`` any such key raises :class:`CheckpointMismatchError` naming all of them; otherwise the
    matching tensors are loaded and the report is returned.
    """
    own = model.state_dict()
    mismatched = [f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}'
                  for k, v in state_dict.items() if k in own and hasattr(v, 'shape') and v.shape != own[k].shape]
    loadable = {k: v for k, v in state_dict.items() if k in own and (not hasattr(v, 'shape') or v.shape == own[k].shape)}
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    report = dict(missing_keys=missing, unexpected_keys=unexpected, shape_mismatch=mismatched)
    problems = []
    for title, keys in (('missing keys (in the model, not in the checkpoint)', missing),
                        ('unexpected keys (in the checkpoint, not in the model)', unexpected),
                        ('shape mismatches', mismatched)):
        if keys:
            shown = '\n    '.join(keys[:20]) + (f'\n    ... and {len(keys) - 20} more' if len(keys) > 20 else '')
            problems.append(f'  {len(keys)} {title}:\n    {shown}')
    if problems and strict:
        raise CheckpointMismatchError(f'{source} does not match {type(model).__name__}:\n' + '\n'.join(problems),
                                      report, source)
    model.load_state_dict(loadable, strict=False)
    return report


def require_every_weight(model: nn.Module, report: Dict[str, List[str]], source: str, consequence: str = '') -> None:
    """Raise :class:`CheckpointError` naming the weights a non-strict ``load_state_dict`` (its ``report``) left at
    their initialisation: missing ones (BatchNorm's ``num_batches_tracked`` counters aside, which do not affect a
    forward pass) and those of another shape. Keys the model does not have are fine. ``consequence`` is said
    after the model's name (", so ...")."""
    missing = [key for key in report['missing_keys'] if not key.endswith('num_batches_tracked')]
    left_out = missing + report['shape_mismatch']
    if left_out:
        raise CheckpointError(
            f'{source} does not provide every weight of {type(model).__name__}{consequence}; check that the config '
            f'matches the checkpoint (e.g. model.decode_head.num_classes): ' + ', '.join(left_out[:20])
            + (f' ... and {len(left_out) - 20} more' if len(left_out) > 20 else ''))


def load_checkpoint(model: nn.Module, filename: str, map_location: Union[str, torch.device] = 'cpu',
                    strict: bool = True, prefix: Optional[str] = None, weights_only: bool = True) -> Any:
    """Load weights from ``filename`` into ``model``; returns the raw checkpoint (for its ``meta``)."""
    checkpoint = load_file(filename, map_location, weights_only)
    load_state_dict(model, extract_state_dict(checkpoint, prefix), strict=strict, source=filename)
    return checkpoint


def save_checkpoint(obj: Any, path: str) -> None:
    """Write ``obj`` with ``torch.save`` to a temporary file beside ``path``, then rename it into place.

    An interruption mid-write leaves the previous file at ``path`` intact.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.tmp_', suffix='.pth', dir=directory)
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's file is private (0600); a checkpoint gets the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
