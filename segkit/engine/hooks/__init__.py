"""Hooks: code the runner calls at fixed events, ordered by priority (MMEngine's names and scale)."""
from .checkpoint_hook import CheckpointHook
from .ema_hook import EMAHook
from .empty_cache_hook import EmptyCacheHook
from .hook import EVENTS, PRIORITIES, Hook, get_priority
from .iter_timer_hook import IterTimerHook
from .logger_hook import LoggerHook
from .param_scheduler_hook import ParamSchedulerHook
from .sampler_seed_hook import DistSamplerSeedHook
from .visualization_hook import SegVisualizationHook

__all__ = ['Hook', 'EVENTS', 'PRIORITIES', 'get_priority', 'CheckpointHook', 'DistSamplerSeedHook', 'EMAHook',
           'EmptyCacheHook', 'IterTimerHook', 'LoggerHook', 'ParamSchedulerHook', 'SegVisualizationHook']
