"""Acceptance: two CPU processes (torchrun, gloo) train in step and match one doubled batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _launch import failure, torchrun
from _train_ddp_worker import OVERRIDES, data_paths
from _train_synthetic import tiny_run_config

from artquant_train import StepInfo, train


@pytest.fixture(params=["mplug_owl2", "qwen2_5_vl"])
def base(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each backbone family's tiny base (the Qwen one with the real Qwen2 tokenizer)."""
    if request.param == "mplug_owl2":
        return Path(request.getfixturevalue("tiny_base"))
    from _qwen_synthetic import save_tiny_qwen

    return save_tiny_qwen(tmp_path_factory.mktemp("qwen_ddp") / "base", request.param)


@pytest.mark.slow
def test_two_processes_stay_in_step_and_equal_one_process_with_the_doubled_batch(
    base: Path, small_data: dict[str, Path], tmp_path: Path
) -> None:
    tiny_base = base
    record = tmp_path / "record"
    record.mkdir()
    root = small_data["score"].parent
    proc = torchrun([tiny_base, root, tmp_path / "ddp", record])
    assert proc.returncode == 0, failure(proc)

    for step in range(1, 5):
        rank0 = torch.load(record / f"rank0_step{step}.pt", weights_only=True)
        rank1 = torch.load(record / f"rank1_step{step}.pt", weights_only=True)
        assert set(rank0) == set(rank1)
        for name in rank0:
            assert torch.equal(rank0[name], rank1[name]), f"step {step}: {name} differs"

    single: dict[int, dict[str, torch.Tensor]] = {}

    def keep(info: StepInfo) -> None:
        assert info.world_size == 1
        state = {n: p.detach().clone() for n, p in info.model.named_parameters() if p.requires_grad}
        state["__loss__"] = torch.tensor(info.loss, dtype=torch.float64)
        single[info.step] = state

    config = tiny_run_config(
        tiny_base, data_paths(root), tmp_path / "single", **OVERRIDES, **{"run.batch_size": 4}
    )
    train(config, on_step_end=keep)
    for step in range(1, 5):
        ddp = torch.load(record / f"rank0_step{step}.pt", weights_only=True)
        assert float(ddp["__loss__"]) == pytest.approx(float(single[step]["__loss__"]), rel=1e-5)
        for name, tensor in single[step].items():
            torch.testing.assert_close(
                ddp[name],
                tensor,
                rtol=1e-4,
                atol=1e-6,
                msg=lambda m, n=name, s=step: f"step {s} {n}: {m}",
            )
