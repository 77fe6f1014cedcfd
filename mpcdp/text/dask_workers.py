"""Preparing dask.distributed workers for sanitising: their C allocator keeps and reuses freed memory.

Dask starts its workers with ``MALLOC_TRIM_THRESHOLD_`` set, which also freezes glibc's threshold for
serving an allocation from fresh pages (mmap) at 128 KiB: every large temporary array of a partition then
comes from new, zeroed pages, and a partition took twice the CPU time it takes in a plain process
(measured on GloVe 50k, 50,000 short documents: 1.3-1.5 s against 0.6-0.8 s). :class:`ReuseFreedMemory`
raises both thresholds in every worker, those restarted later included. Imported only with Dask.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # <malloc.h>


def reuse_freed_memory() -> bool:
    """Raise this process's glibc trim and mmap thresholds (1 GiB, 32 MiB); False where there is no glibc."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        return False
    if mallopt is None:
        return False
    return bool(mallopt(M_TRIM_THRESHOLD, 1 << 30)) and bool(mallopt(M_MMAP_THRESHOLD, 32 << 20))


class ReuseFreedMemory(WorkerPlugin):
    """Calls :func:`reuse_freed_memory` in every worker as it joins."""

    name = "mpcdp-text-reuse-freed-memory"

    def setup(self, worker: Any) -> None:
        reuse_freed_memory()
