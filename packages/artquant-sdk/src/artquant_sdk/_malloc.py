"""Keep large freed blocks in glibc's heap while the ``artquant`` command scores on a CPU.

By default glibc serves every allocation above its mmap threshold (which adapts, up to 32 MiB)
with a fresh ``mmap`` and returns it with ``munmap`` when freed; it also gives the top of the
heap back to the system above a trim threshold. A CPU forward pass allocates and frees many
transient tensors of several megabytes, so each one is faulted in page by page, zero-filled by
the kernel, on every pass. Measured on 2 cores (benchmarks/NOTES.md): the original's
matmul-softmax vision attention at batch 1 took 141 ms instead of 98 ms, and the scoring path
at batch 8 end to end 93 ms instead of 90 ms per image.

:func:`keep_freed_memory` fixes the mmap threshold at its 32 MiB maximum and raises the trim
threshold to 1 GiB, as the ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` environment
variables would. It changes the whole process, so only the command line applies it (it owns its
process; a library call must not); the price is that the process keeps its peak heap size until
it exits. Elsewhere (musl, macOS, Windows) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

__all__ = ["keep_freed_memory"]

logger = logging.getLogger(__name__)

# From glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest allowed value on 64-bit systems
TRIM_THRESHOLD = 1024 * 1024 * 1024


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None  # another C library (musl) or a glibc without mallopt
    return libc


def keep_freed_memory() -> bool:
    """Tune glibc's malloc for repeated forward passes on a CPU (see the module docstring).

    Returns:
        True when both settings were applied; False on a system without glibc, or when glibc
        refused a value.

    Example:
        >>> keep_freed_memory()  # doctest: +SKIP
        True
    """
    libc = _glibc()
    if libc is None:
        logger.debug("not glibc: malloc settings left as they are")
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    if applied:
        logger.info(
            "glibc malloc: blocks up to %d MiB come from the heap and freed memory is kept "
            "(faster CPU forward passes; --no-malloc-tuning to skip)",
            MMAP_THRESHOLD >> 20,
        )
    else:
        logger.warning("glibc refused the malloc settings; left as they are")
    return applied
