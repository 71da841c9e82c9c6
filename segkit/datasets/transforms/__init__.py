"""Data transforms (MMSeg's names and arguments); each registers itself in ``TRANSFORMS``."""
from .base import BaseTransform, Compose
from .crop import RandomCrop
from .flip import RandomFlip
from .formatting import PackSegInputs
from .label_check import as_index_mask, check_label_values
from .loading import LoadAnnotations, LoadImageFromFile, read_image, read_label_map
from .pad import Pad
from .photometric import PhotoMetricDistortion
from .resize import RandomResize, Resize, ResizeToMultiple
from .test_time_aug import TestTimeAug

__all__ = ['BaseTransform', 'Compose', 'LoadImageFromFile', 'LoadAnnotations', 'Resize', 'RandomResize',
           'ResizeToMultiple', 'RandomCrop', 'RandomFlip', 'Pad', 'PhotoMetricDistortion', 'TestTimeAug',
           'PackSegInputs', 'as_index_mask', 'check_label_values', 'read_image', 'read_label_map']
