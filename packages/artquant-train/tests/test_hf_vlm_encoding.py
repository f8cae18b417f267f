"""Qwen-VL conversations, by hand: the rendered template, the supervised tokens and the level
position, token by token, with the real Qwen2 tokenizer; and the packed loss."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from _qwen_synthetic import qwen_tokenizer

from artquant_train import LevelsConfig, level_token_ids
from artquant_train.backbones.hf_vlm import collate_chat, encode_chat, end_of_turn
from artquant_train.data import level_positions_from_rank
from artquant_train.errors import AnswerFormatError
from artquant_train.losses import (
    IGNORE_INDEX,
    loss_sums,
    packed_loss_sums,
    supervised_positions,
)

IMAGE_PAD = 151655
IM_END = 151645
SCORE = [
    {"from": "human", "value": "How would you rate the quality of this painting?\n<|image|>"},
    {"from": "gpt", "value": "The quality of the painting is good."},
]
PREFIX = "The quality of the painting is"


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return qwen_tokenizer()


def _encode(tokenizer: Any, conversation: list[dict[str, str]], score: bool = True) -> Any:
    levels = level_token_ids(tokenizer, LevelsConfig()) if score else None
    return encode_chat(
        conversation,
        tokenizer,
        score_levels=levels,
        level_prefix=PREFIX,
        max_length=2048,
        image_token_id=IMAGE_PAD,
    )


def test_score_sample_renders_the_template_and_supervises_the_answer_only(tokenizer: Any) -> None:
    encoded = _encode(tokenizer, SCORE)
    # The Qwen2.5-VL template's rendering, written out: its default system turn, the picture
    # then the question, the generation prompt, the answer and the end of the turn.
    assert tokenizer.decode(list(encoded.input_ids)) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>"
        "How would you rate the quality of this painting?<|im_end|>\n"
        "<|im_start|>assistant\nThe quality of the painting is good.<|im_end|>\n"
    )
    tokens = tokenizer.convert_ids_to_tokens(list(encoded.input_ids))
    supervised = [t for t, label in zip(tokens, encoded.labels, strict=True) if label != -100]
    assert supervised == [
        "The", "Ġquality", "Ġof", "Ġthe", "Ġpainting", "Ġis", "Ġgood", ".", "<|im_end|>"
    ]  # fmt: skip
    # the ids themselves: the answer's, then <|im_end|>; the final newline is not supervised
    assert [i for i in encoded.labels if i != -100] == [
        785, 4271, 315, 279, 18824, 374, 1661, 13, IM_END
    ]  # fmt: skip
    assert encoded.labels[-1] == IGNORE_INDEX
    assert tokens[-1] == "Ċ"
    start, end = encoded.answer_ranges[0]
    assert all(label == IGNORE_INDEX for label in encoded.labels[:start])
    assert list(encoded.labels[start:end]) == list(encoded.input_ids[start:end])
    # the level token: " good" (1661), the 7th supervised token (rank 6)
    assert tokens[encoded.level_index] == "Ġgood"
    assert encoded.input_ids[encoded.level_index] == 1661
    assert encoded.level_rank == 6
    assert encoded.input_ids.count(IMAGE_PAD) == 1


def test_collation_expands_the_picture_and_keeps_the_level_position(tokenizer: Any) -> None:
    from artquant_model.backbones.hf_vlm.processing_hf_vlm import VisionBatch

    score = _encode(tokenizer, SCORE)
    text = _encode(
        tokenizer,
        [
            {"from": "human", "value": "<|image|>\nDescribe this painting."},
            {"from": "gpt", "value": "Warm light."},
        ],
        score=False,
    )
    assert text.level_index is None
    pictures = [  # 4 x 6 and 2 x 2 patch grids: 6 and 1 tokens after the 2 x 2 merge
        VisionBatch(torch.zeros(24, 8), torch.tensor([[1, 4, 6]])),
        VisionBatch(torch.zeros(4, 8), torch.tensor([[1, 2, 2]])),
    ]
    rows = [
        {
            "index": i,
            "input_ids": e.input_ids,
            "labels": e.labels,
            "level_rank": e.level_rank if e.level_index is not None else -1,
            "level_probs": (0.2,) * 5,
            "image": picture,
        }
        for i, (e, picture) in enumerate(zip([score, text], pictures, strict=True))
    ]
    batch = collate_chat(rows, pad_token_id=151643, image_token_id=IMAGE_PAD, merge_size=2)
    assert batch["input_ids"].shape[1] == len(score.input_ids) + 5  # the longer row, 6 tokens
    assert batch["mm_token_type_ids"].sum(1).tolist() == [6, 1]
    assert batch["attention_mask"].sum(1).tolist() == [
        len(score.input_ids) + 5,
        len(text.input_ids),
    ]
    assert batch["pixel_values"].shape == (28, 8)
    positions = level_positions_from_rank(batch["labels"], batch["level_rank"])
    assert positions.tolist() == [score.level_index + 5, -1]
    assert int(batch["input_ids"][0, positions[0]]) == 1661
    assert int(batch["labels"][0, positions[0]]) == 1661


@pytest.mark.parametrize("kl", ["open", "closed", "none"])
def test_packed_loss_equals_the_full_logits_loss(tokenizer: Any, kl: str) -> None:
    """The LM head at the supervised positions only gives the sums of the full logits."""
    labels = torch.tensor(
        [
            [-100, -100, 5, 7, 3, 9, -100],
            [-100, 4, 4, 8, -100, -100, -100],
            [-100, -100, -100, 7, 1, 2, 6],
        ]
    )
    level_positions = torch.tensor([4, -1, 5])
    level_ids = torch.tensor([3, 2, 11])
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.0, 0.0, 0.0], [0.1, 0.1, 0.8]])
    logits = torch.randn(3, 7, 13, generator=torch.Generator().manual_seed(0))
    full = loss_sums(logits, labels, level_positions, probs, level_ids, kl=kl)  # type: ignore[arg-type]
    picked = supervised_positions(labels, level_positions, level_ids, kl=kl)  # type: ignore[arg-type]
    # every logit predicting a supervised label, nothing else
    assert list(zip(picked.rows.tolist(), picked.cols.tolist(), strict=True)) == [
        (0, 1), (0, 2), (0, 3), (0, 4), (1, 0), (1, 1), (1, 2), (2, 2), (2, 3), (2, 4), (2, 5)
    ]  # fmt: skip
    assert picked.is_level.nonzero().flatten().tolist() == [2, 9]
    packed = packed_loss_sums(logits[picked.rows, picked.cols], picked, probs, level_ids, kl=kl)  # type: ignore[arg-type]
    for name in ("description_ce_sum", "score_ce_sum", "kl_sum"):
        torch.testing.assert_close(getattr(packed, name), getattr(full, name), rtol=1e-6, atol=1e-6)
    for name in ("description_tokens", "score_tokens", "score_rows"):
        assert int(getattr(packed, name)) == int(getattr(full, name)), name


def test_a_thinking_template_keeps_its_think_block_out_of_the_labels(tokenizer: Any) -> None:
    """A Qwen3-style template writes an empty think block when thinking is off: prompt only."""
    thinking = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    thinking.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n"
        "{% if m.content is string %}{{ m.content }}{% else %}{% for c in m.content %}"
        "{% if c.type == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
        "{% else %}{{ c.text }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n"
        "{% if enable_thinking is defined and enable_thinking is false %}"
        "<think>\n\n</think>\n\n{% endif %}{% endif %}"
    )
    assert end_of_turn(thinking) == ("<|im_end|>", "\n")
    encoded = _encode(thinking, SCORE)
    text = thinking.decode(list(encoded.input_ids))
    assert "<|im_start|>assistant\n<think>\n\n</think>\n\nThe quality" in text
    supervised = thinking.decode([i for i in encoded.labels if i != -100])
    assert supervised == "The quality of the painting is good.<|im_end|>"
    assert encoded.input_ids[encoded.level_index] == 1661


def test_a_score_answer_without_the_prefix_or_level_word_is_refused(tokenizer: Any) -> None:
    bad = [SCORE[0], {"from": "gpt", "value": "It is good."}]
    with pytest.raises(AnswerFormatError, match="does not contain the level prefix"):
        _encode(tokenizer, bad)
    odd = [SCORE[0], {"from": "gpt", "value": "The quality of the painting is lovely."}]
    with pytest.raises(AnswerFormatError, match="not a level word"):
        _encode(tokenizer, odd)
