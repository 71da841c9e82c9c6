"""PASCAL VOC 2012 (20 classes plus background)."""
from ..registry import DATASETS
from .base_dataset import BaseSegDataset

CLASSES = (
    'background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
    'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor')

PALETTE = (
    (0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128), (0, 128, 128),
    (128, 128, 128), (64, 0, 0), (192, 0, 0), (64, 128, 0), (192, 128, 0), (64, 0, 128), (192, 0, 128),
    (64, 128, 128), (192, 128, 128), (0, 64, 0), (128, 64, 0), (0, 192, 0), (128, 192, 0), (0, 64, 128))


@DATASETS.register_module()
class PascalVOCDataset(BaseSegDataset):
    """PASCAL VOC 2012: ``JPEGImages/*.jpg`` with palette PNGs in ``SegmentationClass`` (255 = object
    borders, ignored). The split file ``ann_file`` is required."""

    METAINFO = dict(classes=CLASSES, palette=[list(c) for c in PALETTE])

    def __init__(self, ann_file: str, img_suffix: str = '.jpg', seg_map_suffix: str = '.png', **kwargs) -> None:
        super().__init__(ann_file=ann_file, img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)
