"""Seeding and saving/restoring the global random number generators (python, numpy, torch, CUDA).

States are kept as plain lists, ints and tensors so a checkpoint holding them loads with
``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import logging
import os
import random
from contextlib import contextmanager
from typing import Any, Dict, Iterator

import numpy as np
import torch

logger = logging.getLogger('segkit')


def set_random_seed(seed: int, deterministic: bool = False) -> None:
    """Seed python's ``random``, numpy and torch (all devices); with ``deterministic`` also make torch choose
    deterministic kernels (``torch.use_deterministic_algorithms`` and cuDNN's flags; cuDNN benchmarking off)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too
    if deterministic:
        if torch.backends.cudnn.benchmark:
            logger.warning('deterministic=True turns off cudnn_benchmark')
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        # cuBLAS needs a fixed workspace to be deterministic; only effective before CUDA initialises.
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
        torch.use_deterministic_algorithms(True)


def capture_rng_state() -> Dict[str, Any]:
    """This process's generator states, in weights-only-loadable form."""
    version, internal, gauss_next = random.getstate()
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        'python': [version, list(internal), gauss_next],
        'numpy': {'kind': kind, 'keys': keys.tolist(), 'pos': int(pos), 'has_gauss': int(has_gauss),
                  'cached_gaussian': float(cached_gaussian)},
        'torch': torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    """Put back what :func:`capture_rng_state` returned."""
    version, internal, gauss_next = state['python']
    random.setstate((version, tuple(internal), gauss_next))
    numpy_state = state['numpy']
    np.random.set_state((numpy_state['kind'], np.asarray(numpy_state['keys'], dtype=np.uint32), numpy_state['pos'],
                         numpy_state['has_gauss'], numpy_state['cached_gaussian']))
    torch.set_rng_state(state['torch'].cpu())
    if 'cuda' in state and torch.cuda.is_available():
        cuda_states = state['cuda']
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])
        else:
            logger.warning(f'the checkpoint holds CUDA RNG states for {len(cuda_states)} devices, this machine '
                           f'has {torch.cuda.device_count()}: CUDA generators not restored')


@contextmanager
def preserved_rng_state() -> Iterator[None]:
    """Run a block (e.g. validation inside training) without changing what the generators produce next."""
    state = capture_rng_state()
    try:
        yield
    finally:
        restore_rng_state(state)
