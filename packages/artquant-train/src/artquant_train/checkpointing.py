"""Atomic, resumable checkpoints.

A checkpoint is first written to a hidden temporary folder beside its final place; a ``COMPLETE``
marker is written last, then the folder is renamed into place with :func:`os.replace` (atomic on
one filesystem). A crash mid-write leaves only a ``.tmp-*`` folder, which resume ignores and the
next save cleans up; resume picks the newest ``checkpoint-<step>`` folder that has the marker.

A resumable checkpoint holds:

* ``trainable.safetensors``: every trainable tensor (LoRA, vision tower, abstractor), by name;
* ``optimizer.pt`` / ``scheduler.pt``: their state dicts (loaded with ``weights_only=True``);
* ``rng_state_<rank>.pt``: Python, NumPy and torch (CPU and CUDA) generator states per process;
* ``trainer_state.json``: step, epoch, micro-batches consumed in the epoch, best metric;
* ``train_config.yaml``: the resolved configuration.

Example:
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> with atomic_directory(root / "checkpoint-00000001") as tmp:
    ...     _ = (tmp / "trainer_state.json").write_text("{}")
    >>> [p.name for p in complete_checkpoints(root)]
    ['checkpoint-00000001']
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from artquant_train.errors import CheckpointStateError

logger = logging.getLogger(__name__)

COMPLETE_MARKER = "COMPLETE"
CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
TRAINABLE_FILE = "trainable.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
STATE_FILE = "trainer_state.json"


@dataclass(frozen=True)
class TrainerState:
    """Where a run stands; enough to continue it exactly.

    Attributes:
        global_step: optimizer steps done.
        epoch: current epoch.
        micro_batches_done: global micro-batches of ``epoch`` already trained on.
        samples_seen: training rows seen, all processes together.
        best_metric: best validation metric so far (``None`` before the first validation).
        best_step: the step of ``best_metric``.
        world_size: processes of the run that wrote it.
    """

    global_step: int
    epoch: int
    micro_batches_done: int
    samples_seen: int
    best_metric: float | None = None
    best_step: int | None = None
    world_size: int = 1

    def to_json(self) -> str:
        """Serialise to JSON text."""
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> TrainerState:
        """Parse :meth:`to_json` output."""
        return cls(**json.loads(text))


def checkpoint_name(step: int) -> str:
    """The folder name of the checkpoint after ``step`` optimizer steps."""
    return f"checkpoint-{step:08d}"


@contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Write a folder atomically: yield a temporary folder, then move it to ``target``.

    On success a ``COMPLETE`` marker is written and the folder replaces ``target`` (an existing
    ``target`` is moved aside first and deleted after). On error the temporary folder is
    removed and ``target`` is untouched.

    Args:
        target: the final folder.

    Yields:
        The temporary folder to write into.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{target.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        (tmp / COMPLETE_MARKER).write_text("complete\n", encoding="utf-8")
        _fsync_dir(tmp)
        old = None
        if target.exists():
            old = target.parent / f".old-{target.name}-{uuid.uuid4().hex[:8]}"
            os.replace(target, old)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some filesystems (and Windows) do not open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_complete(path: Path) -> bool:
    """Whether ``path`` is a finished checkpoint (it has the ``COMPLETE`` marker)."""
    return (Path(path) / COMPLETE_MARKER).is_file()


def complete_checkpoints(output_dir: Path) -> list[Path]:
    """Complete ``checkpoint-<step>`` folders of a run, oldest first.

    A folder counts only when it holds the ``COMPLETE`` marker that :func:`atomic_directory`
    writes last, so a save cut short never shows up here.

    Args:
        output_dir: the run folder (it need not exist).

    Returns:
        The complete checkpoint folders, sorted by step; empty when there are none.

    Example:
        >>> import tempfile
        >>> run = Path(tempfile.mkdtemp())
        >>> for step in (20, 100):
        ...     with atomic_directory(run / checkpoint_name(step)):
        ...         pass
        >>> (run / checkpoint_name(300)).mkdir()  # no marker: an interrupted save
        >>> [p.name for p in complete_checkpoints(run)], latest_checkpoint(run).name
        (['checkpoint-00000020', 'checkpoint-00000100'], 'checkpoint-00000100')
    """
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = CHECKPOINT_PATTERN.match(child.name)
        if match and child.is_dir() and is_complete(child):
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or ``None``.

    Args:
        output_dir: the run folder (it need not exist).

    Returns:
        The complete checkpoint with the highest step (see :func:`complete_checkpoints`), or
        ``None`` when the run has none.
    """
    found = complete_checkpoints(output_dir)
    return found[-1] if found else None


