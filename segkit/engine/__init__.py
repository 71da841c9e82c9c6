"""Training engine: the runner, its loops and hooks, logging backends and optimisation."""
from . import optim  # noqa: F401  (registers the optimizer wrappers and schedulers)
from .allocator import retain_freed_memory
from .hooks import (CheckpointHook, DistSamplerSeedHook, EMAHook, EmptyCacheHook, Hook, IterTimerHook, LoggerHook,
                    ParamSchedulerHook, SegVisualizationHook)
from .loops import IterBasedTrainLoop, TestLoop, ValLoop
from .runner import Runner, find_latest_checkpoint
from .vis_backends import LocalVisBackend, SegLocalVisualizer, TensorboardVisBackend

__all__ = ['Runner', 'find_latest_checkpoint', 'retain_freed_memory', 'IterBasedTrainLoop', 'ValLoop', 'TestLoop',
           'Hook', 'CheckpointHook', 'DistSamplerSeedHook', 'EMAHook', 'EmptyCacheHook', 'IterTimerHook', 'LoggerHook',
           'ParamSchedulerHook', 'SegVisualizationHook', 'LocalVisBackend', 'TensorboardVisBackend',
           'SegLocalVisualizer']
