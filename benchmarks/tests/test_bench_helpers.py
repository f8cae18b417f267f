"""The shared benchmark helpers: sizes, prompt ids, test pictures, memory probes, output."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from _bench import (
    ARTQUANT_LEVEL_IDS,
    ARTQUANT_PROMPT_IDS,
    IMAGE_TOKEN_INDEX,
    SIZES,
    Recorder,
    current_rss_bytes,
    machine_info,
    make_images,
    peak_rss_bytes,
    reset_peak_rss,
)
from flops import ModelDims
from PIL import Image


def test_prompt_and_level_ids_are_the_real_tokenizers(shared_dir: Path) -> None:
    """The held ids equal what the original code produced with the LLaMA-2 tokenizer."""
    reference = json.loads(
        (shared_dir / "fixtures/mplug_owl2_tiny_vocab32k/tokenizer_reference.json").read_text()
    )
    assert list(ARTQUANT_PROMPT_IDS) == reference["prompts"]["artquant_score"]["input_ids"]
    assert list(ARTQUANT_LEVEL_IDS) == reference["level_ids"]  # excellent .. bad


def test_sizes_have_the_real_token_counts() -> None:
    """small and full both splice 27 text + 65 image tokens; all sizes take 448 px pictures."""
    for name, config in SIZES.items():
        dims = ModelDims.from_config_dict(config)
        assert dims.image_size == 448, name
        assert dims.num_patches == 1024, name
    assert ARTQUANT_PROMPT_IDS.count(IMAGE_TOKEN_INDEX) == 1
    assert ModelDims.from_config_dict(SIZES["small"]).spliced_length == 92
    assert ModelDims.from_config_dict(SIZES["full"]).spliced_length == 92


def test_sizes_build_valid_configs() -> None:
    config_class = pytest.importorskip("artquant_model").MPLUGOwl2Config
    for name, config in SIZES.items():
        built = config_class(**json.loads(json.dumps(config)))
        assert built.hidden_size == config["hidden_size"], name


def test_make_images_varies_size_format_and_mode(tmp_path: Path) -> None:
    paths = make_images(tmp_path, 24, seed=3)
    assert len(paths) == 24
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)
    suffixes = {p.suffix for p in paths}
    assert suffixes == {".jpg", ".png"}
    sizes, modes = set(), set()
    for path in paths:
        with Image.open(path) as image:
            sizes.add(image.size)
            modes.add(image.mode)
            assert 512 <= max(image.size) <= 2048
            assert 0.49 <= image.size[0] / image.size[1] <= 2.01
    assert len(sizes) == 24
    assert "RGB" in modes
    # the same seed gives the same files, written serially or in parallel
    again = make_images(tmp_path / "again", 24, seed=3, workers=1)
    parallel = make_images(tmp_path / "parallel", 24, seed=3, workers=2)
    assert [p.name for p in again] == [p.name for p in paths] == [p.name for p in parallel]
    assert again[5].read_bytes() == paths[5].read_bytes() == parallel[5].read_bytes()
    assert make_images(tmp_path / "other", 1, seed=4)[0].name != paths[0].name


def test_make_images_rejects_a_non_positive_count(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="count must be positive, got 0"):
        make_images(tmp_path, 0)


def test_memory_probes() -> None:
    assert current_rss_bytes() > 10 * 2**20
    before = peak_rss_bytes()
    block = bytearray(64 * 2**20)
    block[::4096] = b"\x01" * len(block[::4096])  # touch every page
    assert peak_rss_bytes() >= before
    assert peak_rss_bytes() >= current_rss_bytes() - 4096
    del block
    if reset_peak_rss():  # Linux: the peak drops back to about the current size
        assert peak_rss_bytes() <= current_rss_bytes() + 16 * 2**20


def test_machine_info_names_date_cpu_and_versions() -> None:
    info = machine_info()
    assert info["date_utc"].endswith("Z")
    assert info["cpu_count"] >= 1
    assert "torch_version" in info


def test_recorder_prints_json_lines_and_a_table(tmp_path: Path) -> None:
    stream = io.StringIO()
    log = tmp_path / "out" / "log.jsonl"
    recorder = Recorder({"script": "t"}, stream=stream, log_path=log)
    recorder.emit(kind="a", images_per_s=12.3456, batch_size=1)
    recorder.emit(kind="b", images_per_s=0.00012, batch_size=8)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines == [
        {"script": "t", "kind": "a", "images_per_s": 12.3456, "batch_size": 1},
        {"script": "t", "kind": "b", "images_per_s": 0.00012, "batch_size": 8},
    ]
    assert [json.loads(x) for x in log.read_text().splitlines()] == lines
    table = recorder.table(["kind", "batch_size", "images_per_s", "missing"]).splitlines()
    assert table[0].split() == ["kind", "batch_size", "images_per_s", "missing"]
    assert table[2].split() == ["a", "1", "12.346", "-"]
    assert table[3].split() == ["b", "8", "0.00012", "-"]
