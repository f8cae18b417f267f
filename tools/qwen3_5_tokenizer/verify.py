#!/usr/bin/env python3
"""Check a folder written by ``build.py`` against what is published about Qwen3.5's tokenizer.

Usage: ``uv run python tools/qwen3_5_tokenizer/verify.py [FOLDER]`` (default: the cache folder
``build.py`` writes). Prints one line per check; exit status 1 when any fails. Runs offline.

Checks (sources in README.md):

1. llama.cpp's pre-tokenizer fingerprint: sha256 of ``str(encode(CHK_TXT))`` is the hash
   llama.cpp registers as ``qwen35`` (ref Qwen/Qwen3.5-9B-Instruct).
2. Published prompt ids of Qwen3.5 (a chat turn with an empty thinking block; ``user\\n``).
3. transformers' ``Qwen3_5Config`` defaults: the vision token ids name the vision tokens and
   the embedding (248,320 rows) covers the tokenizer.
4. ``AutoTokenizer`` of the installed transformers loads ``Qwen3_5Tokenizer`` with eos/pad as
   written and encodes a varied corpus exactly as the raw ``tokenizers`` file does.
5. Round trips: decode(encode(text)) == NFC(text) on Unicode, digits, whitespace, marks.
6. Combining marks stay inside words (the one difference from Qwen2's split pattern).
7. The chat template renders an image question with thinking on and off, and an answered
   turn, as Qwen3.5's published template does.
8. ``Qwen2VLImageProcessorPil`` from the folder: patch 16, merge 2; a 224 px picture is
   raised to 256 px (grid 16x16, 64 tokens) by the 65,536-pixel floor.
9. The five level words after the stem are single, distinct tokens.
"""

from __future__ import annotations

import hashlib
import os
import sys
import unicodedata
from pathlib import Path
from typing import Any

DEFAULT_FOLDER = Path.home() / ".cache" / "artquant" / "tokenizers" / "qwen3_5"

# llama.cpp convert_hf_to_gguf_update.py: the text whose token ids fingerprint a pre-tokenizer
CHK_TXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n"
    "\U0001f680 (normal) \U0001f636\u200d\U0001f32b\ufe0f (multiple emojis concatenated) "
    "\u2705 \U0001f999\U0001f999 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 "
    "\u1780\u17b6\u1793\u17cb\u178f\u17c2\u1796\u17b7\u179f\u17c1\u179f\u17a2\u17b6\u1785"
    "\U0001f601 ?\u6211\u60f3\u5728apple\u5de5\u4f5c1314151\u5929\uff5e ------======= "
    "\u043d\u0435\u0449\u043e \u043d\u0430 \u0411\u044a\u043b\u0433\u0430\u0440\u0441\u043a\u0438 "
    "''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? "
    "'M not sure I'll make it, 'D you like some tea? We'Ve a'lL"
)
LLAMACPP_QWEN35_CHKHSH = "d30d75d9059f1aa2c19359de71047b3ae408c70875e8a3ccf8c5fba56c9d8af4"

# (text, ids) published for Qwen3.5 checkpoints
PUBLISHED_IDS: tuple[tuple[str, list[int]], ...] = (
    (
        "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
        [248045, 846, 198, 9419, 248046, 198, 248045, 74455, 198, 248068, 271, 248069, 271],
    ),
    ("user\n", [846, 198]),
)

QWEN2_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

LEVEL_WORDS = ("excellent", "good", "fair", "poor", "bad")
LEVEL_IDS = (8800, 1603, 6415, 7604, 3743)
STEM = "The quality of the painting is"
QUESTION = "How would you rate the quality of this painting?"

ROUND_TRIP_TEXTS = (
    "The quality of the painting is excellent.",
    "Grüße aus Köln, naïve café, ÅNGSTRÖM",
    "e\u0301 o\u0308 n\u0303 (decomposed accents, composed by NFC)",
    "नमस्ते दुनिया, ภาษาไทย สวัสดี, ကမ္ဘာ, کتابِ من",
    "我想在apple工作1314151天～ 日本語のテキスト 한국어 텍스트",
    "Ζωγραφική, живопись, ציור, لوحة",
    "3 33 333 3333 33333 1,234.56 -7e-3 0x1F ½ ² ٣٤٥ ४२",
    "\t\ttabs\n\n\nnewlines\r\n  two spaces   three    four\u00a0nbsp\u2003em",
    "emoji 🦙🦙 👩‍👩‍👧 🏳️‍🌈 ✅ 🚀",
    "I've been 'told he's there, 'RE you sure? We'Ve a'lL",
    "```python\ndef f(x):\n    return x ** 2  # square\n```",
    "\u0301\u0302 marks alone at the start, then \u0916\u093f",
)


class Checks:
    """Collects pass/fail lines."""

    def __init__(self) -> None:
        self.failed = 0

    def __call__(self, name: str, ok: bool, detail: object = "") -> None:
        print(f"{'PASS' if ok else 'FAIL'}  {name}" + (f"  ({detail})" if detail != "" else ""))
        self.failed += not ok


