"""Start the test workers as separate processes (torchrun for the multi-process runs)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_train_ddp_worker.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def worker_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker: one intra-op thread (2 processes share 2 busy cores)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(extra or {})}


def torchrun(
    args: Sequence[str | os.PathLike[str]],
    *,
    processes: int = 2,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run :data:`WORKER` with ``args`` in ``processes`` processes on the CPU (gloo)."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(processes),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        str(WORKER),
        *[str(arg) for arg in args],
    ]
    return subprocess.run(
        command, env=worker_env(env), capture_output=True, text=True, timeout=timeout
    )


def failure(proc: subprocess.CompletedProcess[str]) -> str:
    """The tail of a failed worker's output, for the assertion message."""
    return proc.stdout[-3000:] + proc.stderr[-6000:]
