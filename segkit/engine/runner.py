"""``Runner``: builds everything a config describes and runs training, validation or testing.

Reading order: ``from_cfg`` maps config keys to arguments; ``__init__`` prepares the process (distributed
group, seeds, work and log folders, logger, visualizer, model, hooks); ``train`` / ``val`` / ``test`` build
what they need (dataloaders, optimizer, schedulers, loops), load weights or resume, and run the loop.
Checkpoint writing and reading (``save_checkpoint``, ``load_checkpoint``, ``resume``) come last.

Distributed runs (``launcher='pytorch'`` under torchrun) follow MMSeg: the model is wrapped in
DistributedDataParallel for training, each rank validates its share of the data and the metric sums counts
over ranks; only rank 0 writes logs, scalars, TensorBoard events and checkpoints.
"""
from __future__ import annotations

import copy
import functools
import os
import platform
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, TypeVar, Union

import cv2
import numpy as np
import torch
import torch.multiprocessing as mp
import torch.nn as nn
from torch.utils.data import DataLoader

import segkit
from segkit.checkpoint import extract_state_dict, load_file, load_state_dict, require_every_weight, save_checkpoint
from segkit.config import Config, ConfigError, check_keys
from segkit.datasets import build_dataloader
from segkit.dist import barrier, broadcast_object, get_dist_info, init_dist, is_distributed, is_main_process
from segkit.registry import HOOKS, LOOPS, MODELS, UnknownTypeError

from .allocator import retain_freed_memory
from .compile import compile_networks, compile_options
from .hooks import EVENTS, Hook, get_priority
from .logging import MessageHub, setup_logger
from .loops import Evaluator, dataset_meta_of
from .model_wrapper import check_sync_bn, unwrap_model, wrap_model_for_distributed
from .open_files import raise_open_file_limit
from .optim import build_optim_wrapper, build_param_schedulers, scale_lr
from .rng import capture_rng_state, restore_rng_state, set_random_seed
from .vis_backends import build_visualizer

# The keys the runner acts on in its small config sections, and MMEngine's that it accepts without acting on them.
RUNNER_SECTIONS = {
    'env_cfg': (('cudnn_benchmark', 'mp_cfg', 'dist_cfg', 'resource_limit', 'retain_freed_memory'), ()),
    'env_cfg.mp_cfg': (('mp_start_method', 'opencv_num_threads'), ()),
    'env_cfg.dist_cfg': (('backend', 'timeout'), ()),
    'randomness': (('seed', 'deterministic', 'diff_rank_seed'), ()),
    'log_processor': (('type', 'window_size', 'num_digits', 'by_epoch'),
                      ('custom_cfg', 'log_with_hierarchy', 'mean_pattern')),
}

