"""LLaMA SentencePiece tokenizer rebuilt on the `tokenizers` library, id-exact with SentencePiece.

Why not `transformers.LlamaTokenizer`: in transformers 5 it is a `tokenizers` BPE whose
`Metaspace` pre-tokenizer skips the SentencePiece dummy prefix when the text already starts with a
space. mPLUG-Owl2 tokenizes every chunk around `<|image|>` on its own, and the chunk after the image
usually starts with a space or a newline: SentencePiece then emits the lone piece "▁" (id 29871),
which the model saw in training and which moves the ArtQuant score by about 0.5. The pipeline
below reproduces `SentencePieceProcessor.encode` exactly (checked on the fixtures and on random
strings) on every transformers 5.x release, because it does not depend on transformers' converters.

Pipeline (LLaMA's SentencePiece model has add_dummy_prefix, escape_whitespaces, no
remove_extra_whitespaces and an identity normalizer):
    normalizer: prepend "▁", then every " " -> "▁"  (one segment between special tokens at a time)
    model:      BPE over the SentencePiece pieces, merges ranked by the merged piece's score,
                byte fallback to <0x..> pieces
    decoder:    "▁" -> " ", byte fallback, fuse, strip the one leading space
    post:       "<s> $A" (BOS, never EOS)
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors
from transformers import PreTrainedTokenizerBase, TokenizersBackend

logger = logging.getLogger(__name__)

SPIECE_UNDERLINE = "▁"
UNK, BOS, EOS = "<unk>", "<s>", "</s>"
#: Q-Align / DeQA-Score `tokenizer_config.json` value; only used for the length warning.
MODEL_MAX_LENGTH = 2048

# SentencePiece `ModelProto.SentencePiece.Type` values.
_SP_NORMAL, _SP_UNKNOWN, _SP_CONTROL, _SP_USER_DEFINED, _SP_UNUSED, _SP_BYTE = 1, 2, 3, 4, 5, 6
_SP_MODEL_TYPE_BPE = 2
_WHITESPACE_SCORE = -1e9
_BYTE_PIECE = re.compile(r"<0x[0-9A-F]{2}>")


def rank_merges(pieces: Sequence[tuple[str, float]]) -> list[tuple[str, str]]:
    """BPE merges for normal SentencePiece pieces, best first.

    SentencePiece BPE repeatedly merges the adjacent pair whose concatenation is the piece with the
    highest score. A `tokenizers` BPE merges the pair with the lowest rank, so every split of every
    piece into two pieces becomes one merge, ranked by (-score of the merged piece, its id).

    Args:
        pieces: `(piece, score)` of the normal pieces, in id order.

    Returns:
        The merges as `(left, right)` pairs.
    """
    index = {piece: (score, i) for i, (piece, score) in enumerate(pieces)}
    ranked: list[tuple[float, int, str, str]] = []
    for piece, (score, i) in index.items():
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in index and right in index:
                ranked.append((-score, i, left, right))
    ranked.sort()
    return [(left, right) for _, _, left, right in ranked]


def build_backend(vocab: dict[str, int], merges: Iterable[tuple[str, str]]) -> Tokenizer:
    """The SentencePiece-exact `tokenizers.Tokenizer` for a LLaMA-style vocabulary.

    Args:
        vocab: piece -> id; must hold `<unk>`, `<s>` and `</s>`.
        merges: BPE merges, best first.

    Returns:
        A `tokenizers.Tokenizer` that encodes like SentencePiece and adds BOS.

    Raises:
        ValueError: if a special piece is missing.
    """
    missing = [piece for piece in (UNK, BOS, EOS) if piece not in vocab]
    if missing:
        raise ValueError(
            f"not a LLaMA-style vocabulary: the pieces {missing} are missing "
            f"(need {UNK!r}, {BOS!r} and {EOS!r})"
        )
    backend = Tokenizer(
        models.BPE(
            vocab=dict(vocab),
            merges=list(merges),
            unk_token=UNK,
            fuse_unk=True,
            byte_fallback=True,
            dropout=None,
        )
    )
    # A normalizer, not a Metaspace pre-tokenizer: Metaspace drops the dummy prefix in front of a
    # leading space ("▁▁A" becomes "▁A"); SentencePiece keeps it and so must we.
    backend.normalizer = normalizers.Sequence(
        [normalizers.Prepend(SPIECE_UNDERLINE), normalizers.Replace(" ", SPIECE_UNDERLINE)]
    )
    backend.pre_tokenizer = None
    backend.decoder = decoders.Sequence(
        [
            decoders.Replace(SPIECE_UNDERLINE, " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    backend.add_special_tokens(
        [AddedToken(piece, normalized=False, special=True) for piece in (UNK, BOS, EOS)]
    )
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, vocab[BOS])]
    )
    return backend


def wrap_backend(backend: Tokenizer, *, name_or_path: str = "") -> PreTrainedTokenizerBase:
    """A transformers tokenizer around `backend` with the LLaMA conventions.

    BOS `<s>` is added, EOS is not, the pad token is `<unk>` (id 0 for LLaMA), as the Q-Align /
    DeQA-Score `tokenizer_config.json` sets it. `save_pretrained` writes a `tokenizer.json` that
    `transformers.AutoTokenizer` loads unchanged.
    """
    tokenizer = TokenizersBackend(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=UNK,
        add_bos_token=True,
        add_eos_token=False,
        model_max_length=MODEL_MAX_LENGTH,
        clean_up_tokenization_spaces=False,
        name_or_path=name_or_path,
    )
    return tokenizer


def backend_from_sentencepiece(model_bytes: bytes, *, source: str = "tokenizer.model") -> Tokenizer:
    """Rebuild a LLaMA SentencePiece BPE model (`tokenizer.model`) as a `tokenizers.Tokenizer`.

    Args:
        model_bytes: the serialized SentencePiece `ModelProto`.
        source: where the bytes came from, for error messages.

    Returns:
        The backend tokenizer.

    Raises:
        ValueError: if the model is not a LLaMA-style SentencePiece BPE model.
    """
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()  # type: ignore[attr-defined]
    try:
        proto.ParseFromString(model_bytes)
    except Exception as error:  # protobuf raises its own DecodeError
        raise ValueError(f"{source} is not a SentencePiece model: {error}") from error
    if len(proto.pieces) == 0:
        raise ValueError(f"{source} is not a SentencePiece model: it holds no pieces")
    spec, norm = proto.trainer_spec, proto.normalizer_spec
    problems = []
    if spec.model_type != _SP_MODEL_TYPE_BPE:
        problems.append(f"model_type {spec.model_type} (need BPE = {_SP_MODEL_TYPE_BPE})")
    if norm.precompiled_charsmap or norm.name not in ("identity", ""):
        problems.append(f"normalizer {norm.name!r} (need 'identity')")
    if not norm.add_dummy_prefix or not norm.escape_whitespaces or norm.remove_extra_whitespaces:
        problems.append(
            "normalizer flags add_dummy_prefix/escape_whitespaces/remove_extra_whitespaces = "
            f"{norm.add_dummy_prefix}/{norm.escape_whitespaces}/{norm.remove_extra_whitespaces} "
            "(need True/True/False)"
        )
    if not spec.byte_fallback:
        problems.append("byte_fallback is off (need on)")
    if problems:
        raise ValueError(
            f"{source} is not a LLaMA-style SentencePiece model: " + "; ".join(problems)
        )
    vocab = {piece.piece: i for i, piece in enumerate(proto.pieces)}
    normal = [(piece.piece, piece.score) for piece in proto.pieces if piece.type == _SP_NORMAL]
    return build_backend(vocab, rank_merges(normal))


def llama_piece_scores(vocab: dict[str, int]) -> list[tuple[str, float]]:
    """SentencePiece scores of LLaMA's normal pieces, recovered from the ids alone.

    In LLaMA's `tokenizer.model` the score of a normal piece falls strictly with its id, except
    the 16 whitespace-only pieces ("▁▁", "▁▁▁", ...), which all score -1e9 (checked on the
    LLaMA-2 model). Special and byte pieces are not normal pieces and are left out.

    Returns:
        `(piece, pseudo-score)` in id order, ranking merges as the real scores do.
    """
    ordered = sorted(vocab.items(), key=lambda item: item[1])
    return [
        (piece, _WHITESPACE_SCORE if set(piece) == {SPIECE_UNDERLINE} else -float(index))
        for piece, index in ordered
        if piece not in (UNK, BOS, EOS) and not _BYTE_PIECE.fullmatch(piece)
    ]


def backend_from_tokenizer_json(path: Path) -> Tokenizer:
    """Rebuild our pipeline from the vocabulary of a LLaMA `tokenizer.json`.

    Only the vocabulary (and tokens added after it) is taken from the file. Its normalizer /
    pre-tokenizer are replaced, because transformers 5 writes a Metaspace pipeline that is not
    SentencePiece-exact; its merges are re-derived from the vocabulary with LLaMA's piece order
    (`llama_piece_scores`), because transformers 5 ranks them by id, which merges "▁▁" before
    "▁A" and so changes the ids after a leading or repeated space.

    Raises:
        ValueError: if the file is not a byte-fallback BPE with the LLaMA special pieces.
    """
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read {path} as a tokenizer.json: {error}") from error
    model = data.get("model") or {}
    if model.get("type") != "BPE" or not model.get("byte_fallback", False):
        raise ValueError(
            f"{path} is not a LLaMA-style tokenizer.json: model type {model.get('type')!r}, "
            f"byte_fallback {model.get('byte_fallback')!r} (need 'BPE' with byte_fallback true)"
        )
    vocab = model.get("vocab")
    if not isinstance(vocab, dict):
        raise ValueError(f"{path}: model.vocab must be a piece -> id mapping")
    merges = rank_merges(llama_piece_scores(vocab))
    backend = build_backend(vocab, merges)
    # Tokens added on top of the vocabulary (e.g. a <pad> at 32000) keep their ids.
    extra = sorted(
        (token for token in data.get("added_tokens", []) if token["content"] not in vocab),
        key=lambda token: token["id"],
    )
    for token in extra:
        added = AddedToken(
            token["content"],
            single_word=token.get("single_word", False),
            lstrip=token.get("lstrip", False),
            rstrip=token.get("rstrip", False),
            normalized=token.get("normalized", False),
            special=token.get("special", False),
        )
        if added.special:
            backend.add_special_tokens([added])
        else:
            backend.add_tokens([added])
        if backend.token_to_id(token["content"]) != token["id"]:
            raise ValueError(
                f"{path}: added token {token['content']!r} should have id {token['id']} but "
                f"would get {backend.token_to_id(token['content'])}; added ids must follow the "
                "vocabulary without gaps"
            )
    return backend
