"""Models: backbones, necks, decode heads, losses and segmentors, all registered in ``MODELS``."""
from . import backbones, decode_heads, losses, necks, segmentors  # noqa: F401  (registers the classes)
