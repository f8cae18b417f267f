"""FSDP (torch FSDP2 through accelerate) on two CPU processes over gloo, on a tiny Qwen2.5-VL.

accelerate runs FSDP only on accelerators; on CPU processes the trainer gives the run the FSDP
state itself (``loop._sharding_on_cpu_processes``), so ``accelerator.prepare`` shards the model
with ``fully_shard`` over a CPU mesh: the same code path as an FSDP launch on GPUs. The launch
is what ``accelerate launch --config_file accelerate_fsdp.yaml`` sets in the environment.

Tolerance against one process with the doubled batch: FSDP reduce-scatters the gradients, so
they are summed in another order than one process sums its rows (float addition is not
associative; about one ulp per step). Adam turns such differences into weight differences of
the same relative size, so after 4 steps weights agree to rtol 1e-4 / atol 1e-6 and losses to
1e-5 relative, the bounds the DDP test uses (same Adam eps, same reasons). Exactness is required
where it is the point: both ranks gather the same tensors, and resuming an FSDP checkpoint in
the same two processes repeats the uninterrupted run bit for bit.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from _launch import failure, torchrun
from _train_ddp_worker import OVERRIDES, data_paths
from _train_synthetic import tiny_run_config
from safetensors.torch import load_file

from artquant_train import StepInfo, complete_checkpoints, train
from artquant_train.validation import read_validation_items

#: What `accelerate launch` with the shipped accelerate_fsdp.yaml puts in the environment
#: (FSDP2, each of the model's no-split modules a shard unit, sharded checkpoints).
FSDP_LAUNCH = {
    "ACCELERATE_USE_FSDP": "true",
    "FSDP_VERSION": "2",
    "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP",
    "FSDP_STATE_DICT_TYPE": "SHARDED_STATE_DICT",
    "FSDP_RESHARD_AFTER_FORWARD": "true",
}
STEPS = 4
#: LoRA (the Qwen default: LoRA on the LM's linears, the merger trained in full as peft
#: modules_to_save) and full fine-tuning of the language model.
MODES = {
    "lora": {},
    "full": {"lora.enabled": False, "freeze.train_llm": True, "freeze.train_abstractor": False},
}


def _records(folder: Path, rank: int) -> dict[int, dict[str, torch.Tensor]]:
    return {
        step: torch.load(folder / f"rank{rank}_step{step}.pt", weights_only=True)
        for step in range(1, STEPS + 1)
        if (folder / f"rank{rank}_step{step}.pt").is_file()
    }


def _release_tensors(final: Path) -> dict[str, torch.Tensor]:
    name = "adapter_model.safetensors" if (final / "adapter_config.json").is_file() else None
    return load_file(str(final / (name or "model.safetensors")))


@pytest.mark.slow
@pytest.mark.parametrize("mode", sorted(MODES))
def test_fsdp_on_two_cpu_processes_equals_one_process_resumes_and_releases(
    mode: str, tiny_qwen_base: Path, small_data: dict[str, Path], tmp_path: Path
) -> None:
    root = small_data["score"].parent
    overrides = {**MODES[mode], "checkpoint.every": 1, "checkpoint.keep_last": 2}
    record = tmp_path / "record"
    record.mkdir()
    run = tmp_path / "fsdp"
    proc = torchrun([tiny_qwen_base, root, run, record, json.dumps(overrides)], env=FSDP_LAUNCH)
    assert proc.returncode == 0, failure(proc)
    fsdp = _records(record, 0)
    assert sorted(fsdp) == list(range(1, STEPS + 1))
    for step, tensors in _records(record, 1).items():
        for name, tensor in tensors.items():
            assert torch.equal(tensor, fsdp[step][name]), f"step {step}: {name} differs by rank"
    # sharded for real: every trained tensor was a DTensor, the decoder layers shard units
    assert int(fsdp[1]["__sharded__"]) == len(fsdp[1]) - 3
    assert int(fsdp[1]["__units__"]) >= 3  # 2 decoder layers + the root (+ vision blocks)

    # checkpoints: accelerate's sharded state inside the atomic folder, the oldest pruned
    kept = complete_checkpoints(run)
    assert [p.name for p in kept] == ["checkpoint-00000003", "checkpoint-00000004"]
    assert (kept[0] / "pytorch_model_fsdp_0").is_dir()

    single: dict[int, dict[str, torch.Tensor]] = {}

    def keep(info: StepInfo) -> None:
        state = {n: p.detach().clone() for n, p in info.model.named_parameters() if p.requires_grad}
        state["__loss__"] = torch.tensor(info.loss, dtype=torch.float64)
        single[info.step] = state

    config = tiny_run_config(
        tiny_qwen_base,
        data_paths(root),
        tmp_path / "single",
        **{**OVERRIDES, **overrides, "checkpoint.every": 0, "run.batch_size": 4},
    )
    train(config, on_step_end=keep)
    for step in range(1, STEPS + 1):
        got = fsdp[step]
        assert float(got["__loss__"]) == pytest.approx(float(single[step]["__loss__"]), rel=1e-5)
        assert set(got) - {"__sharded__", "__units__"} == set(single[step])
        for name, tensor in single[step].items():
            torch.testing.assert_close(
                got[name], tensor, rtol=1e-4, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}"
            )

    # final/ holds the gathered full tensors (not a process's shard) ...
    release = _release_tensors(run / "final")
    reference = _release_tensors(tmp_path / "single" / "final")
    assert set(release) == set(reference)
    for name, tensor in reference.items():
        assert release[name].shape == tensor.shape, name
        torch.testing.assert_close(release[name], tensor, rtol=1e-4, atol=1e-6)

    # ... and scores as the one-process release does (weights within 1e-4 relative move the
    # tiny model's 1-10 scores by far less than 1e-4)
    sdk = pytest.importorskip("artquant_sdk")
    images = [
        str(item.image) for item in read_validation_items(small_data["val"], small_data["images"])
    ]
    scores = {
        name: np.array(
            [
                r.score
                for r in sdk.ArtQuant.from_pretrained(folder, device="cpu", dtype="float32").score(
                    images, batch_size=4
                )
            ]
        )
        for name, folder in (("fsdp", run / "final"), ("single", tmp_path / "single" / "final"))
    }
    np.testing.assert_allclose(scores["fsdp"], scores["single"], rtol=0, atol=1e-4)

    if mode != "lora":
        return
    # resume from an FSDP checkpoint (sharded model and optimizer state) in two processes:
    # the last step again, bit for bit, and the same final/
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(kept[0], resumed / kept[0].name)
    shutil.copy(run / "metrics.jsonl", resumed)
    again = tmp_path / "record_again"
    again.mkdir()
    proc = torchrun(
        [tiny_qwen_base, root, resumed, again, json.dumps({**overrides, "run.resume": True})],
        env=FSDP_LAUNCH,
    )
    assert proc.returncode == 0, failure(proc)
    repeated = _records(again, 0)
    assert sorted(repeated) == [STEPS]
    for name, tensor in fsdp[STEPS].items():
        assert torch.equal(repeated[STEPS][name], tensor), name
    final = _release_tensors(resumed / "final")
    for name, tensor in release.items():
        assert torch.equal(final[name], tensor), name