def verify(folder: Path) -> int:
    """Run every check on ``folder``; returns the number of failures."""
    from tokenizers import Tokenizer

    check = Checks()
    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))

    def encode(text: str) -> list[int]:
        return raw.encode(text, add_special_tokens=False).ids

    fingerprint = hashlib.sha256(str(encode(CHK_TXT)).encode()).hexdigest()
    check(
        "1 llama.cpp qwen35 pre-tokenizer hash",
        fingerprint == LLAMACPP_QWEN35_CHKHSH,
        fingerprint[:16],
    )
    for text, ids in PUBLISHED_IDS:
        check(f"2 published ids of {text!r}", encode(text) == ids, encode(text))

    import transformers

    config = transformers.Qwen3_5Config()
    for field, token in (
        ("image_token_id", "<|image_pad|>"),
        ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"),
        ("vision_end_token_id", "<|vision_end|>"),
    ):
        check(
            f"3 Qwen3_5Config.{field} is {token}", raw.token_to_id(token) == getattr(config, field)
        )
    rows = transformers.Qwen3_5TextConfig().vocab_size
    check(
        "3 Qwen3_5TextConfig.vocab_size covers the tokenizer",
        raw.get_vocab_size() <= rows == 248320,
        f"{raw.get_vocab_size()} <= {rows}",
    )

    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    check(
        f"4 AutoTokenizer class (transformers {transformers.__version__})",
        type(tokenizer).__name__ == "Qwen3_5Tokenizer",
        type(tokenizer).__name__,
    )
    check(
        "4 eos <|im_end|> 248046, pad <|endoftext|> 248044, no BOS",
        (tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.bos_token_id)
        == (248046, 248044, None),
    )
    corpus = (CHK_TXT, *ROUND_TRIP_TEXTS, *(text for text, _ in PUBLISHED_IDS))
    differing = [t for t in corpus if tokenizer(t, add_special_tokens=False).input_ids != encode(t)]
    check("4 AutoTokenizer ids equal the tokenizer.json ids", not differing, differing[:1])

    wrong = [
        text
        for text in (CHK_TXT, *ROUND_TRIP_TEXTS)
        if tokenizer.decode(encode(text)) != unicodedata.normalize("NFC", text)
    ]
    check("5 decode(encode(text)) == NFC(text)", not wrong, wrong[:1])

    from tokenizers import Regex, pre_tokenizers

    # Qwen2's pattern (no \p{M}) cuts the same words at their marks: the check can fail
    qwen2 = pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated")
    for word in (" नमस्ते", " สวัสดี", " ကမ္ဘာ"):
        pieces = [piece for piece, _ in raw.pre_tokenizer.pre_tokenize_str(word)]
        cut = len(qwen2.pre_tokenize_str(word))
        check(f"6 marks stay inside {word.strip()!r}", len(pieces) == 1 < cut, f"Qwen2: {cut}")

    image_turn: Any = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}
    ]
    head = f"<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{QUESTION}<|im_end|>\n"
    for thinking, tail in ((False, "<think>\n\n</think>\n\n"), (True, "<think>\n")):
        rendered = tokenizer.apply_chat_template(
            image_turn, add_generation_prompt=True, tokenize=False, enable_thinking=thinking
        )
        expected = head + "<|im_start|>assistant\n" + tail
        check(f"7 chat template, enable_thinking={thinking}", rendered == expected, repr(rendered))
    # a training conversation: the answer after the last user turn carries an (empty) think
    # block, as Qwen3.5's published template writes it; the system text is trimmed
    answered: Any = [
        {"role": "system", "content": " Be brief. "},
        *image_turn,
        {"role": "assistant", "content": [{"type": "text", "text": "It is good."}]},
    ]
    rendered = tokenizer.apply_chat_template(answered, tokenize=False)
    expected = (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        + head
        + "<|im_start|>assistant\n<think>\n\n</think>\n\nIt is good.<|im_end|>\n"
    )
    check("7 chat template, an answered turn", rendered == expected, repr(rendered))

    from PIL import Image

    # the PIL twin of the class the config names (what ArtQuant loads; 5.17's
    # AutoImageProcessor has no PIL fallback and would need torchvision)
    processor = transformers.Qwen2VLImageProcessorPil.from_pretrained(folder)
    grid = processor(images=[Image.new("RGB", (224, 224), (90, 120, 200))], return_tensors="pt")[
        "image_grid_thw"
    ]
    check(
        f"8 image processor {type(processor).__name__}: 224 px -> grid (1, 16, 16)",
        (processor.patch_size, processor.merge_size, grid.tolist()) == (16, 2, [[1, 16, 16]]),
        grid.tolist(),
    )

    firsts = [encode(STEM + " " + word)[len(encode(STEM))] for word in LEVEL_WORDS]
    singles = [encode(" " + word) for word in LEVEL_WORDS]
    check(
        "9 level words are single distinct tokens after the stem",
        tuple(firsts) == LEVEL_IDS and singles == [[i] for i in LEVEL_IDS],
        dict(zip(LEVEL_WORDS, firsts, strict=True)),
    )
    return check.failed


def main(argv: list[str]) -> int:
    folder = (
        Path(argv[0])
        if argv
        else Path(os.environ.get("ARTQUANT_QWEN3_5_TOKENIZER") or DEFAULT_FOLDER)
    )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    failed = verify(folder)
    print(f"{'all checks passed' if not failed else f'{failed} check(s) failed'} for {folder}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
