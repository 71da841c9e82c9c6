"""Necks, registered in ``MODELS`` under MMSeg's names."""
from .fpn import FPN
from .multilevel_neck import MultiLevelNeck

__all__ = ['FPN', 'MultiLevelNeck']
