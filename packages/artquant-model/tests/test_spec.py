"""The scorer spec: validation messages and the file that travels with a model."""

from __future__ import annotations

import pytest

from artquant_model.spec import (
    ARTQUANT_SPEC,
    SPEC_FILENAME,
    Question,
    Resolution,
    ScorerSpec,
    read_spec,
)

Q = {"prompt": "q", "stem": "s"}


def _spec(**changes: object) -> ScorerSpec:
    data = ARTQUANT_SPEC.model_dump()
    data.update(changes)
    return ScorerSpec.model_validate(data)


def test_artquant_spec_is_the_issues_zero_shot_default() -> None:
    question = ARTQUANT_SPEC.question()
    assert question.prompt == "How would you rate the quality of this painting?"
    assert question.stem == "The quality of the painting is"
    assert ARTQUANT_SPEC.values == (10.0, 7.5, 5.0, 3.5, 1.0)
    assert ARTQUANT_SPEC.system_prompt is None  # the chat template's own default
    assert ARTQUANT_SPEC.resolution == Resolution(mode="native")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"questions": {"color": Q}}, "must include 'total'"),
        ({"questions": {"total": Q, "Bad Name": Q}}, "lower-case identifiers"),
        ({"words": ("good", "good")}, "repeated: \\['good'\\]"),
        ({"words": ("very good", "bad"), "values": (1.0, 0.0)}, "without whitespace"),
        ({"values": (10.0, 7.5, 5.0, 3.5)}, "5 level words .* but 4 values"),
        ({"values": (11.0, 7.5, 5.0, 3.5, 1.0)}, "outside scale"),
        ({"resolution": {"mode": "fixed"}}, "needs size"),
        ({"resolution": {"mode": "native", "min_pixels": 10, "max_pixels": 5}}, "larger than"),
        ({"questions": {"total": {"prompt": "q", "stem": "ends "}}}, "must not end in whitespace"),
    ],
)  # fmt: skip
def test_bad_specs_are_refused_with_a_clear_message(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _spec(**changes)


def test_unknown_question_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"no question 'color'; it has \['total'\]"):
        ARTQUANT_SPEC.question("color")


def test_spec_file_round_trips_with_attribute_questions(tmp_path) -> None:
    spec = _spec(
        questions={
            "total": ARTQUANT_SPEC.question(),
            "color": Question(prompt="How is the color?", stem="The color of the painting is"),
        },
        resolution=Resolution(mode="fixed", size=448),
    )
    assert read_spec(tmp_path) is None
    assert spec.save(tmp_path) == tmp_path / SPEC_FILENAME
    assert read_spec(tmp_path) == spec
    (tmp_path / SPEC_FILENAME).write_text('{"name": "x"}')
    with pytest.raises(ValueError, match="is not a valid ArtQuant spec"):
        read_spec(tmp_path)


def test_a_folder_with_only_the_trainers_older_level_spec_is_read(tmp_path, caplog):
    import json
    import logging

    from artquant_model.spec import LEGACY_LEVEL_SPEC_FILENAME, SPEC_FILENAME, read_spec

    document = {
        "name": "artquant",
        "words": ["excellent", "good", "fair", "poor", "bad"],
        "values": [10.0, 7.5, 5.0, 3.5, 1.0],
        "scale": [1.0, 10.0],
        "prompt": "USER: How would you rate the quality of this painting?\n<|image|> ASSISTANT: "
        "The quality of the painting is",
        "questions": [
            {
                "id": "color",
                "name": "Color",
                "question": "How would you rate the color of this painting?",
                "stem": "The color of the painting is",
                "prompt": "USER: <|image|>\nHow would you rate the color of this painting? "
                "ASSISTANT: The color of the painting is",
            }
        ],
    }
    (tmp_path / LEGACY_LEVEL_SPEC_FILENAME).write_text(json.dumps(document))
    with caplog.at_level(logging.INFO, logger="artquant_model.spec"):
        spec = read_spec(tmp_path)
    assert "reading its older level_spec.json" in caplog.text
    assert spec is not None
    assert list(spec.questions) == ["total", "color"]
    assert spec.question().raw_prompt == document["prompt"]
    assert spec.question().stem == "The quality of the painting is"
    assert spec.question("color").raw_prompt == document["questions"][0]["prompt"]
    # artquant_spec.json wins when both are there
    ARTQUANT_SPEC.save(tmp_path)
    assert read_spec(tmp_path) == ARTQUANT_SPEC
    (tmp_path / SPEC_FILENAME).unlink()
    document["questions"][0]["id"] = "Colour!"
    (tmp_path / LEGACY_LEVEL_SPEC_FILENAME).write_text(json.dumps(document))
    message = r"(?s)level_spec.json: not a valid artquant-train level spec: .*'Colour!'"
    with pytest.raises(ValueError, match=message):
        read_spec(tmp_path)
