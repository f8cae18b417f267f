"""``artquant-train`` end to end on the tiny model, and its exit status on bad data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _train_synthetic import write_json

from artquant_train.cli import main


def _args(base: Path, data: dict[str, Path], out: Path, *train: str) -> list[str]:
    return [
        "--base", str(base), "--train-data", *train, "--image-root", str(data["images"]),
        "--val-data", str(data["val"]), "--output-dir", str(out), "--max-steps", "2",
        "--batch-size", "4", "--grad-accum", "1", "--lr", "1e-3", "--lora-r", "4", "--seed", "3",
        "--model.gradient_checkpointing", "false", "--logging.progress_bar=false",
        "--data.template.system", "", "--checkpoint.every", "1",
    ]  # fmt: skip


def test_command_trains_and_resumes(
    tiny_base: Path, small_data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    sources = (f"{small_data['score']}:1", f"{small_data['description']}:0.5")
    assert main(_args(tiny_base, small_data, out, *sources)) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("# resolved artquant-train configuration")
    assert "done: 2 steps" in printed
    assert (out / "final" / "adapter_config.json").is_file()
    assert (out / "best" / "adapter_config.json").is_file()
    assert "system: ''" in (out / "train_config.yaml").read_text()
    # resuming a finished run with a larger budget continues from its last checkpoint
    assert main([*_args(tiny_base, small_data, out, *sources), "--max-steps", "3", "--resume"]) == 0
    assert "done: 3 steps" in capsys.readouterr().out


def test_command_reports_bad_data_with_status_1(
    tiny_base: Path, small_data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    row = json.loads(small_data["score"].read_text())[0]
    bad = write_json(tmp_path / "bad.json", [{**row, "image": "missing.png"}])
    assert main(_args(tiny_base, small_data, tmp_path / "out", str(bad))) == 1
    assert "missing.png" in capsys.readouterr().err
