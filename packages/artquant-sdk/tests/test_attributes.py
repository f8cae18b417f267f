"""``ArtQuant.score(attributes=...)`` and ``artquant score --attributes`` on a tiny mPLUG-Owl2
whose ``artquant_spec.json`` holds the total and two attributes (picture-first prompts, as the
trainer writes them).

Reference: the backbone's one-question-at-a-time ``score`` on the same pixels. Tolerance 1e-5 on
the 1-10 scale: the SDK shares the picture (and the text before the question) among questions,
which reorders float32 sums only (observed ~1e-6); a wrong question or row moves scores by far
more than 1e-3 (checked: the questions' scores differ).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artquant_sdk import ArtQuant, AttributeScore, attribute_key, cli

ATOL = 1e-5


def _picture_first(prompt: str, stem: str) -> object:
    from artquant_model import Question

    return Question(
        prompt=prompt, stem=stem, raw_prompt=f"A chat. USER: <|image|>\n{prompt} ASSISTANT: {stem}"
    )


@pytest.fixture(scope="module")
def attribute_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from artquant_model import ARTQUANT_SPEC
    from artquant_model.testing import save_tiny_checkpoint

    folder = Path(save_tiny_checkpoint(tmp_path_factory.mktemp("attr") / "ckpt", seed=3))
    questions = {
        "total": ARTQUANT_SPEC.question(),
        "color": _picture_first(
            "How would you rate the color of this painting?", "The color of the painting is"
        ),
        "light_and_shadow": _picture_first(
            "How would you rate the light and shadow of this painting?",
            "The light and shadow of the painting is",
        ),
    }
    ARTQUANT_SPEC.model_copy(update={"questions": questions}).save(folder)
    return folder


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(5)
    out = []
    for index, (w, h) in enumerate([(40, 30), (64, 64), (30, 70), (50, 50), (90, 40)]):
        path = folder / f"p{index}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        out.append(path)
    return out


@pytest.fixture(scope="module")
def scorer(attribute_model: Path) -> ArtQuant:
    return ArtQuant.from_pretrained(attribute_model, device="cpu")


def _alone(scorer: ArtQuant, files: list[Path], question: str) -> np.ndarray:
    pixels = scorer.preprocess([Image.open(f).convert("RGB") for f in files])
    return scorer.backbone.score(pixels, question=question).score.numpy()


def test_attributes_all_equal_one_question_at_a_time(scorer: ArtQuant, files: list[Path]) -> None:
    assert scorer.attributes == ["color", "light_and_shadow"]
    results = scorer.score(files, attributes="all", batch_size=2)
    plain = scorer.score(files, batch_size=3)
    for question in ("total", "color", "light_and_shadow"):
        want = _alone(scorer, files, question)
        got = [r.score if question == "total" else r.attributes[question].score for r in results]
        np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)
    for with_attributes, total_only in zip(results, plain, strict=True):
        assert total_only.attributes == {}
        assert with_attributes.score == pytest.approx(total_only.score, abs=ATOL)
        assert list(with_attributes.attributes) == ["color", "light_and_shadow"]
        color = with_attributes.attributes["color"]
        assert isinstance(color, AttributeScore)
        assert list(color.probs) == scorer.level_words
        assert sum(color.probs.values()) == pytest.approx(1.0, abs=1e-9)
        assert color.level == max(color.probs, key=color.probs.__getitem__)
        values = np.array([10.0, 7.5, 5.0, 3.5, 1.0])
        probs = np.array(list(color.probs.values()))
        assert color.score == pytest.approx(float(probs @ values), abs=1e-9)
        assert color.std == pytest.approx(float(np.sqrt(probs @ (values - color.score) ** 2)))
    spread = np.ptp([[r.score, *(a.score for a in r.attributes.values())] for r in results], 1)
    assert spread.max() > 1e-3  # the questions really differ


def test_attribute_names_ids_and_errors(scorer: ArtQuant, files: list[Path]) -> None:
    assert attribute_key("Light and shadow") == "light_and_shadow"
    [result] = scorer.score(files[0], attributes=["Light and shadow", "color", "COLOR"])
    assert list(result.attributes) == ["light_and_shadow", "color"]
    with pytest.raises(ValueError, match=r"has no attribute 'mood'; it has \['color', 'light_"):
        scorer.score(files[0], attributes=["color", "mood"])
    with pytest.raises(ValueError, match="the total is always scored"):
        scorer.score(files[0], attributes=["total"])
    with pytest.raises(ValueError, match=r"'brushwork' is neither one of .* APDDv2's"):
        scorer.score(files[0], attributes=["brushwork"], zero_shot_attributes=True)


def test_zero_shot_attributes_use_apddv2_questions(scorer: ArtQuant, files: list[Path]) -> None:
    from artquant_model import APDDV2_ATTRIBUTE_QUESTIONS

    results = scorer.score(files[:2], attributes=["mood", "color"], zero_shot_attributes=True)
    assert scorer.backbone.spec.question("mood") == APDDV2_ATTRIBUTE_QUESTIONS["mood"]
    assert "mood" not in scorer.attributes  # the model's own attributes are unchanged
    want = _alone(scorer, files[:2], "mood")
    np.testing.assert_allclose([r.attributes["mood"].score for r in results], want, atol=ATOL)


def test_all_on_a_model_without_attributes(tmp_path: Path, files: list[Path]) -> None:
    from artquant_model.testing import save_tiny_checkpoint

    plain = ArtQuant.from_pretrained(save_tiny_checkpoint(tmp_path / "plain"), device="cpu")
    with pytest.raises(ValueError, match=r"trained on no attributes.*zero_shot_attributes=True"):
        plain.score(files[0], attributes="all")
    [result] = plain.score(files[0], attributes="all", zero_shot_attributes=True)
    assert len(result.attributes) == 10
    assert "the_sense_of_order" in result.attributes


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_cli_attribute_columns_and_resume(
    scorer: ArtQuant, attribute_model: Path, files: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "scores.csv"
    base = ["score", "--model", str(attribute_model), "--device", "cpu", "--no-progress"]
    first = [*base, "--out", str(out), "--attributes", "all", "--batch-size", "2"]
    assert cli.main([*first, *map(str, files[:2])]) == 0
    assert cli.main([*first, "--resume", *map(str, files)]) == 0
    rows = _csv(out)
    assert list(rows[0])[-5:] == [
        "score_color", "std_color", "score_light_and_shadow", "std_light_and_shadow", "error"
    ]  # fmt: skip
    assert [r["image"] for r in rows] == [str(f) for f in files]  # each once, in order
    results = scorer.score(files, attributes="all")
    for row, result in zip(rows, results, strict=True):
        assert float(row["score"]) == pytest.approx(result.score, abs=ATOL)
        for name, value in result.attributes.items():
            assert float(row[f"score_{name}"]) == pytest.approx(value.score, abs=ATOL)
            assert float(row[f"std_{name}"]) == pytest.approx(value.std, abs=ATOL)
    # resuming with other attributes would mix two layouts: refused
    other = [*base, "--out", str(out), "--attributes", "color", "--resume", str(files[0])]
    (tmp_path / "new.png").write_bytes(files[0].read_bytes())
    assert cli.main([*other, str(tmp_path / "new.png")]) == 2


def test_cli_attribute_usage_errors(
    attribute_model: Path, files: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["score", "--model", str(attribute_model), "--device", "cpu", "--no-progress"]
    out = ["--out", str(tmp_path / "s.csv"), str(files[0])]
    assert cli.main([*base, "--attributes", "mood", *out]) == 2
    assert "has no attribute 'mood'" in capsys.readouterr().err
    assert cli.main([*base, "--zero-shot-attributes", *out]) == 2
    assert "--zero-shot-attributes needs --attributes" in capsys.readouterr().err
    assert cli.main([*base, "--attributes", " , ", *out]) == 2
    assert cli.main([*base, "--attributes", "mood", "--zero-shot-attributes", *out]) == 0
    assert "score_mood" in (tmp_path / "s.csv").read_text().splitlines()[0]
