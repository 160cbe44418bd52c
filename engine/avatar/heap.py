"""Let a build reuse the memory of its freed texture-sized arrays (glibc only; elsewhere a no-op).

glibc hands out every block above its mmap threshold (at most 32 MB) as fresh pages from the
kernel and returns them on free, so each new 2048-texel float array (36 MB) is zero-filled
and page-faulted again: in a fresh process that first-touch cost is about a fifth of the
build (bench/bench_avatar.py). While a build runs, large blocks come from the heap instead and
freed ones stay there for the next array; at the end the free memory goes back to the system.

mallopt settings are process-wide and the server runs jobs side by side, so the settings are
reference-counted: the first build to start sets them, the last one to finish restores them
and trims (a build ending while another runs must not take the heap from under it).
"""

from __future__ import annotations

import ctypes
import sys
import threading
from contextlib import contextmanager
from functools import cache

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# blocks up to this size come from the heap, and this much free heap is kept during a build
HEAP_BLOCK_BYTES = 1 << 30
# glibc's own ceiling for its dynamic mmap threshold (64-bit), and twice that for trimming:
# what a long-running process converges to without this module
_SETTLED_MMAP_THRESHOLD = 32 << 20


@cache
def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 - both exist on glibc, not on musl
    except (OSError, AttributeError):
        return None
    return libc


_lock = threading.Lock()
_active = 0  # builds inside reuse_freed_arrays() now


@contextmanager
def reuse_freed_arrays():
    """Within the block large freed arrays are reused rather than returned to the system.

    Safe to nest and to enter from several threads at once (see the module docstring)."""
    global _active
    libc = _glibc()
    if libc is None:
        yield
        return
    with _lock:
        _active += 1
        if _active == 1:
            libc.mallopt(_M_MMAP_THRESHOLD, HEAP_BLOCK_BYTES)
            libc.mallopt(_M_TRIM_THRESHOLD, HEAP_BLOCK_BYTES)
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                libc.mallopt(_M_MMAP_THRESHOLD, _SETTLED_MMAP_THRESHOLD)
                libc.mallopt(_M_TRIM_THRESHOLD, 2 * _SETTLED_MMAP_THRESHOLD)
                libc.malloc_trim(0)