def clean_stale_temporaries(output_dir: Path) -> list[Path]:
    """Remove ``.tmp-*``/``.old-*`` leftovers of interrupted saves; returns what was removed."""
    root = Path(output_dir)
    removed = []
    if root.is_dir():
        for child in root.iterdir():
            if child.is_dir() and child.name.startswith((".tmp-", ".old-")):
                shutil.rmtree(child, ignore_errors=True)
                removed.append(child)
    return removed


def prune_checkpoints(output_dir: Path, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` complete checkpoints; returns the deleted."""
    found = complete_checkpoints(output_dir)
    doomed = found[: max(len(found) - keep_last, 0)]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy and torch generator states, in types ``weights_only`` loading accepts."""
    # The legacy global NumPy generator is what third-party code draws from: save it as is.
    legacy = np.random.get_state(legacy=True)  # noqa: NPY002
    kind, keys, pos, has_gauss, cached = legacy  # type: ignore[misc]
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`capture_rng_state` captured."""
    random.setstate(_as_tuple(state["python"]))
    numpy_state = state["numpy"]
    np.random.set_state(  # noqa: NPY002 - restores the legacy global generator
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_as_tuple(v) for v in value)
    return value


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter with ``requires_grad``, by name, detached on the CPU."""
    return {
        name: param.detach().to("cpu").contiguous()
        for name, param in model.named_parameters()
        if param.requires_grad
    }


def save_trainable(model: torch.nn.Module, path: Path) -> None:
    """Write :func:`trainable_state` to a safetensors file."""
    save_file(trainable_state(model), str(path))


def load_trainable(model: torch.nn.Module, path: Path) -> None:
    """Copy saved trainable tensors back into ``model``.

    Raises:
        CheckpointStateError: names or shapes differ from the model's trainable parameters.
    """
    saved = load_file(str(path))
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    missing = sorted(set(params) - set(saved))
    unexpected = sorted(set(saved) - set(params))
    if missing or unexpected:
        raise CheckpointStateError(
            f"{path}: trainable tensors differ from the model; missing {missing[:5]} "
            f"({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)}). Was the "
            "checkpoint written with another freezing/LoRA configuration?"
        )
    with torch.no_grad():
        for name, param in params.items():
            if saved[name].shape != param.shape:
                raise CheckpointStateError(
                    f"{path}: {name} has shape {tuple(saved[name].shape)}, the model "
                    f"{tuple(param.shape)}"
                )
            param.copy_(saved[name].to(param.dtype))


def read_trainer_state(checkpoint: Path) -> TrainerState:
    """Read ``trainer_state.json`` of a checkpoint.

    Raises:
        CheckpointStateError: the file is missing or malformed.
    """
    path = Path(checkpoint) / STATE_FILE
    try:
        return TrainerState.from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError) as exc:
        raise CheckpointStateError(f"cannot read {path}: {exc}") from exc


def load_torch_state(path: Path) -> Any:
    """``torch.load`` a state file safely (``weights_only=True``, on the CPU).

    Raises:
        CheckpointStateError: the file is missing.
    """
    if not Path(path).is_file():
        raise CheckpointStateError(f"checkpoint file missing: {path}")
    return torch.load(path, map_location="cpu", weights_only=True)


__all__ = [
    "COMPLETE_MARKER",
    "OPTIMIZER_FILE",
    "SCHEDULER_FILE",
    "STATE_FILE",
    "TRAINABLE_FILE",
    "TrainerState",
    "atomic_directory",
    "capture_rng_state",
    "checkpoint_name",
    "clean_stale_temporaries",
    "complete_checkpoints",
    "is_complete",
    "latest_checkpoint",
    "load_torch_state",
    "load_trainable",
    "prune_checkpoints",
    "read_trainer_state",
    "restore_rng_state",
    "save_trainable",
    "trainable_state",
]
