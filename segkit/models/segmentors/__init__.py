"""Segmentors, registered in ``MODELS`` under MMSeg's names."""
from .base import BaseSegmentor
from .cascade_encoder_decoder import CascadeEncoderDecoder
from .encoder_decoder import EncoderDecoder
from .seg_tta import SegTTAModel

__all__ = ['BaseSegmentor', 'CascadeEncoderDecoder', 'EncoderDecoder', 'SegTTAModel']
