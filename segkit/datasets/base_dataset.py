"""``BaseSegDataset``: image/label-map pairs in MMSeg's folder layout, run through a transform pipeline."""
from __future__ import annotations

import copy
import os
import os.path as osp
import pickle
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
from torch.utils.data import Dataset

from ..registry import DATASETS
from .sample_index import sample_random_state
from .transforms import Compose


def _read_lines(path: str) -> List[str]:
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def _list_files(folder: str, suffix: str) -> List[str]:
    """Paths relative to ``folder`` of the files below it (recursively) whose names end with ``suffix``."""
    if not osp.isdir(folder):
        raise FileNotFoundError(f'image folder {folder} does not exist (check data_root and data_prefix)')
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith('.')]
        rel_root = osp.relpath(root, folder)
        found.extend(osp.normpath(osp.join(rel_root, name)) for name in files
                     if name.endswith(suffix) and not name.startswith('.'))
    return found


@DATASETS.register_module()
class BaseSegDataset(Dataset):
    """A segmentation dataset laid out as MMSeg expects::

        data_root/<data_prefix.img_path>/xxx{img_suffix}
        data_root/<data_prefix.seg_map_path>/xxx{seg_map_suffix}

    Without ``ann_file`` every image under the image folder (recursively, sorted) is a sample; with it,
    each line of the file (relative to ``data_root``) is a name ``xxx``. Suffixes are appended verbatim,
    so ``img_suffix='img.jpg'`` is valid. A dataset without ``seg_map_path`` in ``data_prefix`` has no
    annotations (for predicting on unlabelled images); ``data_prefix`` defaults to
    ``dict(img_path='', seg_map_path='')``, i.e. both under ``data_root`` itself.

    ``metainfo`` may override ``classes``/``palette``; naming a subset of the class list in ``METAINFO``
    remaps labels (``label_map``: old id -> new id, dropped classes -> 255) as MMSeg does. ``dataset[i]``
    runs the pipeline on ``get_data_info(i)``, which also carries ``num_classes`` and ``ignore_index`` so
    that ``LoadAnnotations`` can check the label values.

    ``serialize_data=True`` keeps the sample list as one pickled byte buffer, so forked dataloader workers
    share it instead of copying Python objects page by page. ``lazy_init=True`` defers listing the files
    until first use (or ``full_init()``). ``indices`` (an int n: the first n; or a list) selects a subset.
    """

    METAINFO: dict = dict()

    def __init__(self, ann_file: str = '', img_suffix: str = '.jpg', seg_map_suffix: str = '.png',
                 metainfo: Optional[dict] = None, data_root: Optional[str] = None,
                 data_prefix: Optional[dict] = None,
                 indices: Optional[Union[int, Sequence[int]]] = None, serialize_data: bool = True,
                 pipeline: Sequence[Union[dict, Callable]] = (), test_mode: bool = False,
                 lazy_init: bool = False, ignore_index: int = 255, reduce_zero_label: bool = False,
                 backend_args: Optional[dict] = None) -> None:
        if backend_args:
            raise NotImplementedError(f'backend_args={backend_args}: segkit reads local files only')
        self.img_suffix = img_suffix
        self.seg_map_suffix = seg_map_suffix
        self.ignore_index = ignore_index
        self.reduce_zero_label = reduce_zero_label
        self.data_root = data_root
        self.ann_file = ann_file
        if data_prefix is None:
            data_prefix = dict(img_path='', seg_map_path='')
        self.data_prefix = {key: value for key, value in data_prefix.items() if value is not None}
        self._indices = indices
        self.serialize_data = serialize_data
        self.test_mode = test_mode

        self._metainfo = self._load_metainfo(metainfo)
        self.label_map = self.get_label_map(self._metainfo.get('classes'))
        self._metainfo.update(label_map=self.label_map, reduce_zero_label=reduce_zero_label)
        self._metainfo['palette'] = self._updated_palette()
        if test_mode and self._metainfo.get('classes') is None:
            raise ValueError(f'{type(self).__name__}: metainfo must name the classes when test_mode=True')

        if data_root:
            if ann_file and not osp.isabs(ann_file):
                self.ann_file = osp.join(data_root, ann_file)
            self.data_prefix = {key: osp.join(data_root, prefix) for key, prefix in self.data_prefix.items()}

        self.pipeline = Compose(pipeline)
        self._data_list: List[dict] = []
        self._data_bytes: Optional[np.ndarray] = None
        self._data_ends: Optional[np.ndarray] = None
        self._fully_initialized = False
        if not lazy_init:
            self.full_init()

    # ----------------------------------------------------------------- meta information
    @classmethod
    def _load_metainfo(cls, metainfo: Optional[dict]) -> dict:
        """``METAINFO`` updated by ``metainfo``; a string value naming a file is read as a list of lines."""
        merged = copy.deepcopy(cls.METAINFO)
        if metainfo is None:
            return merged
        if not isinstance(metainfo, dict):
            raise TypeError(f'metainfo must be a dict, got {type(metainfo).__name__}')
        for key, value in metainfo.items():
            merged[key] = _read_lines(value) if isinstance(value, str) and osp.isfile(value) else value
        return merged

    @classmethod
    def get_label_map(cls, new_classes: Optional[Sequence[str]] = None) -> Optional[Dict[int, int]]:
        """Old class id -> new id when ``new_classes`` differs from ``METAINFO['classes']`` (else None)."""
        old_classes = cls.METAINFO.get('classes')
        if new_classes is None or old_classes is None or list(new_classes) == list(old_classes):
            return None
        unknown = [c for c in new_classes if c not in old_classes]
        if unknown:
            raise ValueError(f'classes {unknown} are not among the classes of {cls.__name__}: {list(old_classes)}')
        new_classes = list(new_classes)
        return {i: (new_classes.index(c) if c in new_classes else 255) for i, c in enumerate(old_classes)}

    def _updated_palette(self) -> list:
        """The palette matching the classes: given, the subset's colours, or a fixed random one (seed 42)."""
        palette = self._metainfo.get('palette', [])
        classes = self._metainfo.get('classes', []) or []
        if len(palette) == len(classes):
            return palette
        if len(palette) == 0:
            return np.random.RandomState(42).randint(0, 255, size=(len(classes), 3)).tolist()
        if len(palette) > len(classes) and self.label_map is not None:
            kept = sorted((new, old) for old, new in self.label_map.items() if new != 255)
            return type(palette)(palette[old] for _, old in kept)
        raise ValueError(f'{type(self).__name__}: {len(palette)} palette colours for {len(classes)} classes')

    @property
    def metainfo(self) -> dict:
        """``classes``, ``palette``, ``label_map``, ``reduce_zero_label`` (a copy)."""
        return copy.deepcopy(self._metainfo)

    dataset_meta = metainfo

    @property
    def num_classes(self) -> Optional[int]:
        classes = self._metainfo.get('classes')
        return None if classes is None else len(classes)

    # ----------------------------------------------------------------- sample list
    def full_init(self) -> None:
        """List the samples (once), select ``indices`` and serialise the list if asked."""
        if self._fully_initialized:
            return
        data_list = self.load_data_list()
        if self._indices is not None:
            data_list = (data_list[:self._indices] if isinstance(self._indices, int)
                         else [data_list[i] for i in self._indices])
        if self.serialize_data:
            blobs = [pickle.dumps(info, protocol=4) for info in data_list]
            self._data_ends = np.cumsum([len(b) for b in blobs], dtype=np.int64)
            self._data_bytes = np.frombuffer(b''.join(blobs), dtype=np.uint8)
        else:
            self._data_list = data_list
        self._fully_initialized = True

    def load_data_list(self) -> List[dict]:
        """One ``dict(img_path=..., seg_map_path=...)`` per sample, from ``ann_file`` or a folder scan."""
        img_dir = self.data_prefix.get('img_path', '')
        ann_dir = self.data_prefix.get('seg_map_path')
        if self.ann_file and not osp.isdir(self.ann_file):
            if not osp.isfile(self.ann_file):
                raise FileNotFoundError(f'ann_file {self.ann_file} does not exist')
            names = _read_lines(self.ann_file)
        else:
            names = [path[:len(path) - len(self.img_suffix)] for path in sorted(_list_files(img_dir, self.img_suffix))]
            if not names:
                raise FileNotFoundError(f'no images ending with {self.img_suffix!r} under {img_dir}')
        data_list = []
        for name in names:
            info = dict(img_path=osp.join(img_dir, name + self.img_suffix))
            if ann_dir is not None:
                info['seg_map_path'] = osp.join(ann_dir, name + self.seg_map_suffix)
            data_list.append(info)
        return data_list

    def _ensure_initialized(self) -> None:
        if not self._fully_initialized:
            self.full_init()

    def __len__(self) -> int:
        self._ensure_initialized()
        return len(self._data_ends) if self.serialize_data else len(self._data_list)

    def get_data_info(self, idx: int) -> dict:
        """The paths of sample ``idx`` plus what the pipeline needs: ``label_map``, ``reduce_zero_label``,
        ``seg_fields``, ``sample_idx``, ``num_classes`` and ``ignore_index``."""
        size = len(self)
        if not -size <= idx < size:
            raise IndexError(f'index {idx} out of range for a dataset of {size} samples')
        idx = idx % size
        if self.serialize_data:
            start = 0 if idx == 0 else int(self._data_ends[idx - 1])
            info = pickle.loads(memoryview(self._data_bytes[start:int(self._data_ends[idx])]))
        else:
            info = dict(self._data_list[idx])
        info.update(label_map=self.label_map, reduce_zero_label=self.reduce_zero_label, seg_fields=[],
                    sample_idx=int(idx), num_classes=self.num_classes, ignore_index=self.ignore_index)
        return info

    def __getitem__(self, idx: int) -> dict:
        """The sample after the pipeline; an index from segkit's samplers seeds the pipeline's randomness."""
        info = self.get_data_info(idx)
        try:
            with sample_random_state(idx):
                data = self.pipeline(info)
        except Exception as e:
            if hasattr(e, 'add_note'):  # Python >= 3.11; before that the traceback alone has to do
                e.add_note(f'(while loading sample {idx} of {type(self).__name__}: {info["img_path"]})')
            raise
        if data is None:
            raise RuntimeError(f'the pipeline dropped sample {idx} ({info["img_path"]}): a transform returned None')
        return data

    def __repr__(self) -> str:
        size = len(self) if self._fully_initialized else 'not loaded'
        return (f'{type(self).__name__}(samples={size}, data_root={self.data_root!r}, '
                f'data_prefix={self.data_prefix}, classes={self.num_classes})')
