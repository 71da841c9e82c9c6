"""Decode heads, registered in ``MODELS`` under MMSeg's names."""
from .cascade_decode_head import BaseCascadeDecodeHead
from .decode_head import BaseDecodeHead
from .fcn_head import FCNHead
from .psp_head import PPM, PSPHead
from .segformer_head import SegformerHead

__all__ = ['BaseCascadeDecodeHead', 'BaseDecodeHead', 'FCNHead', 'PPM', 'PSPHead', 'SegformerHead']
