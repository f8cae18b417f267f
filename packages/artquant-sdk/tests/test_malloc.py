"""The CPU allocator setting of ``artquant score``: applied on glibc, in its own process only."""

from __future__ import annotations

import subprocess
import sys

import pytest

from artquant_sdk._malloc import _glibc

# A fresh interpreter mallocs 4 MiB with and without the setting and reports whether glibc
# served it from a fresh mmap (mallinfo2().hblks, the count of mmapped blocks, goes up).
_PROBE = """
import ctypes, sys
from artquant_sdk._malloc import keep_freed_memory

class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
if sys.argv[1] == "tuned":
    assert keep_freed_memory()
before = libc.mallinfo2().hblks
block = libc.malloc(4 * 1024 * 1024)
print(libc.mallinfo2().hblks - before)
"""


def _mmapped_blocks(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, mode],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


@pytest.mark.skipif(
    _glibc() is None or not hasattr(_glibc(), "mallinfo2"), reason="needs glibc >= 2.33"
)
def test_large_blocks_come_from_the_heap_once_tuned() -> None:
    assert _mmapped_blocks("default") == 1  # glibc's default: 4 MiB is a fresh mapping
    assert _mmapped_blocks("tuned") == 0


def test_without_glibc_nothing_is_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    from artquant_sdk import _malloc

    monkeypatch.setattr(_malloc.sys, "platform", "darwin")
    assert _malloc._glibc() is None
    assert _malloc.keep_freed_memory() is False
