"""``CheckpointHook``: periodic, last and best checkpoints, with old ones pruned."""
from __future__ import annotations

import glob
import operator
import os
from typing import Any, Dict, Optional

from segkit.dist import is_main_process
from segkit.registry import HOOKS

from .hook import Hook

RULES = {'greater': operator.gt, 'less': operator.lt}
# MMEngine's defaults for inferring the rule from a metric name (case-insensitive, exact then substring).
GREATER_KEYS = ('acc', 'top', 'AR@', 'auc', 'precision', 'mAP', 'mDice', 'mIoU', 'mAcc', 'aAcc')
LESS_KEYS = ('loss',)


def infer_rule(key: str) -> str:
    """``'greater'`` or ``'less'`` for a metric name, by MMEngine's rules; an unknown name is an error."""
    name = key.lower()
    greater = {k.lower() for k in GREATER_KEYS}
    less = {k.lower() for k in LESS_KEYS}
    if name in greater:
        return 'greater'
    if name in less:
        return 'less'
    if any(k in name for k in greater):
        return 'greater'
    if any(k in name for k in less):
        return 'less'
    raise ValueError(f'CheckpointHook: cannot tell whether a higher or lower {key!r} is better; '
                     f'set rule="greater" or rule="less"')


def write_last_checkpoint_pointer(work_dir: str, checkpoint_path: str) -> None:
    """Write ``<work_dir>/last_checkpoint`` (the path of the newest checkpoint) atomically."""
    pointer = os.path.join(work_dir, 'last_checkpoint')
    tmp = pointer + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
        f.write(checkpoint_path)
    os.replace(tmp, pointer)


