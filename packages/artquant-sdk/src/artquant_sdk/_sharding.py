"""Splitting ``artquant score`` over several processes and merging their rows.

Launchers (``accelerate launch --multi_gpu``, ``torchrun``) start one process per device and
set ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``. Every process expands the same inputs to the
same ordered list, takes every ``WORLD_SIZE``-th file starting at its ``RANK`` and appends its
rows to its own part file, ``.<out name>.parts/rank<k>-of-<n>.<ext>`` beside the output. Rank 0,
after its own share, waits until every part holds a row for every file of its share, then
writes the output with each file exactly once, in input order (through a temporary file and an
atomic rename), and removes the parts. No process group is needed, only a folder that every
process sees.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from artquant_sdk._output import Format, OutputFormatError, Row, RowWriter, read_rows

__all__ = [
    "DistEnv",
    "dist_env",
    "merge_outputs",
    "part_path",
    "parts_dir",
    "remove_parts",
    "row_key",
    "shard",
    "wait_for_parts",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistEnv:
    """This process's place among the launched processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the one that merges."""
        return self.rank == 0


def _env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as error:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from error


def dist_env(environ: Mapping[str, str] | None = None) -> DistEnv:
    """Read ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (all optional; default one process).

    Raises:
        ValueError: A value is not an integer or ``0 <= RANK < WORLD_SIZE`` fails.

    Example:
        >>> dist_env({"RANK": "1", "WORLD_SIZE": "2"})
        DistEnv(rank=1, world_size=2, local_rank=0)
    """
    env = os.environ if environ is None else environ
    rank = _env_int(env, "RANK", 0)
    world = _env_int(env, "WORLD_SIZE", 1)
    local = _env_int(env, "LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ValueError(
            f"RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}: need 0 <= RANK < "
            "WORLD_SIZE and LOCAL_RANK >= 0"
        )
    return DistEnv(rank, world, local)


def shard(items: Sequence[str], rank: int, world_size: int) -> list[str]:
    """Rank ``rank``'s share: every ``world_size``-th item starting at ``rank``.

    Round-robin rather than contiguous blocks, so that folders of large and small images are
    spread over all processes.

    Example:
        >>> shard(["a", "b", "c", "d", "e"], 1, 2)
        ['b', 'd']
    """
    return list(items[rank::world_size])


def row_key(image: str) -> str:
    """The identity used to match rows to files: the real absolute path (the id for non-paths)."""
    return os.path.realpath(image)


def parts_dir(out: Path) -> Path:
    """The folder of part files for output ``out``."""
    return out.parent / f".{out.name}.parts"


def part_path(out: Path, rank: int, world_size: int) -> Path:
    """The part file of one rank."""
    return parts_dir(out) / f"rank{rank:05d}-of-{world_size:05d}{out.suffix}"


def wait_for_parts(
    out: Path,
    files: Sequence[str],
    world_size: int,
    fmt: Format,
    *,
    already_done: set[str],
    timeout: float | None = None,
    poll_seconds: float = 1.0,
) -> bool:
    """Wait until every rank's part holds a row for each file of its share.

    Args:
        out: The final output path.
        files: The full ordered input list every rank shards.
        world_size: The number of processes.
        fmt: The row format.
        already_done: Keys (see :func:`row_key`) the final output held before this run.
        timeout: Seconds to wait at most (None: no limit).
        poll_seconds: Time between checks.

    Returns:
        True when every share is complete, False on timeout.
    """
    pending = set(range(1, world_size))
    start = time.monotonic()
    last_log = start
    while True:
        for rank in sorted(pending):
            _, rows = read_rows(part_path(out, rank, world_size), fmt)
            have = {row_key(str(r["image"])) for r in rows}
            need = {row_key(f) for f in shard(files, rank, world_size)} - already_done
            if need <= have:
                pending.discard(rank)
        if not pending:
            return True
        now = time.monotonic()
        if timeout is not None and now - start > timeout:
            logger.error("gave up waiting for rank(s) %s after %.0f s", sorted(pending), timeout)
            return False
        if now - last_log > 60:
            logger.info("waiting for rank(s) %s to finish their share", sorted(pending))
            last_log = now
        time.sleep(poll_seconds)


def merge_outputs(
    out: Path,
    files: Sequence[str],
    sources: Sequence[Path],
    fmt: Format,
    columns: Sequence[str] | None = None,
) -> list[str]:
    """Write ``out`` holding each of ``files`` once, in order, from the rows of ``sources``.

    Rows are matched by :func:`row_key`; the first source holding a file wins. Rows of files
    that are not in ``files`` are dropped. The write goes to a temporary file renamed over
    ``out``, so a kill during the merge leaves the old output and the parts intact.

    Args:
        out: The output path (may itself be one of ``sources``).
        files: The ordered input list.
        sources: Row files, in priority order; missing ones are skipped.
        fmt: The row format.
        columns: The columns; default the header of the first source that has one.

    Returns:
        The files that no source holds a row for (empty when the merge is complete).

    Raises:
        OutputFormatError: Two sources have different columns, or none has any.
    """
    by_key: dict[str, Row] = {}
    header = list(columns) if columns is not None else None
    for source in sources:
        cols, rows = read_rows(source, fmt)
        if cols is None:
            continue
        if header is None:
            header = cols
        elif fmt == "csv" and cols != header:
            raise OutputFormatError(f"{source} has columns {cols}, expected {header}")
        for row in rows:
            by_key.setdefault(row_key(str(row["image"])), row)
    if header is None:
        raise OutputFormatError(f"no rows to merge into {out} (sources: {list(map(str, sources))})")
    missing: list[str] = []
    tmp = out.with_name(f".{out.name}.merging")
    tmp.unlink(missing_ok=True)
    with RowWriter(tmp, header, fmt) as writer:
        for file in files:
            found = by_key.get(row_key(file))
            if found is None:
                missing.append(file)
            else:
                writer.write({k: (None if v == "" else v) for k, v in found.items()})
    os.replace(tmp, out)
    return missing


def remove_parts(out: Path) -> None:
    """Delete the part folder of ``out`` after a successful merge."""
    shutil.rmtree(parts_dir(out), ignore_errors=True)
