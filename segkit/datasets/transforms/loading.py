"""Reading images and label maps from disk (MMSeg's ``LoadImageFromFile`` and ``LoadAnnotations``)."""
from __future__ import annotations

import io
import os
import warnings
from typing import Optional

import cv2
import numpy as np
from PIL import Image

from ...registry import TRANSFORMS
from .base import BaseTransform
from .label_check import as_index_mask, check_label_values

_CV2_FLAGS = {
    'color': cv2.IMREAD_COLOR,
    'grayscale': cv2.IMREAD_GRAYSCALE,
    'unchanged': cv2.IMREAD_UNCHANGED,
    'color_ignore_orientation': cv2.IMREAD_IGNORE_ORIENTATION | cv2.IMREAD_COLOR,
    'grayscale_ignore_orientation': cv2.IMREAD_IGNORE_ORIENTATION | cv2.IMREAD_GRAYSCALE,
}


def _check_backend_args(backend_args: Optional[dict]) -> None:
    if backend_args:
        raise NotImplementedError(f'backend_args={backend_args}: segkit reads local files only; '
                                  f'leave backend_args unset (None)')


def _require_file(path: str, what: str) -> None:
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{what} {path} does not exist')


def read_image(path: str, color_type: str = 'color', backend: str = 'cv2') -> np.ndarray:
    """Decode an image file as MMCV does: BGR order; 'color' gives 3 channels even for grey images."""
    if color_type not in _CV2_FLAGS:
        raise ValueError(f'color_type must be one of {sorted(_CV2_FLAGS)}, got {color_type!r}')
    _require_file(path, 'image')
    if backend == 'cv2':
        img = cv2.imread(path, _CV2_FLAGS[color_type])
        if img is None:
            raise ValueError(f'could not decode image {path}: the file is corrupt or not an image format '
                             f'OpenCV reads')
        return img
    if backend != 'pillow':
        raise ValueError(f"imdecode_backend must be 'cv2' or 'pillow', got {backend!r}")
    try:
        with Image.open(path) as pil_img:
            if color_type == 'unchanged':
                img = np.array(pil_img)
            else:
                img = np.array(pil_img.convert('L' if color_type.startswith('grayscale') else 'RGB'))
    except OSError as e:
        raise ValueError(f'could not decode image {path}: {e}') from e
    if img.ndim == 3 and img.shape[2] >= 3:
        img[:, :, :3] = img[:, :, 2::-1].copy()  # RGB(A) -> BGR(A)
    return img


_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_PNG_PALETTE = 3  # IHDR colour type of palette images


def _is_palette_free_png(data: np.ndarray) -> bool:
    return len(data) > 25 and data[:8].tobytes() == _PNG_SIGNATURE and data[25] != _PNG_PALETTE


def read_label_map(path: str, backend: str = 'pillow') -> np.ndarray:
    """Read a label map unchanged (no colour conversion, native bit depth).

    With 'pillow' (the default, as in MMSeg) a palette ("P") image gives its indices, not its colours.
    PNGs without a palette decode to the same values with OpenCV, which is faster, so they take that path.
    'cv2' always uses OpenCV, which expands palette PNGs to BGR colours even with ``IMREAD_UNCHANGED``.
    """
    _require_file(path, 'label map')
    if backend not in ('pillow', 'cv2'):
        raise ValueError(f"imdecode_backend must be 'pillow' or 'cv2', got {backend!r}")
    data = np.fromfile(path, dtype=np.uint8)
    if backend == 'cv2' or _is_palette_free_png(data):
        seg_map = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        if seg_map is None:
            raise ValueError(f'could not decode label map {path}: the file is corrupt or not an image')
        return seg_map
    try:
        with Image.open(io.BytesIO(data)) as pil_img:
            return np.array(pil_img)
    except OSError as e:
        raise ValueError(f'could not decode label map {path}: {e}') from e


def label_lookup_table(reduce_zero_label: bool, label_map: Optional[dict]) -> Optional[np.ndarray]:
    """A 256-entry table applying ``reduce_zero_label`` (0 -> 255, v -> v-1, 255 stays) then ``label_map``."""
    if not reduce_zero_label and not label_map:
        return None
    table = np.arange(256, dtype=np.uint8)
    if reduce_zero_label:
        table = table - 1  # uint8 wraps 0 -> 255
        table[255] = 255
    if label_map:
        remap = np.arange(256, dtype=np.uint8)
        for old_id, new_id in label_map.items():
            remap[old_id] = new_id
        table = remap[table]
    return table


