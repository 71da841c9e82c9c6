"""``TestTimeAug``: run every combination of alternative transforms and return the views as lists."""
from __future__ import annotations

import copy
import itertools
from typing import Any, Callable, Dict, List, Sequence, Union

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


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, list) else [value]


def _config_text(cfg: dict) -> str:
    """``dict(type='Resize', scale=(1024, 256))``: a transform config as a config file spells it."""
    return 'dict(' + ', '.join(f'{key}={value!r}' for key, value in cfg.items()) + ')'


def _suggested_pipeline(args: Dict[str, Any]) -> str:
    """The MMSeg 1.x pipeline doing what ``args`` (MMSeg 0.x's or MMCV 2.x's ``MultiScaleFlipAug`` arguments)
    asked for, as config text: a plain ``test_pipeline`` for one scale without flip (MMSeg 0.x wrapped even
    single-scale testing in ``MultiScaleFlipAug``), else a ``tta_pipeline`` with ``TestTimeAug``."""
    if args.get('scales') is not None:  # MMCV 2.x
        resizes = [dict(type='Resize', scale=tuple(s), keep_ratio=True) for s in _as_list(args['scales'])]
    elif args.get('scale_factor') is not None:  # MMCV 2.x
        resizes = [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in _as_list(args['scale_factor'])]
    elif args.get('img_scale') is not None and args.get('img_ratios') is not None:  # 0.x: a scale times ratios
        w, h = args['img_scale']
        resizes = [dict(type='Resize', scale=(int(w * r), int(h * r)), keep_ratio=True)
                   for r in _as_list(args['img_ratios'])]
    elif args.get('img_scale') is not None:  # 0.x: one or more scales
        resizes = [dict(type='Resize', scale=tuple(s), keep_ratio=True) for s in _as_list(args['img_scale'])]
    else:  # 0.x: ratios of the original size
        resizes = [dict(type='Resize', scale_factor=r, keep_ratio=True)
                   for r in _as_list(args.get('img_ratios') or 1.0)]
    flips = []
    if args.get('flip') or args.get('allow_flip'):
        directions = _as_list(args.get('flip_direction') or 'horizontal')
        flips = ([dict(type='RandomFlip', prob=0.0, direction=directions[0])]
                 + [dict(type='RandomFlip', prob=1.0, direction=d) for d in directions])
    load = "    dict(type='LoadImageFromFile'),\n"
    if len(resizes) == 1 and not flips:
        return (f'test_pipeline = [\n{load}    {_config_text(resizes[0])},\n'
                "    dict(type='LoadAnnotations'),\n    dict(type='PackSegInputs')]")
    stages = [resizes] + ([flips] if flips else []) + [[dict(type='LoadAnnotations')], [dict(type='PackSegInputs')]]
    lines = ',\n'.join('        [' + ', '.join(_config_text(cfg) for cfg in stage) + ']' for stage in stages)
    return (f"tta_model = dict(type='SegTTAModel')\ntta_pipeline = [\n{load}"
            f"    dict(type='TestTimeAug', transforms=[\n{lines}])]\n"
            "and test with tools/test.py --tta (it uses the config's tta_model and tta_pipeline).")


@TRANSFORMS.register_module()
class MultiScaleFlipAug(BaseTransform):
    """MMSeg 0.x's test-time augmentation, replaced by ``TestTimeAug`` in MMSeg 1.x; building it raises an
    error that shows the equivalent MMSeg 1.x pipeline.

    MMSeg 1.2.2 itself has no ``MultiScaleFlipAug``: the name reaches MMCV 2.x's, which rejects 0.x arguments
    (``img_scale``, ``img_ratios``, ``flip``) and, given MMCV's own, fails at the first image after
    ``PackSegInputs`` (it reads a ``data_sample`` key that MMSeg's packing does not write). Refusing it when the
    config is built, with the translation, spares a run that would stop at the first test image.
    """

    def __init__(self, **kwargs: Any) -> None:
        try:
            suggestion = 'For these arguments:\n' + _suggested_pipeline(kwargs)
        except (TypeError, ValueError):  # arguments too unusual to translate: show the usual layout
            suggestion = 'For example:\n' + _suggested_pipeline(dict(img_ratios=[0.5, 1.0, 1.5], flip=True))
        raise ValueError(
            "MultiScaleFlipAug is MMSeg 0.x's test-time augmentation; MMSeg 1.x (and segkit) use TestTimeAug "
            'instead, each stage a list of alternatives, one view per combination. The per-view transforms of '
            "0.x (Normalize, ImageToTensor, Collect) are gone: PackSegInputs packs each view and the model's "
            f'data_preprocessor normalizes. {suggestion}')

    def transform(self, results: dict) -> dict:  # never reached: __init__ raises
        raise NotImplementedError
