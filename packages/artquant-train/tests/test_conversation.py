"""Rendering and tokenisation: templates, explicit answer ranges, the level token, errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from artquant_model import IMAGE_TOKEN_INDEX, load_tokenizer, tokenizer_image_token
from artquant_model.testing import tiny_tokenizer
from artquant_train import (
    AnswerFormatError,
    LevelsConfig,
    LevelTokenError,
    SampleError,
    TemplateConfig,
    encode_conversation,
    level_token_ids,
    render_rounds,
)

SHARED = Path(
    os.environ.get("ARTQUANT_SHARED", Path(__file__).resolve().parents[3] / ".." / "shared")
)
SCORE = [
    {"from": "human", "value": "Rate the quality of this painting.\n<|image|>"},
    {"from": "gpt", "value": "The quality of the painting is good."},
]
TRAINING_TEXT = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the user's questions. USER: <|image|>\nRate the "
    "quality of this painting. ASSISTANT: The quality of the painting is good.</s>"
)


@pytest.fixture(scope="module")
def llama():
    path = SHARED / "tokenizers" / "llama2" / "tokenizer.model"
    if not path.is_file():
        pytest.skip(f"../shared not found: {path} (set ARTQUANT_SHARED)")
    return load_tokenizer(path)


def test_training_template_is_vicuna_v1_with_the_image_moved_first() -> None:
    ((prompt, answer),) = render_rounds(SCORE, TemplateConfig())
    assert prompt + " " + answer + "</s>" == TRAINING_TEXT
    inference_like = TemplateConfig(name="mplug_owl2", system="", image_first=False)
    ((prompt, _),) = render_rounds(SCORE, inference_like)
    assert prompt == "USER: Rate the quality of this painting.\n<|image|> ASSISTANT:"


def test_llama_ids_equal_the_original_whole_string_tokenisation(llama) -> None:
    """The original tokenises the whole rendered string; 59 ids, the answer supervised."""
    prefix_ids, level_ids = level_token_ids(llama, LevelsConfig())
    assert level_ids == (15129, 1781, 6534, 6460, 4319)
    assert prefix_ids == (450, 11029, 310, 278, 20413, 338)
    encoded = encode_conversation(
        SCORE, llama, TemplateConfig(), score_levels=(prefix_ids, level_ids)
    )
    reference = tokenizer_image_token(TRAINING_TEXT, llama)
    assert list(encoded.input_ids) == reference
    assert len(encoded.input_ids) == 59
    supervised = [t for t in encoded.labels if t != -100]
    assert supervised == [450, 11029, 310, 278, 20413, 338, 1781, 29889, 2]  # "... is good.</s>"
    ((start, end),) = encoded.answer_ranges
    assert (start, end) == (50, 59)
    assert encoded.level_index == 56
    assert encoded.input_ids[encoded.level_index] == 1781
    assert encoded.level_rank == 6
    assert encoded.input_ids.count(IMAGE_TOKEN_INDEX) == 1


def test_description_samples_have_no_level_and_multi_round_answers_are_all_supervised() -> None:
    tok = tiny_tokenizer()
    turns = [
        {"from": "human", "value": "Describe this painting.\n<|image|>"},
        {"from": "gpt", "value": "The light is good."},
        {"from": "human", "value": "And the colour?"},
        {"from": "gpt", "value": "The colour is fair."},
    ]
    encoded = encode_conversation(turns, tok, TemplateConfig(system=""))
    assert encoded.level_index is None
    assert encoded.level_rank == -1
    assert len(encoded.answer_ranges) == 2
    for start, end in encoded.answer_ranges:
        assert list(encoded.labels[start:end]) == list(encoded.input_ids[start:end])
        assert encoded.input_ids[end - 1] == tok.eos_token_id
    supervised = sum(1 for t in encoded.labels if t != -100)
    assert supervised == sum(e - s for s, e in encoded.answer_ranges)
    assert encoded.input_ids.count(tok.bos_token_id) == 1  # BOS only in the first round


def test_sample_without_image_token_gets_it_in_front() -> None:
    turns = [{"from": "human", "value": "Rate it."}, {"from": "gpt", "value": "ok"}]
    ((prompt, _),) = render_rounds(turns, TemplateConfig(system=""))
    assert prompt == "USER: <|image|>\nRate it. ASSISTANT:"


def test_score_answer_errors_name_the_problem() -> None:
    tok = tiny_tokenizer()
    levels = level_token_ids(tok, LevelsConfig())
    no_prefix = [SCORE[0], {"from": "gpt", "value": "It is good."}]
    with pytest.raises(AnswerFormatError, match="does not contain the level prefix"):
        encode_conversation(
            no_prefix,
            tok,
            TemplateConfig(),
            score_levels=levels,
            level_prefix="The quality of the painting is",
        )
    wrong_word = [SCORE[0], {"from": "gpt", "value": "The quality of the painting is art."}]
    with pytest.raises(
        AnswerFormatError,
        match=r"is '▁art', not a level word; allowed tokens: \['▁excellent', '▁good', '▁fair'",
    ):
        encode_conversation(wrong_word, tok, TemplateConfig(), score_levels=levels)


def test_level_word_that_is_not_one_token_is_rejected() -> None:
    spec = LevelsConfig(words=("excellent", "mediocre"), values=(1.0, 0.0))
    with pytest.raises(LevelTokenError, match="'mediocre' must be a single token"):
        level_token_ids(tiny_tokenizer(), spec)


def test_bad_turns_and_truncation_errors() -> None:
    tok = tiny_tokenizer()
    with pytest.raises(SampleError, match="user/assistant pairs"):
        render_rounds(SCORE[:1], TemplateConfig())
    with pytest.raises(SampleError, match="must be user then assistant"):
        render_rounds([SCORE[1], SCORE[0]], TemplateConfig())
    two_images = [{"from": "human", "value": "<|image|> and <|image|>"}, SCORE[1]]
    with pytest.raises(SampleError, match="this one has 2"):
        render_rounds(two_images, TemplateConfig())
    levels = level_token_ids(tok, LevelsConfig())
    with pytest.raises(SampleError, match="cut the level token"):
        encode_conversation(
            SCORE, tok, TemplateConfig(system=""), score_levels=levels, max_length=12
        )
    long_answer = [SCORE[0], {"from": "gpt", "value": "good " * 40}]
    encoded = encode_conversation(long_answer, tok, TemplateConfig(system=""), max_length=30)
    assert len(encoded.input_ids) == 30
    assert encoded.answer_ranges[0][1] == 30
