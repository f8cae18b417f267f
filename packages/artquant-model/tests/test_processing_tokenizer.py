"""Tokenizer: ids equal the original LLaMA SentencePiece ids, the image-token chunk rule, files."""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from artquant_model._tiny_tokenizer import TINY_TOKENIZER_MAX_SIZE, tiny_vocabulary
from artquant_model.backbones.mplug_owl2._tokenizer import llama_piece_scores, rank_merges
from artquant_model.backbones.mplug_owl2.processing_mplug_owl2 import (
    ARTQUANT_SCORE_PROMPT,
    DESCRIBE_PROMPT,
    IMAGE_TOKEN_INDEX,
    QALIGN_AESTHETICS_PROMPT,
    QALIGN_SCORE_PROMPT,
    load_tokenizer,
    tokenizer_image_token,
)
from artquant_model.levels import LEVEL_PRESETS
from artquant_model.testing import tiny_tokenizer


@pytest.fixture(scope="module")
def llama_dir(shared_dir: Path) -> Path:
    folder = shared_dir / "tokenizers" / "llama2"
    if not (folder / "tokenizer.model").is_file():
        pytest.skip(f"../shared not found: {folder}/tokenizer.model is missing")
    return folder


@pytest.fixture(scope="module")
def llama(llama_dir: Path):
    return load_tokenizer(llama_dir)


def _references(shared_dir: Path) -> list[tuple[str, dict]]:
    cases = []
    for name in ("mplug_owl2_tiny", "mplug_owl2_tiny_vocab32k"):
        path = shared_dir / "fixtures" / name / "tokenizer_reference.json"
        if not path.is_file():
            pytest.skip(f"../shared not found: {path}")
        data = json.loads(path.read_text())
        cases += [(f"{name}/{key}", prompt) for key, prompt in data["prompts"].items()]
    return cases


def test_every_reference_prompt_reproduced(llama, shared_dir: Path) -> None:
    cases = _references(shared_dir)
    assert len(cases) == 8
    for name, case in cases:
        assert tokenizer_image_token(case["prompt"], llama) == case["input_ids"], name
        chunks = (
            case.get("chunks_tokenized_separately") or case["chunks_tokenized_separately_with_bos"]
        )
        texts = case["prompt"].split("<|image|>")
        assert [llama(text).input_ids for text in texts] == chunks, name
        contrast = case.get("for_contrast_whole_string_without_image_token_tokenized_at_once")
        if contrast is not None:  # tokenizing in one piece loses the 29871: we must not do that
            assert llama(case["prompt"].replace("<|image|>", "")).input_ids == contrast
            assert contrast != [i for i in case["input_ids"] if i != IMAGE_TOKEN_INDEX]


def test_prompt_constants_are_the_fixture_strings(shared_dir: Path) -> None:
    path = shared_dir / "fixtures" / "mplug_owl2_tiny_vocab32k" / "tokenizer_reference.json"
    prompts = json.loads(path.read_text())["prompts"]
    assert prompts["artquant_score"]["prompt"] == ARTQUANT_SCORE_PROMPT
    assert prompts["qalign_score"]["prompt"] == QALIGN_SCORE_PROMPT
    assert prompts["generation"]["prompt"] == DESCRIBE_PROMPT
    older = json.loads(
        (path.parents[1] / "mplug_owl2_tiny" / "tokenizer_reference.json").read_text()
    )
    assert older["prompts"]["qalign_scorer_aesthetics"]["prompt"] == QALIGN_AESTHETICS_PROMPT


def test_level_words_single_tokens_with_reference_ids(llama, shared_dir: Path) -> None:
    path = shared_dir / "fixtures" / "mplug_owl2_tiny_vocab32k" / "tokenizer_reference.json"
    data = json.loads(path.read_text())
    for spec in LEVEL_PRESETS.values():
        assert spec.token_ids(llama) == data["level_ids"] == [15129, 1781, 6534, 6460, 4319]
    for word, ids in data["level_tokenizations"].items():
        assert llama([word]).input_ids == [ids]
    assert llama.convert_ids_to_tokens(data["level_ids"]) == data["level_pieces"]


def test_special_ids_and_conventions(llama) -> None:
    assert (llama.bos_token_id, llama.eos_token_id, llama.unk_token_id) == (1, 2, 0)
    assert llama.pad_token_id == 0
    assert len(llama) == 32000
    assert llama("").input_ids == [1]
    assert llama("a").input_ids[-1] != llama.eos_token_id
    # the lone dummy-prefix piece before a leading space, and after a trailing space
    assert llama(" ASSISTANT:").input_ids[:2] == [1, 29871]
    assert llama("USER: ").input_ids[-1] == 29871


