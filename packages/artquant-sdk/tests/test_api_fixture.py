"""ArtQuant end to end against the original code's outputs (fixture mplug_owl2_tiny_vocab32k).

From the two PNG files and the real LLaMA-2 tokenizer, through our tokenizer, preprocessing,
model and score read-out, to the fixture's reference scores, stds, level probabilities, greedy
generation and LoRA-merged score. Tolerances are the fixture README's suggested pass criteria.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from artquant_sdk import ArtQuant, ScoreResult

SCORE_ATOL = 1e-5
PROB_ATOL = 2e-6
WORDS = ["excellent", "good", "fair", "poor", "bad"]


@pytest.fixture(scope="module")
def shared_root(shared: Path) -> Path:
    if not (shared / "fixtures" / "mplug_owl2_tiny_vocab32k").is_dir():
        pytest.skip(f"the vocab32k fixture is missing from {shared}")
    return shared


@pytest.fixture(scope="module")
def fixture_dir(shared_root: Path) -> Path:
    return shared_root / "fixtures" / "mplug_owl2_tiny_vocab32k"


@pytest.fixture(scope="module")
def tokenizer_dir(shared_root: Path) -> Path:
    return shared_root / "tokenizers" / "llama2"


@pytest.fixture(scope="module")
def pictures(fixture_dir: Path) -> list[Path]:
    return [fixture_dir / "picture0_src_333x250.png", fixture_dir / "picture1_src_180x260.png"]


@pytest.fixture(scope="module")
def reference(fixture_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(fixture_dir / "reference_outputs.safetensors")


@pytest.fixture(scope="module")
def scorer(fixture_dir: Path, tokenizer_dir: Path) -> ArtQuant:
    return ArtQuant.from_pretrained(
        fixture_dir / "checkpoint", tokenizer=tokenizer_dir, device="cpu"
    )


def _check_against(
    results: list[ScoreResult], reference: dict[str, torch.Tensor], prompt: str, key: str
) -> None:
    scores = reference[f"{prompt}.{key}"].double()
    probs = reference[f"{prompt}.level_probs"].double()
    for i, result in enumerate(results):
        assert result.score == pytest.approx(scores[i].item(), abs=SCORE_ATOL)
        assert list(result.probs) == WORDS
        assert list(result.probs.values()) == pytest.approx(probs[i].tolist(), abs=PROB_ATOL)
        assert result.level == WORDS[int(probs[i].argmax())]


def test_defaults_on_cpu(scorer: ArtQuant) -> None:
    assert scorer.device == torch.device("cpu")
    assert scorer.dtype == torch.float32
    assert scorer.scale == (1.0, 10.0)
    assert scorer.level_spec.name == "artquant"
    # no preprocessor_config.json in the fixture: the size comes from the vision config
    assert scorer.preprocess([Image.new("RGB", (5, 3))]).shape == (1, 3, 448, 448)


@pytest.mark.parametrize("batch_size", [1, 2])
def test_scores_stds_and_probs_match_the_original_code(
    scorer: ArtQuant,
    pictures: list[Path],
    reference: dict[str, torch.Tensor],
    batch_size: int,
) -> None:
    results = scorer.score(pictures, batch_size=batch_size)
    assert [r.image for r in results] == [str(p) for p in pictures]
    _check_against(results, reference, "artquant", "score_artquant")
    stds = reference["artquant.score_artquant_std"].double()
    for result, std in zip(results, stds, strict=True):
        assert result.std == pytest.approx(std.item(), abs=SCORE_ATOL)
        assert result.scale == (1.0, 10.0)
    # the fixture: picture 0 reads 5.097325, picture 1 5.177979, both most likely "poor"
    assert [r.level for r in results] == ["poor", "poor"]


def test_batch_invariance_over_uneven_batches(scorer: ArtQuant, pictures: list[Path]) -> None:
    many = [pictures[0], pictures[1], pictures[0], pictures[1], pictures[1]]
    one_by_one = scorer.score(many, batch_size=1)
    batched = scorer.score(many, batch_size=3)
    # float32 matmuls of different batch shapes may round differently: the fixture's own
    # tolerances apply (they were bit-identical there, batch 1 vs 2, on the original code)
    for a, b in zip(one_by_one, batched, strict=True):
        assert a.score == pytest.approx(b.score, abs=SCORE_ATOL)
        assert list(a.probs.values()) == pytest.approx(list(b.probs.values()), abs=PROB_ATOL)


def test_every_input_kind_gives_the_same_score(scorer: ArtQuant, pictures: list[Path]) -> None:
    path = pictures[1]
    with Image.open(path) as opened:
        pil = opened.convert("RGB")
    array = np.asarray(pil)
    inputs: list[Any] = [str(path), path, pil, array, path.read_bytes()]
    results = scorer.score(inputs, batch_size=2)
    assert [r.image for r in results] == [
        str(path),
        str(path),
        "<PIL.Image>#2",
        "<ndarray>#3",
        "<bytes>#4",
    ]
    for result in results[1:]:
        assert result.score == pytest.approx(results[0].score, abs=1e-6)
    single = scorer.score(str(path))
    assert len(single) == 1
    assert single[0].score == pytest.approx(results[0].score, abs=1e-6)


@pytest.mark.parametrize(
    ("levels", "key", "scale"),
    [("qalign", "score_qalign", (0.0, 1.0)), ("onealign", "score_onealign", (1.0, 5.0))],
)
def test_other_level_presets_use_their_prompt_and_values(
    fixture_dir: Path,
    tokenizer_dir: Path,
    pictures: list[Path],
    reference: dict[str, torch.Tensor],
    levels: str,
    key: str,
    scale: tuple[float, float],
) -> None:
    other = ArtQuant.from_pretrained(
        fixture_dir / "checkpoint", tokenizer=tokenizer_dir, device="cpu", levels=levels
    )
    results = other.score(pictures, batch_size=2)
    _check_against(results, reference, "qalign", key)
    assert results[0].scale == scale


def test_describe_reproduces_the_greedy_generation(
    scorer: ArtQuant, fixture_dir: Path, pictures: list[Path]
) -> None:
    meta = json.loads((fixture_dir / "reference_meta.json").read_text())["generation"]
    expected = load_file(fixture_dir / "generation_reference.safetensors")["generated_ids"]
    ids = scorer.describe_ids(pictures[0], max_new_tokens=8, prompt=meta["prompt"])
    assert ids == expected.tolist()
    text = scorer.describe(pictures[0], max_new_tokens=8, prompt=meta["prompt"])
    assert text == meta["generated_text_decoded"]


def test_describe_rejects_bad_arguments(scorer: ArtQuant, pictures: list[Path]) -> None:
    with pytest.raises(ValueError, match="exactly once"):
        scorer.describe(pictures[0], prompt="USER: describe. ASSISTANT:")
    with pytest.raises(ValueError, match="max_new_tokens"):
        scorer.describe(pictures[0], max_new_tokens=0)
    with pytest.raises(TypeError, match="one image"):
        scorer.describe(pictures)  # type: ignore[arg-type]


def test_score_rejects_bad_batch_size(scorer: ArtQuant, pictures: list[Path]) -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            scorer.score(pictures, batch_size=bad)  # type: ignore[arg-type]


def test_unreadable_image_raises_naming_it(scorer: ArtQuant, tmp_path: Path) -> None:
    from artquant_model import ImageLoadError

    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ImageLoadError, match=r"broken\.png"):
        scorer.score([bad])


def test_lora_release_over_the_fixture_base_reproduces_its_score(
    fixture_dir: Path, tokenizer_dir: Path, pictures: list[Path]
) -> None:
    expected = load_file(fixture_dir / "artquant_style_lora_reference.safetensors")
    lora = ArtQuant.from_pretrained(
        fixture_dir / "artquant_style_lora",
        base=fixture_dir / "checkpoint",
        tokenizer=tokenizer_dir,
        device="cpu",
    )
    (result,) = lora.score(pictures[0])
    assert result.score == pytest.approx(5.670800, abs=SCORE_ATOL)
    assert result.score == pytest.approx(expected["score_artquant"].item(), abs=SCORE_ATOL)
    assert result.std == pytest.approx(expected["score_artquant_std"].item(), abs=SCORE_ATOL)
    probs = expected["level_probs"][0].double().tolist()
    assert list(result.probs.values()) == pytest.approx(probs, abs=PROB_ATOL)


def test_lora_base_defaults_to_the_folder_its_adapter_config_names(
    fixture_dir: Path, tokenizer_dir: Path, pictures: list[Path]
) -> None:
    # adapter_config.json says base_model_name_or_path "../checkpoint", which exists here
    lora = ArtQuant.from_pretrained(fixture_dir / "artquant_style_lora", tokenizer=tokenizer_dir)
    assert lora.score(pictures[0])[0].score == pytest.approx(5.670800, abs=SCORE_ATOL)


def test_lora_without_base_and_base_with_full_checkpoint_are_errors(
    fixture_dir: Path, tokenizer_dir: Path, tmp_path: Path
) -> None:
    moved = tmp_path / "release"
    shutil.copytree(fixture_dir / "artquant_style_lora", moved)  # ../checkpoint is gone
    with pytest.raises(ValueError, match="names no local base folder; pass base="):
        ArtQuant.from_pretrained(moved, tokenizer=tokenizer_dir)
    with pytest.raises(ValueError, match="base is only for LoRA releases"):
        ArtQuant.from_pretrained(
            fixture_dir / "checkpoint", base=fixture_dir / "checkpoint", tokenizer=tokenizer_dir
        )


def test_missing_tokenizer_says_how_to_pass_one(fixture_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="tokenizer=<folder>"):
        ArtQuant.from_pretrained(fixture_dir / "checkpoint", device="cpu")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ArtQuant.from_pretrained(fixture_dir / "checkpoint", tokenizer=tmp_path / "nope")


def test_bad_device_dtype_and_levels_are_rejected_before_loading(
    fixture_dir: Path, tokenizer_dir: Path
) -> None:
    ckpt = fixture_dir / "checkpoint"
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        ArtQuant.from_pretrained(ckpt, tokenizer=tokenizer_dir, device="gpu")
    with pytest.raises(ValueError, match="unknown dtype 'int8'"):
        ArtQuant.from_pretrained(ckpt, tokenizer=tokenizer_dir, dtype="int8")
    with pytest.raises(ValueError, match="unknown level preset 'stars'"):
        ArtQuant.from_pretrained(ckpt, tokenizer=tokenizer_dir, levels="stars")
    with pytest.raises(ValueError, match="levels must be a preset name"):
        ArtQuant.from_pretrained(ckpt, tokenizer=tokenizer_dir, levels=5)  # type: ignore[arg-type]


def test_bfloat16_on_cpu_runs_in_bfloat16_close_to_float32(
    fixture_dir: Path,
    tokenizer_dir: Path,
    pictures: list[Path],
    reference: dict[str, torch.Tensor],
) -> None:
    half = ArtQuant.from_pretrained(
        fixture_dir / "checkpoint", tokenizer=tokenizer_dir, device="cpu", dtype=torch.bfloat16
    )
    assert half.dtype == torch.bfloat16
    assert {p.dtype for p in half.model.parameters()} == {torch.bfloat16}
    results = half.score(pictures, batch_size=2)
    # the fixture README measures bf16 compute moving ArtQuant scores by about 0.02
    for result, expected in zip(results, reference["artquant.score_artquant"], strict=True):
        assert result.score == pytest.approx(expected.item(), abs=0.1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_float32_matches_the_reference(
    fixture_dir: Path,
    tokenizer_dir: Path,
    pictures: list[Path],
    reference: dict[str, torch.Tensor],
) -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    gpu = ArtQuant.from_pretrained(
        fixture_dir / "checkpoint", tokenizer=tokenizer_dir, device="cuda", dtype="float32"
    )
    assert gpu.device.type == "cuda"
    _check_against(gpu.score(pictures, batch_size=2), reference, "artquant", "score_artquant")
    default = ArtQuant.from_pretrained(fixture_dir / "checkpoint", tokenizer=tokenizer_dir)
    assert default.dtype in (torch.bfloat16, torch.float16)
    for result, expected in zip(
        default.score(pictures), reference["artquant.score_artquant"], strict=True
    ):
        assert result.score == pytest.approx(expected.item(), abs=0.1)


@pytest.mark.gpu
@pytest.mark.skipif(
    not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()),
    reason="needs MPS",
)
def test_mps_float32_matches_the_reference(
    fixture_dir: Path,
    tokenizer_dir: Path,
    pictures: list[Path],
    reference: dict[str, torch.Tensor],
) -> None:
    mps = ArtQuant.from_pretrained(
        fixture_dir / "checkpoint", tokenizer=tokenizer_dir, device="mps"
    )
    assert mps.dtype == torch.float32
    results = mps.score(pictures, batch_size=2)
    for result, expected in zip(results, reference["artquant.score_artquant"], strict=True):
        assert result.score == pytest.approx(expected.item(), abs=1e-4)


def test_modelzoo_names_load_from_the_modelzoo_folder(
    fixture_dir: Path,
    tokenizer_dir: Path,
    pictures: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``artquant-apdd`` resolves its LoRA release, its base and the base's tokenizer by name."""
    zoo = tmp_path / "zoo"
    shutil.copytree(fixture_dir / "artquant_style_lora", zoo / "artquant-apdd")
    shutil.copytree(fixture_dir / "checkpoint", zoo / "mplug-owl2-llama2-7b")
    shutil.copy(tokenizer_dir / "tokenizer.model", zoo / "mplug-owl2-llama2-7b")
    shutil.copytree(zoo / "mplug-owl2-llama2-7b", zoo / "one-align")
    monkeypatch.setenv("ARTQUANT_MODELZOO", str(zoo))

    apdd = ArtQuant.from_pretrained("artquant-apdd", local_files_only=True, device="cpu")
    assert apdd.name == "artquant-apdd"
    assert apdd.score(pictures[0])[0].score == pytest.approx(5.670800, abs=SCORE_ATOL)

    onealign = ArtQuant.from_pretrained("one-align", local_files_only=True, device="cpu")
    assert onealign.level_spec.name == "onealign"
    assert onealign.scale == (1.0, 5.0)
