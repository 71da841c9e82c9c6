"""``env_cfg.resource_limit`` (MMEngine's): room for the file descriptors that loader workers pass tensors by."""
from __future__ import annotations

import platform


def raise_open_file_limit(minimum: int = 4096) -> int:
    """Raise this process's soft limit on open files to at least ``minimum`` (capped at the hard limit).

    Loader workers hand every tensor's shared memory to the main process as a file descriptor; with many
    workers, samples and prefetched batches, a low soft limit (often 1024) ends in "Too many open files" or
    "received 0 items of ancdata" (pytorch/pytorch#973). Returns the soft limit now in force (0 where the
    platform has no such limit).
    """
    if platform.system() == 'Windows':
        return 0
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(soft, minimum) if hard == resource.RLIM_INFINITY else min(max(soft, minimum), hard)
    if wanted != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted
