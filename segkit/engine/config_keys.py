"""Checks that the runner's small config sections name only keys it acts on: a typo is an error, not a no-op."""
from __future__ import annotations

import difflib
import warnings
from typing import Mapping

# The keys each section supports, and MMEngine's keys that segkit accepts without acting on them.
SECTIONS = {
    'env_cfg': (('cudnn_benchmark', 'mp_cfg', 'dist_cfg', 'resource_limit', 'retain_freed_memory'), ()),
    'env_cfg.mp_cfg': (('mp_start_method', 'opencv_num_threads'), ()),
    'env_cfg.dist_cfg': (('backend', 'timeout'), ()),
    'randomness': (('seed', 'deterministic', 'diff_rank_seed'), ()),
    'log_processor': (('type', 'window_size', 'num_digits', 'by_epoch'),
                      ('custom_cfg', 'log_with_hierarchy', 'mean_pattern')),
}


def check_keys(section: str, given: Mapping) -> None:
    """Raise KeyError for a key of ``given`` that ``SECTIONS[section]`` neither supports nor ignores (naming
    the closest known keys); warn for each ignored one."""
    supported, ignored = SECTIONS[section]
    for key in given:
        if key in supported:
            continue
        if key in ignored:
            warnings.warn(f'{section}.{key} is an MMEngine setting that segkit does not implement; it is ignored',
                          stacklevel=3)
            continue
        close = difflib.get_close_matches(str(key), supported + ignored, n=2)
        hint = f'; did you mean {" or ".join(map(repr, close))}?' if close else ''
        raise KeyError(f'{section}.{key} is not a setting segkit knows{hint} (known: {", ".join(supported)})')
