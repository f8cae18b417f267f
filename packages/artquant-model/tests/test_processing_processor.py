"""MPLUGOwl2Processor: batching with padding, image counting, save / load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from artquant_model.backbones.mplug_owl2.processing_mplug_owl2 import (
    ARTQUANT_SCORE_PROMPT,
    DESCRIBE_PROMPT,
    IMAGE_TOKEN_INDEX,
    MPLUGOwl2ImageProcessor,
    MPLUGOwl2Processor,
    load_tokenizer,
    tokenizer_image_token,
)
from artquant_model.testing import tiny_tokenizer


@pytest.fixture(scope="module")
def processor() -> MPLUGOwl2Processor:
    return MPLUGOwl2Processor(tiny_tokenizer(), MPLUGOwl2ImageProcessor(image_size=28))


def _picture(seed: int, size: tuple[int, int] = (20, 12)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def test_left_padding_batch(processor: MPLUGOwl2Processor) -> None:
    prompts = [ARTQUANT_SCORE_PROMPT, DESCRIBE_PROMPT]
    batch = processor(prompts, images=[_picture(0), _picture(1)])
    rows = [tokenizer_image_token(p, processor.tokenizer) for p in prompts]
    length = max(map(len, rows))
    assert batch["input_ids"].shape == (2, length)
    assert batch["input_ids"].dtype == batch["attention_mask"].dtype == torch.long
    for index, row in enumerate(rows):
        pad = length - len(row)
        assert batch["input_ids"][index, pad:].tolist() == row
        assert batch["input_ids"][index, :pad].tolist() == [0] * pad
        assert batch["attention_mask"][index].tolist() == [0] * pad + [1] * len(row)
    expected = processor.image_processor([_picture(0), _picture(1)])
    assert torch.equal(batch["images"], expected)
    threaded = processor(prompts, images=[_picture(0), _picture(1)], num_threads=2)
    assert torch.equal(threaded["images"], expected)
    assert (batch["input_ids"] == IMAGE_TOKEN_INDEX).sum() == 2


def test_right_padding_and_single_prompt(processor: MPLUGOwl2Processor) -> None:
    batch = processor(["USER: hi", "USER: a longer one here"], padding_side="right")
    assert batch["images"] is None
    assert batch["attention_mask"][0].tolist()[:3] == [1, 1, 1]
    assert batch["attention_mask"][0, -1] == 0
    assert batch["input_ids"][0, -1] == processor.tokenizer.pad_token_id
    single = processor(DESCRIBE_PROMPT, images=_picture(3))
    assert single["input_ids"].shape[0] == 1
    assert single["attention_mask"].all()
    assert single["images"].shape == (1, 3, 28, 28)


def test_errors(processor: MPLUGOwl2Processor) -> None:
    with pytest.raises(ValueError, match="hold 2 <\\|image\\|> marker\\(s\\) but 1 image"):
        processor([DESCRIBE_PROMPT, DESCRIBE_PROMPT], images=[_picture(0)])
    with pytest.raises(ValueError, match=r"hold 1 .* but 0 image"):
        processor(DESCRIBE_PROMPT)
    with pytest.raises(ValueError, match="padding_side must be 'left' or 'right'"):
        processor("hi", padding_side="middle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no prompts"):
        processor([])


def test_save_and_load_roundtrip(processor: MPLUGOwl2Processor, tmp_path: Path) -> None:
    written = processor.save_pretrained(tmp_path)
    assert {p.name for p in written} >= {"tokenizer.json", "preprocessor_config.json"}
    again = MPLUGOwl2Processor.from_pretrained(tmp_path)
    assert again.image_processor.config == processor.image_processor.config
    first = processor([ARTQUANT_SCORE_PROMPT], images=[_picture(5)])
    second = again([ARTQUANT_SCORE_PROMPT], images=[_picture(5)])
    for key in ("input_ids", "attention_mask", "images"):
        assert torch.equal(first[key], second[key])
    explicit = MPLUGOwl2Processor.from_pretrained(tmp_path, tokenizer=processor.tokenizer)
    assert explicit.tokenizer is processor.tokenizer
    by_path = MPLUGOwl2Processor.from_pretrained(tmp_path, tokenizer=tmp_path)
    assert by_path.tokenize(DESCRIBE_PROMPT) == processor.tokenize(DESCRIBE_PROMPT)


def test_real_tokenizer_folder_copies_sentencepiece_model(shared_dir: Path, tmp_path: Path) -> None:
    folder = shared_dir / "tokenizers" / "llama2"
    if not (folder / "tokenizer.model").is_file():
        pytest.skip(f"../shared not found: {folder}")
    processor = MPLUGOwl2Processor(load_tokenizer(folder), MPLUGOwl2ImageProcessor())
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.model").read_bytes() == (folder / "tokenizer.model").read_bytes()
    config = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert config["crop_size"] == {"height": 448, "width": 448}
    again = MPLUGOwl2Processor.from_pretrained(tmp_path)
    assert again.tokenize(ARTQUANT_SCORE_PROMPT)[15:17] == [IMAGE_TOKEN_INDEX, 29871]


def test_batch_decode_skips_image_marker(processor: MPLUGOwl2Processor) -> None:
    ids = processor.tokenize(DESCRIBE_PROMPT)
    text = processor.batch_decode(torch.tensor([ids]))[0]
    assert text == "USER:  Describe this painting. ASSISTANT:"
    assert processor.batch_decode([ids], skip_special_tokens=False)[0].startswith("<s>")


def test_needs_pad_and_bos() -> None:
    tokenizer = tiny_tokenizer()
    tokenizer.pad_token = None
    with pytest.raises(ValueError, match="needs a BOS and a pad token"):
        MPLUGOwl2Processor(tokenizer, MPLUGOwl2ImageProcessor())
