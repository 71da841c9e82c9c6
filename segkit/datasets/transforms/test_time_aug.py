"""``TestTimeAug``: run every combination of alternative transforms and return the views as lists."""
from __future__ import annotations

import copy
import itertools
from typing import Callable, List, Sequence, Union

from ...registry import TRANSFORMS
from .base import BaseTransform, Compose


@TRANSFORMS.register_module()
class TestTimeAug(BaseTransform):
    """MMCV's test-time augmentation.

    ``transforms`` is a list of stages, each a list of alternatives; one view is made for every choice of
    one alternative per stage (the Cartesian product, first stage varying slowest), each from a deep copy
    of the input. The output maps every key to the list of its values over the views, e.g.
    ``{'inputs': [t0, t1, ...], 'data_samples': [d0, d1, ...]}`` after a ``PackSegInputs`` stage.
    """

    def __init__(self, transforms: Sequence[Sequence[Union[dict, Callable]]]) -> None:
        stages = [Compose(stage).transforms for stage in transforms]
        self.subroutines: List[Compose] = [Compose(list(chain)) for chain in itertools.product(*stages)]

    def transform(self, results: dict) -> dict:
        views = []
        for subroutine in self.subroutines:
            view = subroutine(copy.deepcopy(results))
            if view is None:
                raise RuntimeError(f'TestTimeAug: {subroutine!r} dropped {results.get("img_path")}')
            views.append(view)
        return {key: [view[key] for view in views] for key in views[0]}

    def __repr__(self) -> str:
        return f'{type(self).__name__}({len(self.subroutines)} views: {self.subroutines!r})'
