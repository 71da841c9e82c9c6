"""High-level inference API."""
from .inference import inference_model, init_model, show_result

__all__ = ['inference_model', 'init_model', 'show_result']