@HOOKS.register_module()
class CheckpointHook(Hook):
    """Saves ``iter_{N}.pth`` every ``interval`` iterations and at the end, and ``best_{key}_iter_{N}.pth``
    whenever validation improves ``save_best``.

    Every write is atomic (a temporary file renamed into place), and checkpoints pruned by ``max_keep_ckpts``
    or replaced by a new best are removed only after it (unlike MMEngine, which prunes first): a run killed
    while saving keeps its previous checkpoint. ``<work_dir>/last_checkpoint`` holds the path of the newest
    periodic checkpoint, which ``resume=True`` picks up. As in MMEngine, an improved best score
    also re-saves the current ``iter_{N}.pth`` so that a resumed run knows the best score so far.

    Args:
        interval: iterations between checkpoints (<= 0: only ``save_last``).
        by_epoch: must be False (segkit trains by iteration); accepted because MMSeg configs set it.
        save_optimizer / save_param_scheduler: include the optimizer (and AMP scaler) / scheduler states,
            needed to resume.
        out_dir: where to save; defaults to the work dir, otherwise ``<out_dir>/<work_dir name>``.
        max_keep_ckpts: keep only this many newest ``iter_{N}.pth`` (<= 0 keeps all).
        save_last: also save after the final iteration when it is not a multiple of ``interval``.
        save_best: a metric name (``'mIoU'``) or ``'auto'`` (the first metric) to track.
        rule: ``'greater'`` or ``'less'``; inferred from the name when None (``mIoU`` -> greater).
        filename_tmpl: periodic checkpoint name, formatted with the iteration.
        save_begin: first iteration from which ``interval`` counts.
    """

    priority = 'VERY_LOW'

    def __init__(self, interval: int = -1, by_epoch: bool = False, save_optimizer: bool = True,
                 save_param_scheduler: bool = True, out_dir: Optional[str] = None, max_keep_ckpts: int = -1,
                 save_last: bool = True, save_best: Optional[str] = None, rule: Optional[str] = None,
                 filename_tmpl: str = 'iter_{}.pth', save_begin: int = 0) -> None:
        if by_epoch:
            raise ValueError('CheckpointHook(by_epoch=True) is not supported: segkit trains by iteration '
                             '(IterBasedTrainLoop); set by_epoch=False')
        if save_best is not None and not isinstance(save_best, str):
            raise TypeError(f'CheckpointHook.save_best must be one metric name or "auto", got {save_best!r}')
        if rule is not None and rule not in RULES:
            raise ValueError(f'CheckpointHook.rule must be "greater", "less" or None, got {rule!r}')
        if save_begin < 0:
            raise ValueError(f'CheckpointHook.save_begin must be >= 0, got {save_begin}')
        self.interval = interval
        self.save_optimizer = save_optimizer
        self.save_param_scheduler = save_param_scheduler
        self._out_dir_arg = out_dir
        self.out_dir: Optional[str] = out_dir
        self.max_keep_ckpts = max_keep_ckpts
        self.save_last = save_last
        self.save_best = save_best
        self.rule = rule
        self.filename_tmpl = filename_tmpl
        self.save_begin = save_begin

    def before_train(self, runner: Any) -> None:
        if self._out_dir_arg is None:
            self.out_dir = runner.work_dir
        else:
            self.out_dir = os.path.join(self._out_dir_arg, os.path.basename(os.path.normpath(runner.work_dir)))
        runner.logger.info(f'Checkpoints will be saved to {self.out_dir}.')
        if is_main_process():  # partial writes of a run killed while saving (save_checkpoint's temporary files)
            for stale in glob.glob(os.path.join(glob.escape(self.out_dir), '.tmp_*.pth')):
                os.remove(stale)
                runner.logger.info(f'Removed {stale}, a checkpoint write that an earlier run left unfinished.')

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        if (self.every_n_train_iters(runner, self.interval, self.save_begin)
                or (self.save_last and self.is_last_train_iter(runner))):
            runner.logger.info(f'Saving checkpoint at {runner.iter + 1} iterations')
            self._save_periodic(runner, runner.iter + 1)

    def _save_periodic(self, runner: Any, step: int) -> None:
        hub = runner.message_hub
        dropped = []
        if self.max_keep_ckpts > 0:
            keep = list(hub.get_info('keep_ckpt_ids', []))
            if not keep or keep[-1] != step:
                keep.append(step)
            dropped, keep = keep[:-self.max_keep_ckpts], keep[-self.max_keep_ckpts:]
            hub.update_info('keep_ckpt_ids', keep)  # saved in the checkpoint, so pruning resumes correctly
        path = os.path.join(self.out_dir, self.filename_tmpl.format(step))
        hub.update_info('last_ckpt', path)
        runner.save_checkpoint(self.out_dir, self.filename_tmpl.format(step), save_optimizer=self.save_optimizer,
                               save_param_scheduler=self.save_param_scheduler, meta=dict(iter=step))
        if is_main_process():
            write_last_checkpoint_pointer(runner.work_dir, path)
        # old checkpoints go only once the new one and the pointer to it are on disk: a run killed while
        # saving still has a checkpoint to resume from
        for old_step in dropped:
            self._remove(os.path.join(self.out_dir, self.filename_tmpl.format(old_step)))

    def after_val_epoch(self, runner: Any, metrics: Optional[Dict[str, float]] = None) -> None:
        if not self.save_best or runner.train_loop is None:
            return
        if not metrics:
            runner.logger.warning('CheckpointHook: validation returned no metrics; best checkpoint not updated')
            return
        key = next(iter(metrics)) if self.save_best == 'auto' else self.save_best
        if key not in metrics:
            raise KeyError(f'CheckpointHook.save_best={key!r} is not among the validation metrics '
                           f'{sorted(metrics)}')
        score = float(metrics[key])
        hub = runner.message_hub
        best = hub.get_info('best_score')
        if best is not None and not RULES[self.rule or infer_rule(key)](score, best):
            return
        hub.update_info('best_score', score)
        previous = hub.get_info('best_ckpt')
        filename = f'best_{key}_{self.filename_tmpl.format(runner.iter)}'.replace('/', '_')
        path = os.path.join(self.out_dir, filename)
        hub.update_info('best_ckpt', path)
        runner.save_checkpoint(self.out_dir, filename, save_optimizer=False, save_param_scheduler=False,
                               meta=dict(iter=runner.iter))
        # replaced only once the new best is on disk, and only in this run's folder: a run resumed into another
        # work dir inherits the best_ckpt path of the run it continues, whose files are not its own
        if previous and previous != path and os.path.dirname(os.path.abspath(previous)) == os.path.abspath(
                self.out_dir):
            self._remove(previous)
        runner.logger.info(f'The best checkpoint with {score:.4f} {key} at {runner.iter} iter is saved to '
                           f'{filename}.')
        if hub.get_info('last_ckpt') is not None:
            self._save_periodic(runner, runner.iter)

    @staticmethod
    def _remove(path: str) -> None:
        if is_main_process() and os.path.isfile(path):
            os.remove(path)
