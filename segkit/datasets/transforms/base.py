"""The transform protocol: a callable that takes a results dict and returns it (or None to drop it)."""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Union

from ...registry import TRANSFORMS


class BaseTransform:
    """Base class of MMCV-style transforms: subclasses implement ``transform(results) -> results``.

    User transforms written for MMSeg (``class MyAug(BaseTransform): def transform(self, results)``)
    only need their import changed to this class.
    """

    def __call__(self, results: dict) -> Optional[dict]:
        return self.transform(results)

    def transform(self, results: dict) -> Optional[dict]:
        raise NotImplementedError(f'{type(self).__name__} must implement transform(results)')


class Compose:
    """Apply transforms (config dicts built with ``TRANSFORMS``, or callables) one after another.

    A transform returning None stops the chain and the composition returns None.
    """

    def __init__(self, transforms: Optional[Sequence[Union[dict, Callable]]]) -> None:
        self.transforms: List[Callable] = []
        for transform in transforms or []:
            if isinstance(transform, dict):
                transform = TRANSFORMS.build(transform)
            if not callable(transform):
                raise TypeError(f'a pipeline step must be a config dict or a callable, got {transform!r}')
            self.transforms.append(transform)

    def __call__(self, results: dict) -> Optional[dict]:
        for transform in self.transforms:
            results = transform(results)
            if results is None:
                return None
        return results

    def __repr__(self) -> str:
        steps = ''.join(f'\n    {t!r}' for t in self.transforms)
        return f'{type(self).__name__}({steps})'
