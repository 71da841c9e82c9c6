"""Thin helpers over ``torch.distributed`` that also work when no process group exists."""
from __future__ import annotations

import datetime
import os
from typing import Any, Optional, Tuple

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_dist_info() -> Tuple[int, int]:
    """(rank, world_size); (0, 1) outside a process group."""
    if is_distributed():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def get_rank() -> int:
    return get_dist_info()[0]


def get_world_size() -> int:
    return get_dist_info()[1]


def is_main_process() -> bool:
    return get_rank() == 0


def init_dist(launcher: str, backend: Optional[str] = None, timeout_s: int = 1800) -> None:
    """Initialise the default process group from torchrun's environment (``--launcher pytorch``).

    The backend defaults to NCCL when CUDA is available and gloo otherwise.

    torchrun keeps one key-value store for all the attempts of a ``--max-restarts`` job, so each attempt's
    process group uses its own key prefix: restarted workers would otherwise read the failed attempt's peer
    addresses (gloo: "connection refused"; NCCL: a stale unique id) and fail or hang.
    """
    if launcher != 'pytorch':
        raise ValueError(f'unsupported launcher {launcher!r}: use "none" or "pytorch" (torchrun)')
    if 'RANK' not in os.environ or 'WORLD_SIZE' not in os.environ:
        raise RuntimeError('--launcher pytorch needs RANK/WORLD_SIZE from torchrun: '
                           'start with `bash tools/dist_train.sh CONFIG GPUS` or `torchrun ... tools/train.py`')
    if backend is None:
        backend = 'nccl' if torch.cuda.is_available() else 'gloo'
    if backend == 'nccl':
        torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', 0)))
    timeout = datetime.timedelta(seconds=timeout_s)
    store, rank, world_size = next(dist.rendezvous('env://', timeout=timeout))
    attempt = os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')
    dist.init_process_group(backend=backend, store=dist.PrefixStore(f'segkit_attempt_{attempt}', store),
                            rank=rank, world_size=world_size, timeout=timeout)


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks in place (no-op in a single process) and return it."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Give every rank ``src``'s buffers (no-op in a single process).

    segkit's DDP does not sync buffers, so plain BatchNorm keeps per-rank running statistics; before a
    validation, all ranks take rank 0's, the ones its checkpoints save, so the score is that of the saved model.
    """
    if is_distributed():
        for buffer in module.buffers():
            dist.broadcast(buffer, src)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Send a picklable object from ``src`` to every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
