"""One process of the two-process test (started by torchrun from test_distributed.py).

Arguments: BASE DATA_ROOT OUTPUT_DIR RECORD_DIR. Trains 4 steps with batch 2 per process and
saves this rank's trainable tensors after every step to RECORD_DIR/rank<r>_step<s>.pt.
"""

from __future__ import annotations

import sys
from pathlib import Path

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


def main() -> None:
    base, root, out, record = (Path(a) for a in sys.argv[1:5])
    torch.set_num_threads(1)

    def save(info: StepInfo) -> None:
        state = {n: p.detach().clone() for n, p in info.model.named_parameters() if p.requires_grad}
        state["__loss__"] = torch.tensor(info.loss, dtype=torch.float64)
        torch.save(state, record / f"rank{info.rank}_step{info.step}.pt")

    config = tiny_run_config(base, data_paths(root), out, **OVERRIDES, **{"run.batch_size": 2})
    result = train(config, on_step_end=save)
    if result.global_step != 4:
        raise SystemExit(f"expected 4 steps, got {result.global_step}")


if __name__ == "__main__":
    main()
