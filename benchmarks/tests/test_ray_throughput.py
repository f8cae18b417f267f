"""``ray_throughput.py``: its local half end to end on the tiny size, and its argument checks.

The Ray half starts a Ray instance (tens of seconds on a shared 2-core machine); the SDK's own
tests run the same ``score_dataset`` on a local Ray instance, so it is not repeated here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("artquant_sdk")

import ray_throughput


@pytest.mark.slow
def test_local_engine_tiny(
    tmp_path: Path, shared_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--size", "tiny", "--num-images", "4", "--batch-size", "2", "--engines", "local",
            "--tokenizer", str(shared_dir / "tokenizers" / "llama2"),
            "--image-dir", str(tmp_path / "pics"),
            "--log", str(tmp_path / "log.jsonl")]  # fmt: skip
    assert ray_throughput.main(argv) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    (machine,) = [r for r in lines if r["kind"] == "machine"]
    assert len(machine["load_avg"]) == 3
    (run,) = [r for r in lines if r["kind"] == "engine"]
    assert run["engine"] == "local"
    assert run["rows"] == 4
    assert run["images_per_s"] == pytest.approx(4 / run["wall_s"])
    assert 0 < run["startup_s"] < run["wall_s"]


def test_bad_arguments_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        ray_throughput.main(["--tokenizer", str(tmp_path)])
    assert "no tokenizer.model" in capsys.readouterr().err
    (tmp_path / "tokenizer.model").write_bytes(b"")
    with pytest.raises(SystemExit):
        ray_throughput.main(["--tokenizer", str(tmp_path), "--engines", "spark"])
    assert "--engines takes local and ray" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the generic backbone needs a Qwen2 tokenizer.json
        ray_throughput.main(["--backbone", "qwen2_5_vl", "--tokenizer", str(tmp_path)])
    assert "no tokenizer.json" in capsys.readouterr().err
