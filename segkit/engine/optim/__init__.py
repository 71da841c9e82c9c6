"""Optimisation: optimizer wrappers, the paramwise optimizer constructor and learning-rate schedulers."""
from .amp_optim_wrapper import AmpOptimWrapper
from .auto_scale_lr import scale_lr
from .optim_wrapper import OptimWrapper
from .optim_wrapper_constructor import DefaultOptimWrapperConstructor, build_optim_wrapper
from .param_schedulers import (ConstantLR, CosineAnnealingLR, ExponentialLR, LinearLR, MultiStepLR, ParamScheduler,
                               PolyLR, StepLR, build_param_schedulers)

__all__ = ['AmpOptimWrapper', 'ConstantLR', 'CosineAnnealingLR', 'DefaultOptimWrapperConstructor', 'ExponentialLR',
           'LinearLR', 'MultiStepLR', 'OptimWrapper', 'ParamScheduler', 'PolyLR', 'StepLR', 'build_optim_wrapper',
           'build_param_schedulers', 'scale_lr']