# Hooks every run has unless the config's ``default_hooks`` replaces (or, with None, removes) them.
DEFAULT_HOOKS = dict(
    timer=dict(type='IterTimerHook'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    logger=dict(type='LoggerHook'),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook'),
)

ConfigLike = Union[Config, dict]
Method = TypeVar('Method', bound=Callable[..., Any])


def find_latest_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint named in ``<work_dir>/last_checkpoint``, or None when there is none.

    A work dir moved since the pointer was written is handled: a missing absolute path falls back to the
    file of the same name inside ``work_dir``.
    """
    pointer = os.path.join(work_dir, 'last_checkpoint')
    if not os.path.isfile(pointer):
        return None
    with open(pointer, encoding='utf-8') as f:
        path = f.read().strip()
    if not os.path.isfile(path):
        moved = os.path.join(work_dir, os.path.basename(path))
        path = moved if os.path.isfile(moved) else path
    return path


def _config_text(cfg: ConfigLike) -> str:
    """The config as Python source (what gets dumped to the work dir and stored in checkpoints)."""
    config = cfg if isinstance(cfg, Config) else Config(dict(cfg))
    try:
        return config.pretty_text
    except ConfigError:  # a value Python source cannot express, e.g. a class object given as ``type``
        return repr(config.to_dict())


def _names_config_keys(method: Method) -> Method:
    """Make an unknown ``type`` met while ``method`` builds parts name its key in the whole config
    (``train_dataloader.dataset.pipeline.2.type``), not only in the part being built."""
    @functools.wraps(method)
    def wrapper(self: 'Runner', *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except UnknownTypeError as e:
            e.locate_in(getattr(self, 'cfg', None))
            raise
    return wrapper  # type: ignore[return-value]


class Runner:
    """Train, validate and test a segmentor as an MMSeg 1.x config describes.

    Arguments mirror MMEngine's ``Runner`` (and the config keys of the same names): parts may be configs
    (dicts) or built objects (a model, a DataLoader, an OptimWrapper, hooks). Dataloaders, the optimizer and
    the schedulers are built only when a phase needs them, so ``test()`` never builds the training data.

    Args:
        model: the segmentor or its ``MODELS`` config.
        work_dir: where checkpoints, the dumped config and the timestamped log folder go.
        train_dataloader / val_dataloader / test_dataloader: ``build_dataloader`` configs or DataLoaders.
        train_cfg: ``dict(type='IterBasedTrainLoop', max_iters=..., val_interval=...)``.
        val_cfg / test_cfg: ``dict(type='ValLoop')`` / ``dict(type='TestLoop')``.
        optim_wrapper: ``build_optim_wrapper`` config or an OptimWrapper.
        param_scheduler: scheduler config(s) for ``build_param_schedulers``.
        val_evaluator / test_evaluator: metric config(s) (``dict(type='IoUMetric', ...)``).
        default_hooks: merged into ``DEFAULT_HOOKS`` by name; a None value removes that hook.
        custom_hooks: more hooks (configs may carry ``priority``).
        load_from: checkpoint whose weights are loaded (non-strictly) before running.
        resume: resume training from ``load_from`` or else from the work dir's ``last_checkpoint``.
        launcher: ``'none'`` or ``'pytorch'`` (torchrun); the process group is initialised if needed.
        env_cfg: ``cudnn_benchmark``, ``mp_cfg`` (``mp_start_method``, ``opencv_num_threads``),
            ``dist_cfg`` (``backend``, optional ``timeout`` in seconds), ``resource_limit`` (open files, default
            4096) and segkit's ``retain_freed_memory``
            (default True: see ``segkit.engine.allocator``; False keeps glibc's default).
        log_processor: ``window_size`` (smoothing, default 10) and ``num_digits`` (default 4); ``type`` and
            ``by_epoch`` are accepted (the loop counts iterations). For these sections and ``env_cfg`` and
            ``randomness``, an unknown key is a KeyError (``RUNNER_SECTIONS``).
        log_level: level of the console and file logs.
        visualizer: ``dict(type='SegLocalVisualizer', vis_backends=[...])``.
        randomness: ``seed`` (None: drawn at random and shared by all ranks), ``deterministic`` and
            ``diff_rank_seed`` (offset the seed by the rank).
        cfg: the whole config, dumped to the work dir and stored in checkpoints; its ``sync_bn``,
            ``find_unused_parameters`` and ``model_wrapper_cfg`` set up distributed training; ``compile`` (True
            or ``torch.compile`` arguments) compiles the networks for training (``segkit.engine.compile``);
            ``auto_scale_lr`` scales the learning rates with the total batch size
            (``segkit.engine.optim.auto_scale_lr``).
    """

    @_names_config_keys
    def __init__(self, model: Union[nn.Module, dict], work_dir: str,
                 train_dataloader: Union[DataLoader, dict, None] = None,
                 val_dataloader: Union[DataLoader, dict, None] = None,
                 test_dataloader: Union[DataLoader, dict, None] = None,
                 train_cfg: Optional[dict] = None, val_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None,
                 optim_wrapper: Any = None, param_scheduler: Union[dict, List[dict], None] = None,
                 val_evaluator: Any = None, test_evaluator: Any = None,
                 default_hooks: Optional[Dict[str, Union[dict, Hook, None]]] = None,
                 custom_hooks: Optional[List[Union[dict, Hook]]] = None,
                 load_from: Optional[str] = None, resume: bool = False, launcher: str = 'none',
                 env_cfg: Optional[dict] = None, log_processor: Optional[dict] = None, log_level: str = 'INFO',
                 visualizer: Optional[dict] = None, randomness: Optional[dict] = None,
                 cfg: Optional[ConfigLike] = None) -> None:
        self.cfg: Dict[str, Any] = cfg.to_dict() if isinstance(cfg, Config) else copy.deepcopy(dict(cfg or {}))
        self._compile_options = compile_options(self.cfg.get('compile'))
        check_sync_bn(self.cfg.get('sync_bn'))  # used only when distributed: a typo must not wait for that
        self.work_dir = os.path.abspath(work_dir)
        self._setup_env(env_cfg or {}, launcher)
        self.rank, self.world_size = get_dist_info()
        self.device = self._pick_device()

        randomness = dict(randomness or {})
        check_keys('randomness', randomness, *RUNNER_SECTIONS['randomness'])
        self.seed = randomness.get('seed')
        if self.seed is None:
            self.seed = broadcast_object(int(np.random.randint(2 ** 31)))
        self.deterministic = bool(randomness.get('deterministic', False))
        rank_offset = self.rank if randomness.get('diff_rank_seed', False) else 0
        set_random_seed(self.seed + rank_offset, self.deterministic)

        # One timestamp for all ranks, so they agree on the log folder.
        self.timestamp = broadcast_object(time.strftime('%Y%m%d_%H%M%S', time.localtime()))
        self.log_dir = os.path.join(self.work_dir, self.timestamp)
        config_file = cfg.filename if isinstance(cfg, Config) else None
        self.experiment_name = self.cfg.get('experiment_name') or (  # MMEngine's naming
            f'{os.path.splitext(os.path.basename(config_file))[0]}_{self.timestamp}' if config_file else self.timestamp)
        if is_main_process():
            os.makedirs(self.log_dir, exist_ok=True)
        self.logger = setup_logger(os.path.join(self.log_dir, f'{self.timestamp}.log'), log_level, self.rank)
        log_processor = dict(log_processor or {})
        check_keys('log_processor', log_processor, *RUNNER_SECTIONS['log_processor'])
        self.log_window_size = int(log_processor.get('window_size', 10))
        self.log_num_digits = int(log_processor.get('num_digits', 4))
        self.message_hub = MessageHub()
        self.visualizer = build_visualizer(visualizer, self.log_dir, write=is_main_process())
        self.config_text = _config_text(cfg if cfg is not None else {})
        self._log_environment()
        if cfg is not None and is_main_process():
            self._dump_config(cfg)

        if isinstance(model, dict):
            model = MODELS.build(model)
        self.model: nn.Module = model.to(self.device)

        self._dataloader_cfgs = dict(train=train_dataloader, val=val_dataloader, test=test_dataloader)
        self._loop_cfgs = dict(train=train_cfg, val=val_cfg, test=test_cfg)
        self._evaluator_cfgs = dict(val=val_evaluator, test=test_evaluator)
        self._optim_wrapper_cfg = optim_wrapper
        self._param_scheduler_cfg = param_scheduler
        self.optim_wrapper: Any = None
        self.param_schedulers: List[Any] = []
        self.train_loop: Any = None
        self.val_loop: Any = None
        self.test_loop: Any = None
        self._load_from = load_from
        self._resume = resume
        self._weights_loaded = False  # set by the first phase: later ones keep the weights it left
        self.resuming = False  # True while ``resume`` loads a checkpoint (hooks read it)
        self._resumed_rng_state: Optional[Dict[str, Any]] = None
        self.dataset_meta: Optional[dict] = None

        self._hooks: List[Hook] = []
        self.register_default_hooks(default_hooks)
        for hook in custom_hooks or []:
            self.register_hook(hook)

    @classmethod
    def from_cfg(cls, cfg: ConfigLike) -> 'Runner':
        """A runner for a whole MMSeg-style config; ``work_dir`` defaults to ``work_dirs/<config name>``."""
        cfg = copy.deepcopy(cfg)
        work_dir = cfg.get('work_dir')
        if work_dir is None:
            filename = cfg.filename if isinstance(cfg, Config) else None
            if filename is None:
                raise KeyError('the config sets no work_dir, and has no file name to derive one from')
            work_dir = os.path.join('work_dirs', os.path.splitext(os.path.basename(filename))[0])
        if 'model' not in cfg:
            raise KeyError('the config has no "model"')
        plain = cfg.to_dict() if isinstance(cfg, Config) else dict(cfg)
        model = plain['model']
        if isinstance(model, dict) and plain.get('data_preprocessor') is not None:
            # MMEngine's rule: a top-level data_preprocessor serves a model config that has none
            model = {'data_preprocessor': plain['data_preprocessor'], **model}
        return cls(
            model=model, work_dir=work_dir,
            train_dataloader=plain.get('train_dataloader'), val_dataloader=plain.get('val_dataloader'),
            test_dataloader=plain.get('test_dataloader'),
            train_cfg=plain.get('train_cfg'), val_cfg=plain.get('val_cfg'), test_cfg=plain.get('test_cfg'),
            optim_wrapper=plain.get('optim_wrapper'), param_scheduler=plain.get('param_scheduler'),
            val_evaluator=plain.get('val_evaluator'), test_evaluator=plain.get('test_evaluator'),
            default_hooks=plain.get('default_hooks'), custom_hooks=plain.get('custom_hooks'),
            load_from=plain.get('load_from'), resume=bool(plain.get('resume', False)),
            launcher=plain.get('launcher', 'none'), env_cfg=plain.get('env_cfg'),
            log_processor=plain.get('log_processor'), log_level=plain.get('log_level', 'INFO'),
            visualizer=plain.get('visualizer'), randomness=plain.get('randomness'), cfg=cfg)

    # -- process setup --------------------------------------------------------------------------------------------
    def _setup_env(self, env_cfg: dict, launcher: str) -> None:
        """Multiprocessing start method, OpenCV threads, cuDNN benchmarking, malloc, the open-file limit and
        the process group."""
        check_keys('env_cfg', env_cfg, *RUNNER_SECTIONS['env_cfg'])
        mp_cfg = env_cfg.get('mp_cfg') or {}
        dist_cfg = env_cfg.get('dist_cfg') or {}
        check_keys('env_cfg.mp_cfg', mp_cfg, *RUNNER_SECTIONS['env_cfg.mp_cfg'])
        check_keys('env_cfg.dist_cfg', dist_cfg, *RUNNER_SECTIONS['env_cfg.dist_cfg'])
        if env_cfg.get('retain_freed_memory', True):
            retain_freed_memory()
        raise_open_file_limit(int(env_cfg.get('resource_limit', 4096)))
        start_method = mp_cfg.get('mp_start_method')
        if start_method and platform.system() != 'Windows':
            current = mp.get_start_method(allow_none=True)
            if current != start_method:
                mp.set_start_method(start_method, force=True)
        if mp_cfg.get('opencv_num_threads') is not None:
            cv2.setNumThreads(int(mp_cfg['opencv_num_threads']))
        torch.backends.cudnn.benchmark = bool(env_cfg.get('cudnn_benchmark', False))
        if launcher not in ('none', 'pytorch'):
            raise ValueError(f'launcher must be "none" or "pytorch" (torchrun), got {launcher!r}')
        if launcher == 'pytorch' and not is_distributed():
            backend = dist_cfg.get('backend')
            if backend == 'nccl' and not torch.cuda.is_available():
                backend = 'gloo'  # the config's NCCL needs GPUs; gloo runs the same job on CPUs
            init_dist(launcher, backend, timeout_s=int(dist_cfg.get('timeout', 1800)))
        self.launcher = launcher

    def _pick_device(self) -> torch.device:
        if not torch.cuda.is_available():
            return torch.device('cpu')
        if is_distributed():
            torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', 0)))
        return torch.device('cuda', torch.cuda.current_device())

    def _log_environment(self) -> None:
        cuda = torch.version.cuda if torch.cuda.is_available() else 'not available'
        self.logger.info(
            f'segkit {segkit.__version__}, Python {platform.python_version()}, torch {torch.__version__}, '
            f'CUDA {cuda}, device {self.device}, world size {self.world_size}, seed {self.seed}, '
            f'deterministic {self.deterministic}')
        self.logger.info(f'Config:\n{self.config_text}')
        self.visualizer.add_config(self.config_text)

    def _dump_config(self, cfg: ConfigLike) -> None:
        filename = cfg.filename if isinstance(cfg, Config) else None
        name = os.path.basename(filename) if filename else f'{self.timestamp}.py'
        with open(os.path.join(self.work_dir, name), 'w', encoding='utf-8') as f:
            f.write(self.config_text)

    # -- hooks -----------------------------------------------------------------------------------------------------
    @property
    def hooks(self) -> List[Hook]:
        return list(self._hooks)

    def register_hook(self, hook: Union[Hook, dict], priority: Union[int, str, None] = None) -> None:
        """Add a hook (or a ``HOOKS`` config, optionally with ``priority``) after those of lower or equal
        priority value."""
        if isinstance(hook, dict):
            hook = dict(hook)
            priority = hook.pop('priority', priority)
            hook = HOOKS.build(hook)
        if not isinstance(hook, Hook):
            raise TypeError(f'a hook must be a Hook or a config dict, got {type(hook).__name__}')
        if priority is not None:
            hook.priority = priority
        value = get_priority(hook.priority)
        position = len(self._hooks)
        while position > 0 and get_priority(self._hooks[position - 1].priority) > value:
            position -= 1
        self._hooks.insert(position, hook)

    def register_default_hooks(self, hooks: Optional[Dict[str, Union[dict, Hook, None]]] = None) -> None:
        merged: Dict[str, Any] = dict(DEFAULT_HOOKS)
        merged.update(hooks or {})
        for hook in merged.values():
            if hook is not None:
                self.register_hook(hook)

    def call_hook(self, event: str, **kwargs: Any) -> None:
        """Call ``event`` on every hook, in priority order."""
        if event not in EVENTS:
            raise ValueError(f'unknown hook event {event!r}')
        for hook in self._hooks:
            getattr(hook, event)(self, **kwargs)

    # -- state that hooks read ---------------------------------------------------------------------------------
    @property
    def iter(self) -> int:
        return self.train_loop.iter if self.train_loop is not None else 0

    @property
    def epoch(self) -> int:
        return self.train_loop.epoch if self.train_loop is not None else 0

    @property
    def max_iters(self) -> int:
        return self.train_loop.max_iters if self.train_loop is not None else 0

    @property
    def max_epochs(self) -> int:
        """1 while training, as MMEngine's iteration-based loop reports."""
        return 1 if self.train_loop is not None else 0

    @property
    def distributed(self) -> bool:
        return is_distributed()

    @property
    def val_evaluator(self) -> Optional[Evaluator]:
        return self.val_loop.evaluator if self.val_loop is not None else None

    @property
    def test_evaluator(self) -> Optional[Evaluator]:
        return self.test_loop.evaluator if self.test_loop is not None else None

    @property
    def train_dataloader(self) -> Optional[DataLoader]:
        return self.train_loop.dataloader if self.train_loop is not None else None

    @property
    def val_dataloader(self) -> Optional[DataLoader]:
        return self.val_loop.dataloader if self.val_loop is not None else None

    @property
    def test_dataloader(self) -> Optional[DataLoader]:
        return self.test_loop.dataloader if self.test_loop is not None else None

    # -- building the parts of a phase ------------------------------------------------------------------------
    def _build_dataloader(self, phase: str) -> DataLoader:
        cfg = self._dataloader_cfgs[phase]
        if cfg is None:
            raise KeyError(f'{phase}: the config has no {phase}_dataloader')
        if isinstance(cfg, DataLoader):
            loader = cfg
        else:
            loader = build_dataloader(cfg, seed=self.seed)
        meta = dataset_meta_of(loader)
        if meta is not None and (self.dataset_meta is None or phase == 'train'):
            self.dataset_meta = meta
            self.visualizer.dataset_meta = meta
        if phase == 'train' and meta is not None:
            self._check_num_classes(len(meta.get('classes') or ()))
        return loader

    def _check_num_classes(self, dataset_classes: int) -> None:
        """Fewer model classes than the training set's would fail in the loss on the first label beyond them."""
        model_classes = getattr(unwrap_model(self.model), 'num_classes', None)
        if not dataset_classes or model_classes is None or model_classes == dataset_classes:
            return
        message = (f'the model has num_classes={model_classes} but the training dataset has {dataset_classes} '
                   f'classes: set model.decode_head.num_classes (and auxiliary_head.num_classes) to {dataset_classes}')
        if model_classes < dataset_classes:
            raise ValueError(message)
        self.logger.warning(message + f' (classes {dataset_classes}..{model_classes - 1} are never a target)')

    def _build_loop(self, phase: str) -> Any:
        cfg = self._loop_cfgs[phase]
        if cfg is None:
            raise KeyError(f'{phase}: the config has no {phase}_cfg (e.g. {phase}_cfg=dict(type='
                           f'{"IterBasedTrainLoop" if phase == "train" else phase.capitalize() + "Loop"!r}))')
        cfg = dict(cfg)
        cfg.setdefault('type', dict(train='IterBasedTrainLoop', val='ValLoop', test='TestLoop')[phase])
        default_args = dict(runner=self, dataloader=self._build_dataloader(phase))
        if phase != 'train':
            if self._evaluator_cfgs[phase] is None:
                raise KeyError(f'{phase}: the config has no {phase}_evaluator')
            default_args['evaluator'] = self._evaluator_cfgs[phase]
        return LOOPS.build(cfg, default_args=default_args)

    def _can_validate(self) -> bool:
        return all(x is not None for x in (self._loop_cfgs['val'], self._dataloader_cfgs['val'],
                                           self._evaluator_cfgs['val']))

    def _build_optimisation(self) -> None:
        model = unwrap_model(self.model)
        cfg = self._optim_wrapper_cfg
        if cfg is None:
            raise KeyError('train: the config has no optim_wrapper')
        self.optim_wrapper = build_optim_wrapper(model, cfg) if isinstance(cfg, dict) else cfg
        total_batch_size = self.world_size * self._train_batch_size()
        ratio = scale_lr(self.optim_wrapper, self.cfg.get('auto_scale_lr'), total_batch_size)
        if ratio is not None:
            self.logger.info(f'auto_scale_lr: learning rates scaled by {ratio:g} (total batch size '
                             f'{total_batch_size}, base_batch_size {self.cfg["auto_scale_lr"]["base_batch_size"]})')
        schedulers = self._param_scheduler_cfg
        if schedulers is None or isinstance(schedulers, dict) or all(isinstance(s, dict) for s in schedulers):
            self.param_schedulers = build_param_schedulers(self.optim_wrapper, schedulers, self.max_iters,
                                                           epoch_length=len(self.train_dataloader))
        else:
            self.param_schedulers = list(schedulers)

    # -- the three phases --------------------------------------------------------------------------------------
    @_names_config_keys
    def train(self) -> nn.Module:
        """Train (validating on the way when val parts are configured); returns the trained model."""
        self.train_loop = self._build_loop('train')
        self.val_loop = self._build_loop('val') if self._can_validate() else None
        self._build_optimisation()
        self.call_hook('before_run')
        self._load_or_resume(allow_resume=True)
        if is_distributed():
            self.model = wrap_model_for_distributed(
                self.model, self.device, self.cfg.get('model_wrapper_cfg'),
                find_unused_parameters=bool(self.cfg.get('find_unused_parameters', False)),
                sync_bn=self.cfg.get('sync_bn'))
        if self._compile_options is not None:
            names = compile_networks(unwrap_model(self.model), self._compile_options)
            self.logger.info(f'torch.compile({self._compile_options}) applied to {", ".join(names)}; '
                             f'the first iterations (and the first validation) include compilation')
        self.optim_wrapper.initialize_count_status(self.model, self.iter, self.max_iters)
        self.train_loop.run()
        self.call_hook('after_run')
        return unwrap_model(self.model)

    def val(self) -> Dict[str, float]:
        """Evaluate on the validation set; returns the metrics."""
        return self._evaluate('val')

    def test(self) -> Dict[str, float]:
        """Evaluate on the test set; returns the metrics."""
        return self._evaluate('test')

    @_names_config_keys
    def _evaluate(self, phase: str) -> Dict[str, float]:
        loop = self._build_loop(phase)
        setattr(self, f'{phase}_loop', loop)
        self.call_hook('before_run')
        self._load_or_resume(allow_resume=False)
        metrics = loop.run()
        self.call_hook('after_run')
        return metrics

    def _load_or_resume(self, allow_resume: bool) -> None:
        """Resume; or, as MMEngine does, initialise the weights for training (``init_cfg``, e.g. a pretrained
        backbone) and then load ``load_from`` over them, so that what it lacks (a new ``conv_seg``) keeps its
        configured initialisation. Evaluation loads ``load_from``, or evaluates the model as it is.

        As in MMEngine this happens once per runner: ``val()`` or ``test()`` after ``train()`` evaluate the
        trained weights."""
        if self._weights_loaded:
            return
        if allow_resume and self._resume:
            # Rank 0 decides, so every rank resumes from the same file.
            path = broadcast_object(self._load_from or find_latest_checkpoint(self.work_dir))
            if path is not None:
                self.resume(path)
                self._weights_loaded = True
                return
            self.logger.warning(f'resume=True but {self.work_dir} has no last_checkpoint: training from scratch')
        if allow_resume and hasattr(unwrap_model(self.model), 'init_weights'):
            unwrap_model(self.model).init_weights()
        if self._load_from:
            self.load_checkpoint(self._load_from, require_all_weights=not allow_resume)
        elif not allow_resume:
            self.logger.warning('no load_from checkpoint: evaluating the model with the weights it has')
        self._weights_loaded = True

    # -- checkpoints -------------------------------------------------------------------------------------------
    def save_checkpoint(self, out_dir: str, filename: str, save_optimizer: bool = True,
                        save_param_scheduler: bool = True, meta: Optional[dict] = None) -> None:
        """Write ``<out_dir>/<filename>`` (rank 0, atomically); every rank must call it (RNG states are gathered).

        Holds ``meta`` (iteration, seed, segkit version, config text, ``dataset_meta``), ``state_dict`` (on
        CPU, without DDP's ``module.``), ``message_hub`` (iteration, best score, checkpoint bookkeeping),
        ``rng_state`` (one entry per rank), ``sampler`` and, when asked, ``optimizer``, ``scaler`` (AMP loss
        scale, None without one) and ``param_schedulers``. Everything loads with ``weights_only=True``.
        ``meta['iter']`` defaults to the iterations done; hooks saving mid-iteration pass it.
        """
        meta = dict(meta or {})
        iteration = int(meta.pop('iter', self.iter))
        model = unwrap_model(self.model)
        checkpoint: Dict[str, Any] = {
            'meta': dict(iter=iteration, epoch=self.epoch, seed=self.seed, segkit_version=segkit.__version__,
                         time=time.strftime('%Y%m%d_%H%M%S'), cfg=self.config_text,
                         dataset_meta=copy.deepcopy(self.dataset_meta), **meta),
            'state_dict': {k: v.detach().cpu() for k, v in model.state_dict().items()},
            'message_hub': dict(self.message_hub.state_dict(), iter=iteration),
            'rng_state': self._gather_rng_states(),
        }
        sampler = getattr(self.train_dataloader, 'sampler', None)
        if hasattr(sampler, 'state_dict'):
            # the position in the global sample stream, which resume() shares out over its own ranks
            checkpoint['sampler'] = dict(seed=sampler.state_dict()['seed'],
                                         samples_seen=iteration * self._train_batch_size() * self.world_size)
        if save_optimizer and self.optim_wrapper is not None:
            optimizer_state = self.optim_wrapper.state_dict()
            checkpoint['scaler'] = optimizer_state.pop('loss_scaler', None)
            checkpoint['optimizer'] = optimizer_state
        if save_param_scheduler and self.param_schedulers:
            checkpoint['param_schedulers'] = [s.state_dict() for s in self.param_schedulers]
        self.call_hook('before_save_checkpoint', checkpoint=checkpoint)
        if is_main_process():
            save_checkpoint(checkpoint, os.path.join(out_dir, filename))
        barrier()

    def _gather_rng_states(self) -> List[Dict[str, Any]]:
        state = capture_rng_state()
        if not is_distributed():
            return [state]
        gathered: List[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(gathered, state)
        return gathered

    def _train_batch_size(self) -> int:
        loader = self.train_dataloader
        return loader.batch_size if loader.batch_size is not None else loader.batch_sampler.batch_size

    def load_checkpoint(self, filename: str, strict: bool = False, require_all_weights: bool = False) -> dict:
        """Load the weights of ``filename`` (weights-only unpickling) into the model; returns the checkpoint.

        Hooks see the checkpoint (``after_load_checkpoint``) before its weights are applied. With
        ``strict=False`` keys missing from, unexpected in or shaped differently in the checkpoint are
        reported as a warning and the rest is loaded. ``require_all_weights`` (evaluation) still allows
        unexpected keys but refuses a checkpoint that leaves model weights missing or of another shape.
        """
        raw = load_file(filename, map_location='cpu')
        state_dict = extract_state_dict(raw)
        checkpoint = dict(raw) if isinstance(raw, dict) and 'state_dict' in raw else {}
        checkpoint['state_dict'] = state_dict
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        report = load_state_dict(unwrap_model(self.model), checkpoint['state_dict'], strict=strict, source=filename)
        problems = {k: v for k, v in report.items() if v}
        if require_all_weights:
            require_every_weight(unwrap_model(self.model), report, filename,
                                 ', so the evaluation would score layers that keep their initialisation')
        if problems:
            self.logger.warning(f'{filename} does not fully match the model (those weights keep their '
                                f'initialisation): {problems}')
        saved_meta = (checkpoint.get('meta') or {}).get('dataset_meta')
        if self.dataset_meta is None and saved_meta:
            self.dataset_meta = saved_meta
            self.visualizer.dataset_meta = saved_meta
        self.logger.info(f'Loaded checkpoint {filename}')
        return checkpoint

    def resume(self, filename: str) -> None:
        """Continue training from ``filename``: weights, optimizer, AMP scaler, schedulers, iteration, best
        score, sampler position and RNG states (the latter applied when the training data iterator exists)."""
        self.resuming = True
        try:
            checkpoint = self.load_checkpoint(filename, strict=True)
        finally:
            self.resuming = False
        for key in ('meta', 'optimizer', 'message_hub', 'rng_state'):
            if key not in checkpoint:
                source = ('resume uses load_from when it is set: set load_from=None to resume from the work '
                          "dir's last_checkpoint, or drop --resume to start a new run from these weights"
                          if filename == self._load_from else 'use load_from to start a new run from its weights')
                raise KeyError(f'cannot resume from {filename}: it has no {key!r} (a weights-only checkpoint, '
                               f'e.g. a best_* one?); {source}')
        iteration = int(checkpoint['meta']['iter'])
        if iteration >= self.train_loop.max_iters:
            self.logger.warning(f'{filename} is at iteration {iteration}, and train_cfg.max_iters is '
                                f'{self.train_loop.max_iters}: there is nothing left to train')
        self.train_loop.iter = iteration
        self.train_loop.epoch = iteration // max(len(self.train_dataloader), 1)
        self.message_hub.load_state_dict(checkpoint['message_hub'])
        optimizer_state = dict(checkpoint['optimizer'])
        if checkpoint.get('scaler') is not None:
            optimizer_state['loss_scaler'] = checkpoint['scaler']
        self.optim_wrapper.load_state_dict(optimizer_state)
        saved_schedulers = checkpoint.get('param_schedulers', [])
        if len(saved_schedulers) != len(self.param_schedulers):
            raise ValueError(f'{filename} holds {len(saved_schedulers)} scheduler states, the config builds '
                             f'{len(self.param_schedulers)}')
        for scheduler, state in zip(self.param_schedulers, saved_schedulers):
            scheduler.load_state_dict(state)
        rng_states: Sequence[Dict[str, Any]] = checkpoint['rng_state']
        sampler = getattr(self.train_dataloader, 'sampler', None)
        if hasattr(sampler, 'load_state_dict'):
            saved = checkpoint.get('sampler') or {}
            samples_seen = saved.get('samples_seen', iteration * self._train_batch_size() * len(rng_states))
            per_rank, left_over = divmod(samples_seen, self.world_size)
            if left_over:
                self.logger.warning(f'{filename} stopped after {samples_seen} samples, which {self.world_size} '
                                    f'processes cannot share evenly: {left_over} sample(s) are seen again')
            sampler.load_state_dict({'seed': saved.get('seed', getattr(sampler, 'seed', self.seed)),
                                     'consumed': per_rank})
        if len(rng_states) != self.world_size:
            self.logger.warning(f'{filename} was saved by {len(rng_states)} processes, this run has '
                                f'{self.world_size}: every rank restores rank 0\'s random state')
        self._resumed_rng_state = rng_states[self.rank if len(rng_states) == self.world_size else 0]
        self.logger.info(f'Resumed from {filename} at iteration {iteration}')

    def restore_resumed_rng_state(self) -> None:
        """Apply the RNG states of the checkpoint being resumed (once). The training loop calls this right
        after creating its data iterator, which may itself draw from torch's generator."""
        if self._resumed_rng_state is not None:
            restore_rng_state(self._resumed_rng_state)
            self._resumed_rng_state = None
