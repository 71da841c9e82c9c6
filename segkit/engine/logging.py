"""The runner's logging: handlers on the ``segkit`` logger, and the message hub that hooks share.

Rank 0 logs to the console and to ``<log_dir>/<timestamp>.log``; the other ranks print warnings and errors only,
tagged ``[rank N]``, so a multi-GPU run shows one stream of progress.
"""
from __future__ import annotations

import logging
import sys
from collections import deque
from typing import Any, Deque, Dict, List, Optional

LOGGER_NAME = 'segkit'
LOG_FORMAT = '%(asctime)s - segkit - %(levelname)s - %(message)s'
DATE_FORMAT = '%Y/%m/%d %H:%M:%S'


class _RunnerHandler:
    """Marks handlers the runner attached, so a later runner (in the same process) replaces them."""


class _RunnerStreamHandler(logging.StreamHandler, _RunnerHandler):
    pass


class _RunnerFileHandler(logging.FileHandler, _RunnerHandler):
    pass


# The logger's level and propagation before the first runner changed them (restored by close_runner_handlers).
_saved_logger_state: Optional[tuple] = None


def setup_logger(log_file: Optional[str], log_level: str = 'INFO', rank: int = 0) -> logging.Logger:
    """Attach console (and, on rank 0, file) handlers to the ``segkit`` logger and return it.

    Handlers from an earlier runner are closed and removed; handlers the user attached are left alone.
    The logger stops propagating to the root logger meanwhile, so records are not printed twice.
    """
    global _saved_logger_state
    level = logging.getLevelName(str(log_level).upper())
    if not isinstance(level, int):
        raise ValueError(f'log_level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL; got {log_level!r}')
    logger = logging.getLogger(LOGGER_NAME)
    close_runner_handlers()
    _saved_logger_state = (logger.level, logger.propagate)
    formatter = logging.Formatter(LOG_FORMAT if rank == 0 else LOG_FORMAT.replace(' - %(levelname)s',
                                                                                   f' - [rank {rank}] %(levelname)s'),
                                  DATE_FORMAT)
    console = _RunnerStreamHandler(sys.stdout)
    console.setLevel(level if rank == 0 else logging.WARNING)
    console.setFormatter(formatter)
    logger.addHandler(console)
    if rank == 0 and log_file is not None:
        file_handler = _RunnerFileHandler(log_file, mode='a', encoding='utf-8')
        file_handler.setLevel(level)
        file_handler.setFormatter(formatter)
        logger.addHandler(file_handler)
    logger.setLevel(level if rank == 0 else logging.WARNING)
    logger.propagate = False
    return logger


def write_to_log_file(message: str, level: int = logging.ERROR) -> None:
    """Record ``message`` in the run's text log only: for what the command line has already printed."""
    logger = logging.getLogger(LOGGER_NAME)
    record = logger.makeRecord(LOGGER_NAME, level, __file__, 0, message, None, None)
    for handler in logger.handlers:
        if isinstance(handler, _RunnerFileHandler):
            handler.handle(record)


def close_runner_handlers() -> None:
    """Detach and close the handlers ``setup_logger`` attached (the log file is complete afterwards) and give
    the logger back its earlier level and propagation."""
    global _saved_logger_state
    logger = logging.getLogger(LOGGER_NAME)
    for handler in [h for h in logger.handlers if isinstance(h, _RunnerHandler)]:
        logger.removeHandler(handler)
        handler.close()
    if _saved_logger_state is not None:
        logger.setLevel(_saved_logger_state[0])
        logger.propagate = _saved_logger_state[1]
        _saved_logger_state = None


class ScalarHistory:
    """The recent values of one logged scalar plus a running total, for windowed and global means."""

    def __init__(self, max_window: int = 1000) -> None:
        self._recent: Deque[float] = deque(maxlen=max_window)
        self._total = 0.0
        self._count = 0

    def update(self, value: float) -> None:
        self._recent.append(value)
        self._total += value
        self._count += 1

    def mean(self, window: Optional[int] = None) -> float:
        """Mean of the last ``window`` values, or of all values since creation when ``window`` is None."""
        if window is None:
            return self._total / max(self._count, 1)
        values = list(self._recent)[-window:]
        return sum(values) / max(len(values), 1)

    def current(self) -> float:
        return self._recent[-1]

    @property
    def count(self) -> int:
        return self._count


class MessageHub:
    """What hooks tell each other during a run.

    ``scalars`` hold per-iteration numbers (``train/loss``, ``train/time``, ...) for smoothing and logging;
    ``runtime_info`` holds plain values (``best_score``, ``last_ckpt``, ``keep_ckpt_ids``, ``eta``) of which
    ``RESUMABLE_KEYS`` are saved in checkpoints and restored on resume.
    """

    RESUMABLE_KEYS = ('best_score', 'best_ckpt', 'last_ckpt', 'keep_ckpt_ids')

    def __init__(self) -> None:
        self.scalars: Dict[str, ScalarHistory] = {}
        self.runtime_info: Dict[str, Any] = {}

    def update_scalar(self, key: str, value: float) -> None:
        self.scalars.setdefault(key, ScalarHistory()).update(float(value))

    def get_scalar(self, key: str) -> ScalarHistory:
        if key not in self.scalars:
            raise KeyError(f'no scalar {key!r} has been logged; logged: {sorted(self.scalars)}')
        return self.scalars[key]

    def scalar_keys(self, prefix: str) -> List[str]:
        """Logged scalar names starting with ``prefix``, in the order they were first logged."""
        return [key for key in self.scalars if key.startswith(prefix)]

    def update_info(self, key: str, value: Any) -> None:
        self.runtime_info[key] = value

    def get_info(self, key: str, default: Any = None) -> Any:
        return self.runtime_info.get(key, default)

    def state_dict(self) -> Dict[str, Any]:
        return {key: self.runtime_info[key] for key in self.RESUMABLE_KEYS if key in self.runtime_info}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.runtime_info.update({key: state[key] for key in self.RESUMABLE_KEYS if key in state})
