"""CamVid driving scenes (11 classes, the SegNet split)."""
from ..registry import DATASETS
from .base_dataset import BaseSegDataset

CLASSES = ('Sky', 'Building', 'Pole', 'Road', 'Pavement', 'Tree', 'SignSymbol', 'Fence', 'Car', 'Pedestrian',
           'Bicyclist')

PALETTE = ((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
           (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192))


@DATASETS.register_module()
class CamVidDataset(BaseSegDataset):
    """CamVid in MMSeg layout: ``img_dir/{train,val}/*.jpg``, ``ann_dir/{train,val}/*.png`` (mode L,
    0..10, 255 = void) and ``{train,val}.txt`` split files; 480x360 images."""

    METAINFO = dict(classes=CLASSES, palette=[list(c) for c in PALETTE])

    def __init__(self, img_suffix: str = '.jpg', seg_map_suffix: str = '.png', **kwargs) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)
