"""Resume after a real kill: a training process on a tiny Qwen2.5-VL is SIGKILLed, resumed
with ``--resume``, and its final weights equal the uninterrupted run's bit for bit.

Same machine, same code, one intra-op thread: exactness is the point (the trainer restores
weights, optimizer, scheduler, RNG states and the data position), so every saved tensor is
compared with ``torch.equal``. LoRA dropout is on, so a wrongly restored RNG state shows.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from _launch import HERE, worker_env
from _train_synthetic import tiny_run_config
from safetensors.torch import load_file

from artquant_train import complete_checkpoints, latest_checkpoint, train
from artquant_train.checkpointing import COMPLETE_MARKER, TRAINABLE_FILE

STEPS = 12
EVERY = 3
OVERRIDES = {"run.max_steps": STEPS, "checkpoint.every": EVERY, "lora.dropout": 0.1}


def _config(base: Path, data: dict[str, Path], run: Path, **overrides: Any) -> Any:
    return tiny_run_config(base, data, run, **OVERRIDES, **overrides)


@pytest.fixture
def run_and_config(
    tiny_qwen_base: Path, small_data: dict[str, Path], tmp_path: Path
) -> tuple[Path, Path]:
    """A fresh run folder and the run's configuration saved as a file for the processes."""
    run = tmp_path / "run"
    path = tmp_path / "run.yaml"
    _config(tiny_qwen_base, small_data, run).save(path)
    return run, path


def _assert_same_weights(run: Path, reference: Path) -> None:
    """final/ and the last checkpoint hold the reference's tensors, bit for bit."""
    for relative in (
        Path("final") / "adapter_model.safetensors",
        Path(f"checkpoint-{STEPS:08d}") / TRAINABLE_FILE,
    ):
        got, want = load_file(str(run / relative)), load_file(str(reference / relative))
        assert set(got) == set(want), relative
        for name, tensor in want.items():
            assert torch.equal(got[name], tensor), f"{relative}: {name}"


@pytest.fixture(scope="module")
def straight(
    tiny_qwen_base: Path, small_data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The uninterrupted run (in this process, one thread, as the subprocesses run)."""
    run = tmp_path_factory.mktemp("straight") / "run"
    torch.set_num_threads(1)
    train(_config(tiny_qwen_base, small_data, run))
    return run


@pytest.mark.slow
def test_sigkill_after_a_checkpoint_then_resume_gives_the_uninterrupted_weights(
    straight: Path, run_and_config: tuple[Path, Path]
) -> None:
    run, config_file = run_and_config
    command = [sys.executable, "-m", "artquant_train.cli", "--config", str(config_file)]
    proc = subprocess.Popen(
        command, env=worker_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 600
    try:
        # SIGKILL as soon as the first checkpoint is complete: 9 more steps lie ahead
        while latest_checkpoint(run) is None and proc.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint within 10 min"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, err[-3000:]
    assert not (run / "final").exists()
    cut = latest_checkpoint(run)
    assert cut is not None
    assert cut.name < f"checkpoint-{STEPS:08d}"

    resumed = subprocess.run(
        [*command, "--resume"], env=worker_env(), capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {cut}" in resumed.stderr
    _assert_same_weights(run, straight)


@pytest.mark.slow
def test_a_checkpoint_cut_by_a_kill_while_written_is_never_resumed(
    straight: Path,
    run_and_config: tuple[Path, Path],
    tiny_qwen_base: Path,
    small_data: dict[str, Path],
) -> None:
    run, config_file = run_and_config
    cut_step = 2 * EVERY
    proc = subprocess.run(
        [sys.executable, str(HERE / "_train_kill_worker.py"), str(config_file), str(cut_step)],
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    # the half-written checkpoint: its temporary folder with the weights, nothing else
    (partial,) = run.glob(f".tmp-checkpoint-{cut_step:08d}-*")
    assert (partial / TRAINABLE_FILE).is_file()
    assert not (partial / COMPLETE_MARKER).exists()
    assert not (run / f"checkpoint-{cut_step:08d}").exists()
    assert [p.name for p in complete_checkpoints(run)] == [f"checkpoint-{EVERY:08d}"]

    torch.set_num_threads(1)
    steps: list[int] = []
    result = train(
        _config(tiny_qwen_base, small_data, run, **{"run.resume": True}),
        on_step_end=lambda info: steps.append(info.step),
    )
    assert steps == list(range(EVERY + 1, STEPS + 1))  # from the complete checkpoint
    assert result.global_step == STEPS
    assert not list(run.glob(".tmp-*"))  # the leftover was cleaned, never read
    _assert_same_weights(run, straight)