def test_matches_sentencepiece_on_random_text(llama, llama_dir: Path) -> None:
    spm = pytest.importorskip("sentencepiece")
    processor = spm.SentencePieceProcessor(model_file=str(llama_dir / "tokenizer.model"))
    rng = random.Random(1234)
    alphabet = [*"abcdefghijklmnopqrstuvwxyzABCXYZ  \n\t.,!?'\"-:;0123456789", "é", "ü", "中", "🙂"]
    alphabet += ["  ", "\u00a0", " the", " quality", "painting", "ASSISTANT:"]
    for _ in range(1500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert llama(text).input_ids == [1, *processor.encode(text)], repr(text)
        assert llama.decode(llama(text).input_ids, skip_special_tokens=True) == processor.decode(
            processor.encode(text)
        )


def test_legacy_text_after_special_token(llama, llama_dir: Path) -> None:
    """A literal special token splits the text; each piece gets SentencePiece's dummy prefix."""
    spm = pytest.importorskip("sentencepiece")
    processor = spm.SentencePieceProcessor(model_file=str(llama_dir / "tokenizer.model"))
    text = "good.</s>USER: hi"
    expected = [1, *processor.encode("good."), 2, *processor.encode("USER: hi")]
    assert llama(text).input_ids == expected


def test_image_token_rule_edge_cases(llama) -> None:
    hi = llama("hi").input_ids  # [1, ...]
    # image first: the original keeps no BOS (empty first chunk) and the later chunk keeps its BOS
    assert tokenizer_image_token("<|image|>hi", llama) == [IMAGE_TOKEN_INDEX, *hi]
    assert tokenizer_image_token("hi<|image|>", llama) == [*hi, IMAGE_TOKEN_INDEX]
    two = tokenizer_image_token("hi<|image|><|image|>hi", llama)
    assert two == [*hi, IMAGE_TOKEN_INDEX, IMAGE_TOKEN_INDEX, *hi[1:]]
    assert tokenizer_image_token("hi", llama) == hi
    assert tokenizer_image_token("", llama) == []
    assert tokenizer_image_token("hi<|image|>hi", llama, image_token_index=-1)[len(hi)] == -1


def test_load_from_file_json_and_roundtrip(llama, llama_dir: Path, tmp_path: Path) -> None:
    prompt = "USER: How would you rate the quality of this painting?\n ok é 🙂"
    expected = llama(prompt).input_ids
    assert load_tokenizer(llama_dir / "tokenizer.model")(prompt).input_ids == expected
    llama.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "tokenizer.json").is_file()
    assert load_tokenizer(tmp_path / "saved")(prompt).input_ids == expected
    assert load_tokenizer(tmp_path / "saved" / "tokenizer.json")(prompt).input_ids == expected
    # transformers' own loader reads our tokenizer.json with the same ids
    assert (
        AutoTokenizer.from_pretrained(tmp_path / "saved")(" ASSISTANT:").input_ids
        == llama(" ASSISTANT:").input_ids
    )
    both = tmp_path / "both"
    shutil.copytree(tmp_path / "saved", both)
    shutil.copy(llama_dir / "tokenizer.model", both / "tokenizer.model")
    assert load_tokenizer(both)(prompt).input_ids == expected


def test_tokenizer_json_written_by_transformers_llama(
    llama, llama_dir: Path, tmp_path: Path
) -> None:
    """transformers 5's LlamaTokenizer writes a Metaspace pipeline and id-ranked merges that lose
    the 29871 after the image; load_tokenizer keeps only the vocabulary, so the ids are right."""
    from transformers import LlamaTokenizer

    spm = pytest.importorskip("sentencepiece")
    processor = spm.SentencePieceProcessor(model_file=str(llama_dir / "tokenizer.model"))
    theirs = LlamaTokenizer.from_pretrained(llama_dir)
    theirs.save_pretrained(tmp_path)
    (tmp_path / "tokenizer.model").unlink(missing_ok=True)
    assert theirs(" ASSISTANT:", add_special_tokens=False).input_ids[0] != 29871  # their quirk
    ours = load_tokenizer(tmp_path)
    rng = random.Random(99)
    alphabet = [*"abcXYZ  \n\t.,:0123", "é", "🙂", "    ", " ASSISTANT:", "painting"]
    texts = [" ASSISTANT: The quality", "\nASSISTANT:", "USER: ", "a   b\n\n    c"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25))) for _ in range(300)]
    for text in texts:
        assert ours(text).input_ids == [1, *processor.encode(text)], repr(text)


