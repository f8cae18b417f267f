"""A training process that dies by SIGKILL in the middle of writing a checkpoint.

Arguments: CONFIG_YAML STEP. Runs ``train`` on the configuration; when the checkpoint of
optimizer step STEP has written its trainable tensors into its temporary folder (optimizer,
scheduler, RNG and trainer state not yet, no ``COMPLETE`` marker), the process sends itself
SIGKILL: no exception handler, ``finally`` or atexit runs, as when the machine kills a job.
The hook lives here, in the test, not in the product: it wraps the trainer's own writer.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch

import artquant_train.loop as loop
from artquant_train import load_config, train
from artquant_train.checkpointing import checkpoint_name


def main() -> None:
    config_file, step = Path(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(1)
    write = loop.save_trainable
    doomed = f".tmp-{checkpoint_name(step)}-"

    def write_then_die(model: torch.nn.Module, path: Path) -> Any:
        write(model, path)
        if Path(path).parent.name.startswith(doomed):
            os.kill(os.getpid(), signal.SIGKILL)

    loop.save_trainable = write_then_die  # type: ignore[assignment]
    train(load_config(config_file, environ={}))
    raise SystemExit(f"the run finished without reaching the checkpoint of step {step}")


if __name__ == "__main__":
    main()
