"""The real Qwen3.5 tokenizer (built offline by ``tools/qwen3_5_tokenizer/build.py``; skips
with the reason where it is not built) in the scoring path: level ids, the tiny model's
vocabulary, thinking off. Scores at batch 1/2/5 and greedy generation against plain
transformers on the same tiny model: test_backbone_hf_vlm.py (``qwen3_5+real-tokenizer``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from artquant_model.backbones import load_backbone
from artquant_model.backbones.hf_vlm.backbone import HFVisionLanguageBackbone
from artquant_model.levels import first_token_ids
from artquant_model.spec import ARTQUANT_SPEC
from artquant_model.testing import QWEN3_5_VISION_TOKENS, QWEN3_5_VOCAB_SIZE

#: first token of " excellent", " good", " fair", " poor", " bad" after the stem (README)
LEVEL_IDS = [8800, 1603, 6415, 7604, 3743]
#: <think>, "\n\n", </think>, "\n\n": the empty thinking block the template writes when
#: enable_thinking is False (ids checked by tools/qwen3_5_tokenizer/verify.py)
EMPTY_THINKING = [248068, 271, 248069, 271]


@pytest.fixture(scope="module")
def backbone(tiny_qwen3_5_dir: Path) -> HFVisionLanguageBackbone:
    loaded = load_backbone(tiny_qwen3_5_dir)
    assert isinstance(loaded, HFVisionLanguageBackbone)
    return loaded


def test_level_words_are_distinct_single_tokens_after_the_stem(qwen3_5_tokenizer):
    tokenizer = qwen3_5_tokenizer
    stem = ARTQUANT_SPEC.question().stem
    assert first_token_ids(tokenizer, ARTQUANT_SPEC.words, stem) == LEVEL_IDS
    for word, level_id in zip(ARTQUANT_SPEC.words, LEVEL_IDS, strict=True):
        assert tokenizer(" " + word, add_special_tokens=False).input_ids == [level_id]
    # Qwen3.5 ids differ from Qwen2's (9073, 1661, ...): the stand-in tests do not cover these
    assert LEVEL_IDS != [9073, 1661, 6624, 7852, 3873]


def test_tiny_model_has_the_real_vocabulary(tiny_qwen3_5_dir: Path, backbone):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_qwen3_5_dir)
    assert config.model_type == "qwen3_5"
    assert config.text_config.vocab_size == QWEN3_5_VOCAB_SIZE
    assert {k: getattr(config, k) for k in QWEN3_5_VISION_TOKENS} == QWEN3_5_VISION_TOKENS
    total = sum(p.numel() for p in backbone.model.parameters())
    embedding = backbone.model.get_input_embeddings().weight
    assert embedding.shape[0] == QWEN3_5_VOCAB_SIZE
    assert total < 10_000_000
    assert embedding.numel() > 0.9 * total


def test_scoring_prompt_turns_thinking_off(qwen3_5_tokenizer):
    tokenizer = qwen3_5_tokenizer
    question = ARTQUANT_SPEC.question()
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question.prompt}]}
    ]
    text = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False, enable_thinking=False
    )
    ids = tokenizer(text + question.stem, add_special_tokens=False).input_ids
    stem = tokenizer(question.stem, add_special_tokens=False).input_ids
    assert ids[-len(stem) - 4 : -len(stem)] == EMPTY_THINKING
    # Qwen3.5's template writes no default system prompt
    assert ids[:3] == [248045, 846, 198]  # <|im_start|> user \n
