"""One process of the multi-process tests (started by torchrun from test_distributed.py and
test_fsdp.py).

Arguments: BASE DATA_ROOT OUTPUT_DIR RECORD_DIR [OVERRIDES_JSON]. Trains (by default 4 steps
with batch 2 per process; OVERRIDES_JSON holds more dotted overrides) and saves the full
trainable tensors after every step to RECORD_DIR/rank<r>_step<s>.pt, with the loss and how many
trained tensors were FSDP shards (``__sharded__``) in how many FSDP units (``__units__``). Under
FSDP the tensors are gathered from the shards first (a collective: every rank takes part).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _train_synthetic import tiny_run_config

from artquant_train import StepInfo, train

OVERRIDES = {
    "run.max_steps": 4,
    "run.grad_accum": 2,
    "lora.dropout": 0.0,
    "data.group_by_length": False,
    "checkpoint.every": 0,
    # Adam divides by sqrt(v) + eps: a gradient that is zero in exact arithmetic (an attention
    # key bias, which softmax ignores) is float noise of ~1e-9 that a tiny eps turns into a full
    # lr-sized random step. A larger eps keeps such noise noise, so weights compare at 1e-4.
    "optim.eps": 1e-4,
}


def data_paths(root: Path) -> dict[str, Path]:
    return {
        "images": root / "images",
        "score": root / "score.json",
        "description": root / "description.json",
        "val": root / "val.json",
    }


def full_trainables(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every trainable tensor in full (an FSDP shard gathered: collective on every rank)."""
    from torch.distributed.tensor import DTensor

    out: dict[str, torch.Tensor] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            tensor: Any = param.detach()
            if isinstance(tensor, DTensor):
                tensor = tensor.full_tensor()
            out[name] = tensor.clone()
    return out


def main() -> None:
    base, root, out, record = (Path(a) for a in sys.argv[1:5])
    extra = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
    torch.set_num_threads(1)

    def save(info: StepInfo) -> None:
        from torch.distributed.fsdp import FSDPModule
        from torch.distributed.tensor import DTensor

        trained = [p for p in info.model.parameters() if p.requires_grad]
        state = full_trainables(info.model)
        state["__loss__"] = torch.tensor(info.loss, dtype=torch.float64)
        # how the run was sharded: trained tensors held as shards, FSDP units in the model
        state["__sharded__"] = torch.tensor(sum(isinstance(p, DTensor) for p in trained))
        state["__units__"] = torch.tensor(
            sum(isinstance(m, FSDPModule) for m in info.model.modules())
        )
        torch.save(state, record / f"rank{info.rank}_step{info.step}.pt")

    overrides = {**OVERRIDES, "run.batch_size": 2, **extra}
    config = tiny_run_config(base, data_paths(root), out, **overrides)
    result = train(config, on_step_end=save)
    if result.global_step != config.run.max_steps:
        raise SystemExit(f"expected {config.run.max_steps} steps, got {result.global_step}")


if __name__ == "__main__":
    main()
