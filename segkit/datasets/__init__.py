"""Datasets, transforms, samplers, collate and dataloader building."""
from .ade import ADE20KDataset
from .base_dataset import BaseSegDataset
from .camvid import CamVidDataset
from .cityscapes import CityscapesDataset
from .collate import collate
from .dataloader import build_dataloader
from .dataset_wrappers import ConcatDataset, RepeatDataset
from .sample_index import SampleIndex, sample_random_state
from .samplers import DefaultSampler, InfiniteSampler
from .shapes_demo import ShapesDemoDataset, make_shapes_demo
from .voc import PascalVOCDataset

__all__ = ['BaseSegDataset', 'ADE20KDataset', 'CityscapesDataset', 'PascalVOCDataset', 'CamVidDataset',
           'ShapesDemoDataset', 'make_shapes_demo', 'ConcatDataset', 'RepeatDataset', 'DefaultSampler',
           'InfiniteSampler', 'SampleIndex', 'sample_random_state', 'collate', 'build_dataloader']
