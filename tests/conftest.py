"""Shared fixtures: where the real data and MMSeg reference outputs live (``../shared`` beside the checkout)."""
import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get('SEGKIT_SHARED', REPO_ROOT.parent / 'shared'))


def shared_path(*parts: str) -> Path:
    """Path under ``../shared``; skips the calling test with the reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f'{path} is absent: the shared data/reference folder is not beside this checkout '
                    f'(set SEGKIT_SHARED to its location)')
    return path


def load_reference(name: str):
    """A file from ``../shared/reference`` (plain dicts written by the parity scripts)."""
    path = shared_path('reference', name)
    if path.suffix == '.json':
        import json
        return json.loads(path.read_text())
    return torch.load(path, map_location='cpu', weights_only=False)


@pytest.fixture(autouse=True)
def _few_threads():
    """Keep unit tests light on the 2-core CI machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 2))
    yield
    torch.set_num_threads(threads)