def test_json_merges_rederived_from_llama_piece_order(llama_dir: Path, tmp_path: Path) -> None:
    """The pseudo-scores from ids rank merges exactly as the real SentencePiece scores do, so
    the merges stored in a tokenizer.json (here scrambled) do not matter."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString((llama_dir / "tokenizer.model").read_bytes())
    real = [(p.piece, p.score) for p in proto.pieces if p.type == 1]
    vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
    assert rank_merges(llama_piece_scores(vocab)) == rank_merges(real)
    tokenizer = load_tokenizer(llama_dir)
    tokenizer.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))
    data["model"]["merges"] = [" ".join(pair) for pair in reversed(data["model"]["merges"])]
    (tmp_path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    text = " ASSISTANT:  How would you rate   the quality of this painting?\n"
    assert load_tokenizer(tmp_path)(text).input_ids == tokenizer(text).input_ids


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no tokenizer in"):
        load_tokenizer(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        load_tokenizer(tmp_path / "missing")
    (tmp_path / "tokenizer.model").write_bytes(b"\xff\x00 not a proto")
    with pytest.raises(ValueError, match="not a SentencePiece model"):
        load_tokenizer(tmp_path)
    bad_json = tmp_path / "tokenizer.json"
    bad_json.write_text(json.dumps({"model": {"type": "WordPiece", "vocab": {}}}))
    with pytest.raises(ValueError, match=r"not a LLaMA-style tokenizer\.json"):
        load_tokenizer(bad_json)
    bad_json.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read"):
        load_tokenizer(bad_json)
    no_specials = tmp_path / "nospecial.json"
    no_specials.write_text(
        json.dumps(
            {"model": {"type": "BPE", "byte_fallback": True, "vocab": {"a": 0}, "merges": []}}
        )
    )
    with pytest.raises(ValueError, match="pieces \\['<unk>', '<s>', '</s>'\\] are missing"):
        load_tokenizer(no_specials)


def test_non_llama_sentencepiece_model_rejected(llama_dir: Path, tmp_path: Path) -> None:
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString((llama_dir / "tokenizer.model").read_bytes())
    proto.trainer_spec.model_type = 1  # unigram
    proto.normalizer_spec.remove_extra_whitespaces = True
    (tmp_path / "tokenizer.model").write_bytes(proto.SerializeToString())
    with pytest.raises(ValueError, match=r"model_type 1 .*remove_extra_whitespaces"):
        load_tokenizer(tmp_path)


def test_tiny_tokenizer_is_llama_like(tmp_path: Path) -> None:
    started = time.perf_counter()
    tokenizer = tiny_tokenizer()
    assert time.perf_counter() - started < 0.5  # "well under a second" (about 1 ms unloaded)
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (1, 2, 0)
    assert tokenizer.pad_token_id == 0
    assert len(tokenizer) <= TINY_TOKENIZER_MAX_SIZE == 512
    vocab, _ = tiny_vocabulary()
    assert max(vocab.values()) < 512
    for spec in LEVEL_PRESETS.values():
        ids = spec.token_ids(tokenizer)
        assert tokenizer.convert_ids_to_tokens(ids) == ["▁" + word for word in spec.words]
    ids = tokenizer_image_token(ARTQUANT_SCORE_PROMPT, tokenizer)
    assert ids[0] == 1
    assert ids[ids.index(IMAGE_TOKEN_INDEX) + 1] == vocab["▁"]  # the lone piece after the image
    assert all(0 <= i < 512 for i in ids if i != IMAGE_TOKEN_INDEX)
    # byte fallback: no <unk> for text outside the character set
    assert tokenizer.unk_token_id not in tokenizer("ñ 🙂 ∑").input_ids
    assert tokenizer.decode(tokenizer("ñ 🙂 the quality").input_ids, skip_special_tokens=True) == (
        "ñ 🙂 the quality"
    )
    tokenizer.save_pretrained(tmp_path)
    again = load_tokenizer(tmp_path)
    assert again(ARTQUANT_SCORE_PROMPT).input_ids == tokenizer(ARTQUANT_SCORE_PROMPT).input_ids
    assert tiny_tokenizer()("the painting").input_ids == tokenizer("the painting").input_ids
