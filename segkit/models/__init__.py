"""Models: backbones, necks, decode heads, losses, segmentors and the data preprocessor, all registered in
``MODELS`` under MMSeg's type names."""
from . import backbones, decode_heads, losses, necks, segmentors  # noqa: F401  (registers the classes)
from .builder import build_module
from .data_preprocessor import SegDataPreProcessor
from .pixel_sampler import OHEMPixelSampler
from .segmentors import BaseSegmentor, CascadeEncoderDecoder, EncoderDecoder, SegTTAModel

__all__ = ['BaseSegmentor', 'CascadeEncoderDecoder', 'EncoderDecoder', 'OHEMPixelSampler', 'SegDataPreProcessor',
           'SegTTAModel', 'build_module']
