"""``retain_freed_memory``: freed tensor memory stays in the process (checked in fresh interpreters)."""
import os
import platform
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = '''
import os, sys, torch
from segkit.engine import retain_freed_memory
def resident_mb():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20
took_effect = retain_freed_memory() if sys.argv[1] == 'retain' else False
before = resident_mb()
block = torch.ones(256 * 2**20 // 4)  # 256 MB, written
del block
print(took_effect, round(resident_mb() - before))
'''


def freed_but_resident_mb(mode: str):
    out = subprocess.run([sys.executable, '-c', PROBE, mode], cwd=ROOT, capture_output=True, text=True, check=True)
    took_effect, kept = out.stdout.split()
    return took_effect == 'True', int(kept)


@pytest.mark.skipif(platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc', reason='needs glibc')
def test_freed_tensor_memory_is_kept_for_reuse_only_when_asked():
    assert freed_but_resident_mb('default') == (False, pytest.approx(0, abs=50))  # glibc unmaps it
    took_effect, kept = freed_but_resident_mb('retain')
    assert took_effect and kept > 200
