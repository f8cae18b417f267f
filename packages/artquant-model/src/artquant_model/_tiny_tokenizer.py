"""A tiny LLaMA-style tokenizer built in code: same pipeline as the real one, 512 ids at most.

The vocabulary mirrors LLaMA's layout: `<unk>` 0, `<s>` 1, `</s>` 2, the 256 byte pieces `<0x00>`..
`<0xFF>` (3..258, so any text encodes without `<unk>`), the word boundary "▁", single characters,
and whole words reached through a chain of prefix merges ("▁e" + "x" -> "▁ex", ...). Every word
of every prompt and level preset is one token, so the tiny tokenizer exercises exactly the code
paths of the real one (dummy prefix, the lone "▁" after an image, byte fallback).
"""

from __future__ import annotations

import string

from transformers import PreTrainedTokenizerBase

from artquant_model.backbones.mplug_owl2._tokenizer import (
    BOS,
    EOS,
    SPIECE_UNDERLINE,
    UNK,
    build_backend,
    wrap_backend,
)

#: Upper bound on the tiny vocabulary: the tiny model's `vocab_size` (testing.TINY_VOCAB_SIZE).
TINY_TOKENIZER_MAX_SIZE = 512

_CHARACTERS = string.ascii_lowercase + string.ascii_uppercase + string.digits + ".,:;!?'\"-()/"

# Prompt words of the presets and the description prompt, the level words, and a few more so
# that short test sentences stay short.
_WORDS = (
    "excellent", "good", "fair", "poor", "bad",
    "USER", "ASSISTANT", "How", "would", "you", "rate", "the", "quality", "aesthetics", "of",
    "this", "painting", "image", "is", "The", "Describe", "describe", "a", "an", "and",
    "colour", "color", "light", "style", "art",
)  # fmt: skip


def tiny_vocabulary() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The tiny vocabulary (piece -> id) and its BPE merges, deterministically."""
    pieces = [UNK, BOS, EOS]
    pieces += [f"<0x{byte:02X}>" for byte in range(256)]
    pieces += [SPIECE_UNDERLINE, *_CHARACTERS]
    merges: list[tuple[str, str]] = []
    known = set(pieces)
    for word in _WORDS:
        text = SPIECE_UNDERLINE + word
        for end in range(2, len(text) + 1):
            piece = text[:end]
            if piece not in known:
                known.add(piece)
                pieces.append(piece)
                merges.append((text[: end - 1], text[end - 1]))
    vocab = {piece: index for index, piece in enumerate(pieces)}
    if len(vocab) > TINY_TOKENIZER_MAX_SIZE:  # a guard for whoever extends the word list
        raise RuntimeError(f"tiny vocabulary has {len(vocab)} > {TINY_TOKENIZER_MAX_SIZE} pieces")
    return vocab, merges


def build_tiny_tokenizer() -> PreTrainedTokenizerBase:
    """The tiny tokenizer (see the module docstring)."""
    vocab, merges = tiny_vocabulary()
    return wrap_backend(build_backend(vocab, merges), name_or_path="artquant-tiny")
