"""Training and evaluation loops: what one iteration does, and when validation runs.

``IterBasedTrainLoop`` trains for ``max_iters`` iterations, validating every ``val_interval`` and after the
last one; ``ValLoop`` / ``TestLoop`` run the model over a dataloader once and feed the metrics. All call the
runner's hooks with MMEngine's event names and drive the model through MMEngine's step methods:
``model.train_step(batch, optim_wrapper)`` (preprocess, forward in ``'loss'`` mode, update) and
``model.val_step(batch)`` / ``model.test_step(batch)`` (preprocess, forward in ``'predict'`` mode).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Union

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from segkit.dist import broadcast_buffers, is_main_process
from segkit.registry import LOOPS, METRICS

from .rng import preserved_rng_state


class Evaluator:
    """One or several metrics fed together; their results are merged into one dict."""

    def __init__(self, metrics: Union[dict, Sequence[dict], Any]) -> None:
        configs = metrics if isinstance(metrics, (list, tuple)) else [metrics]
        self.metrics = [METRICS.build(m) if isinstance(m, dict) else m for m in configs]

    def set_dataset_meta(self, dataset_meta: Optional[dict]) -> None:
        for metric in self.metrics:
            metric.dataset_meta = dataset_meta

    def process(self, data_batch: dict, data_samples: List[dict]) -> None:
        for metric in self.metrics:
            metric.process(data_batch, data_samples)

    def evaluate(self, size: int) -> Dict[str, float]:
        results: Dict[str, float] = {}
        for metric in self.metrics:
            for key, value in metric.evaluate(size).items():
                if key in results:
                    raise KeyError(f'two evaluator metrics both report {key!r}; give them distinct prefixes')
                results[key] = value
        return results


def dataset_meta_of(dataloader: DataLoader) -> Optional[dict]:
    """The dataset's ``metainfo`` (``classes``, ``palette``, ...), or None when it has none."""
    meta = getattr(dataloader.dataset, 'metainfo', None)
    return dict(meta) if meta is not None else None


@LOOPS.register_module()
class IterBasedTrainLoop:
    """Train for ``max_iters`` iterations, drawing batches endlessly from ``dataloader``.

    ``runner.iter`` is the 0-based index of the iteration in progress while its hooks run and the number of
    iterations done between iterations. Validation runs when that number reaches ``val_begin`` and then on
    every multiple of ``val_interval``, and after the last iteration; it leaves the random generators as it
    found them, so training draws the same numbers whether or not (and however often) it validates. A resumed
    run starts at the checkpoint's iteration without replaying data: the sampler skips what was consumed and
    the runner restores the generator states right after the data iterator is created.
    """

    def __init__(self, runner: Any, dataloader: DataLoader, max_iters: int, val_begin: int = 1,
                 val_interval: int = 1000) -> None:
        if not isinstance(max_iters, int) or max_iters < 1:
            raise ValueError(f'train_cfg.max_iters must be a positive int, got {max_iters!r}')
        self.runner = runner
        self.dataloader = dataloader
        self.max_iters = max_iters
        self.val_begin = val_begin
        self.val_interval = val_interval
        self.iter = 0
        self.epoch = 0
        self.stop_training = False

    def run(self) -> None:
        runner = self.runner
        runner.call_hook('before_train')
        runner.call_hook('before_train_epoch')
        batches = iter(self.dataloader)
        runner.restore_resumed_rng_state()
        while self.iter < self.max_iters and not self.stop_training:
            runner.model.train()
            data_batch, batches = self._next_batch(batches)
            self.run_iter(data_batch)
            if runner.val_loop is not None and self._should_validate():
                broadcast_buffers(runner.model)  # validate what rank 0 will save (per-rank BatchNorm statistics)
                with preserved_rng_state():
                    runner.val_loop.run()
        runner.call_hook('after_train_epoch')
        runner.call_hook('after_train')

    def _next_batch(self, batches: Any) -> Any:
        """The next batch; a finite sampler's pass ending starts the next epoch's pass."""
        try:
            return next(batches), batches
        except StopIteration:
            self.epoch += 1
            sampler = getattr(self.dataloader, 'sampler', None)
            if hasattr(sampler, 'set_epoch'):
                sampler.set_epoch(self.epoch)
            batches = iter(self.dataloader)
            return next(batches), batches

    def _should_validate(self) -> bool:
        return self.iter >= self.val_begin and (self.iter % self.val_interval == 0 or self.iter == self.max_iters)

    def run_iter(self, data_batch: dict) -> None:
        runner = self.runner
        for name, values in runner.optim_wrapper.get_lr().items():
            runner.message_hub.update_scalar(f'train/{name}', values[0])
        runner.call_hook('before_train_iter', batch_idx=self.iter, data_batch=data_batch)
        outputs = runner.model.train_step(data_batch, optim_wrapper=runner.optim_wrapper)
        for name, value in outputs.items():
            runner.message_hub.update_scalar(f'train/{name}', float(value))
        grad_norm = getattr(runner.optim_wrapper, 'last_grad_norm', None)
        if grad_norm is not None:
            runner.message_hub.update_scalar('train/grad_norm', grad_norm)
        runner.call_hook('after_train_iter', batch_idx=self.iter, data_batch=data_batch, outputs=outputs)
        self.iter += 1


class _EvalLoop:
    """Run the model once over ``dataloader`` and evaluate; ``mode`` names the hook events (val or test)."""

    mode = ''

    def __init__(self, runner: Any, dataloader: DataLoader, evaluator: Union[dict, list, Evaluator],
                 fp16: bool = False) -> None:
        self.runner = runner
        self.dataloader = dataloader
        self.evaluator = evaluator if isinstance(evaluator, Evaluator) else Evaluator(evaluator)
        self.evaluator.set_dataset_meta(dataset_meta_of(dataloader))
        self.fp16 = fp16

    def run(self) -> Dict[str, float]:
        runner, mode = self.runner, self.mode
        runner.call_hook(f'before_{mode}')
        runner.call_hook(f'before_{mode}_epoch')
        runner.model.eval()
        progress = tqdm(total=len(self.dataloader), desc=mode, disable=not is_main_process(), dynamic_ncols=True)
        for batch_idx, data_batch in enumerate(self.dataloader):
            self.run_iter(batch_idx, data_batch)
            progress.update(1)
        progress.close()
        metrics = self.evaluator.evaluate(len(self.dataloader.dataset))
        runner.call_hook(f'after_{mode}_epoch', metrics=metrics)
        runner.call_hook(f'after_{mode}')
        return metrics

    def run_iter(self, batch_idx: int, data_batch: dict) -> None:
        runner, mode = self.runner, self.mode
        runner.call_hook(f'before_{mode}_iter', batch_idx=batch_idx, data_batch=data_batch)
        with torch.no_grad(), torch.autocast(runner.device.type, enabled=self.fp16):
            outputs = getattr(runner.model, f'{mode}_step')(data_batch)
        self.evaluator.process(data_batch, outputs)
        runner.call_hook(f'after_{mode}_iter', batch_idx=batch_idx, data_batch=data_batch, outputs=outputs)


@LOOPS.register_module()
class ValLoop(_EvalLoop):
    """Validation: runs during training (``val_interval``) or on its own (``runner.val()``).

    Args:
        fp16: run the forward pass under autocast (float16 on CUDA, bfloat16 on CPU).
    """

    mode = 'val'


@LOOPS.register_module()
class TestLoop(_EvalLoop):
    """Testing (``runner.test()``, ``tools/test.py``)."""

    mode = 'test'