@TRANSFORMS.register_module()
class LoadImageFromFile(BaseTransform):
    """Read ``results['img_path']`` into ``img`` (H×W×3 BGR uint8) and set ``img_shape`` / ``ori_shape``.

    Args:
        to_float32: return a float32 image instead of uint8.
        color_type: 'color' (default; grey images become 3 channels), 'grayscale', 'unchanged', or the
            '*_ignore_orientation' variants.
        imdecode_backend: 'cv2' (default) or 'pillow'.
    """

    def __init__(self, to_float32: bool = False, color_type: str = 'color', imdecode_backend: str = 'cv2',
                 backend_args: Optional[dict] = None) -> None:
        _check_backend_args(backend_args)
        if color_type not in _CV2_FLAGS:
            raise ValueError(f'color_type must be one of {sorted(_CV2_FLAGS)}, got {color_type!r}')
        self.to_float32 = to_float32
        self.color_type = color_type
        self.imdecode_backend = imdecode_backend

    def transform(self, results: dict) -> dict:
        img = read_image(results['img_path'], self.color_type, self.imdecode_backend)
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(to_float32={self.to_float32}, color_type={self.color_type!r}, '
                f'imdecode_backend={self.imdecode_backend!r})')


@TRANSFORMS.register_module()
class LoadAnnotations(BaseTransform):
    """Read ``results['seg_map_path']`` into ``gt_seg_map`` (H×W uint8 class indices) and check it.

    ``reduce_zero_label`` and the dataset's ``label_map`` (class subset) are applied as in MMSeg. When the
    dataset put ``num_classes`` (and ``ignore_index``) into the results, the values are checked: see
    :func:`check_label_values`. A map whose size differs from the loaded image's ``ori_shape`` is refused.

    Args:
        reduce_zero_label: must agree with the dataset's setting when given (MMSeg keeps it for old configs);
            None takes the dataset's.
        imdecode_backend: 'pillow' (default: palette PNGs give their indices) or 'cv2'.
    """

    def __init__(self, reduce_zero_label: Optional[bool] = None, backend_args: Optional[dict] = None,
                 imdecode_backend: str = 'pillow') -> None:
        _check_backend_args(backend_args)
        self.reduce_zero_label = reduce_zero_label
        self.imdecode_backend = imdecode_backend
        self._warned = False

    def transform(self, results: dict) -> dict:
        path = results['seg_map_path']
        seg_map = as_index_mask(read_label_map(path, self.imdecode_backend), path)

        reduce_zero_label = results.get('reduce_zero_label', False)
        if self.reduce_zero_label is not None and self.reduce_zero_label != reduce_zero_label:
            raise ValueError(
                f'LoadAnnotations(reduce_zero_label={self.reduce_zero_label}) disagrees with the dataset '
                f'(reduce_zero_label={reduce_zero_label}); set it on the dataset and drop it from the transform')
        table = label_lookup_table(reduce_zero_label, results.get('label_map'))
        if table is not None:
            seg_map = cv2.LUT(seg_map, table)

        ori_shape = results.get('ori_shape')
        if ori_shape is not None and tuple(seg_map.shape) != tuple(ori_shape[:2]):
            raise ValueError(f'label map {path} is {seg_map.shape[0]}x{seg_map.shape[1]} but its image '
                             f'{results.get("img_path")} is {ori_shape[0]}x{ori_shape[1]} (height x width)')
        if results.get('num_classes') is not None:
            note = check_label_values(seg_map, path, results['num_classes'], results.get('ignore_index', 255))
            if note and not self._warned:
                warnings.warn(note + ' (shown once per loader)', stacklevel=2)
                self._warned = True

        results['gt_seg_map'] = seg_map
        results.setdefault('seg_fields', []).append('gt_seg_map')
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(reduce_zero_label={self.reduce_zero_label}, '
                f'imdecode_backend={self.imdecode_backend!r})')
