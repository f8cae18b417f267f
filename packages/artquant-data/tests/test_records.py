"""Record validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

import artquant_data as aq


def test_record_basics():
    rec = aq.ArtRecord(image="dir\\x.JPG", score=7.0, scale=(1, 7), std=0.6, source="s")
    assert rec.image == "dir/x.JPG"
    assert rec.image_id == "x"
    assert rec.normalised_score == 1.0
    assert rec.score_on(0, 10) == 10.0
    assert rec.std_on(0, 12) == pytest.approx(1.2)
    # the own scale returns the score verbatim (1.833 / 10 * 10 is not 1.833 in floating point)
    apdd = aq.ArtRecord(image="x.jpg", score=1.833, scale=(0, 10))
    assert apdd.score_on(0, 10) == 1.833
    assert aq.build_score_samples([apdd])[0].id == "x.jpg->1.833"
    with pytest.raises(ValidationError):
        rec.score = 3.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image": "/abs/x.jpg"}, "relative"),
        ({"image": "C:/x.jpg"}, "relative"),
        ({"image": "a/../../x.jpg"}, r"\.\."),
        ({"image": " "}, "empty"),
        ({"score": 11.0}, "outside scale"),
        ({"score": float("nan")}, "finite"),
        ({"scale": (5, 1)}, "low < high"),
        ({"std": -1.0}, "std"),
        ({"votes": (1, -2)}, "non-negative"),
        ({"split": "holdout"}, "unknown split"),
        ({"attributes": {"Color": float("inf")}}, "not finite"),
        ({"colour": 1}, "Extra inputs"),
    ],
)
def test_record_errors(kwargs, message):
    fields = {"image": "x.jpg", "score": 5.0, **kwargs}
    with pytest.raises(ValidationError, match=message):
        aq.ArtRecord(**fields)


def test_description_levels():
    d = aq.HierarchicalDescription(perception="P.", cognition="C.", emotion="E.")
    assert d.depth == 3
    assert d.as_text() == "P.\n\nC.\n\nE."
    assert aq.HierarchicalDescription(perception="P.").depth == 1
    with pytest.raises(ValidationError, match="must not be empty"):
        aq.HierarchicalDescription(perception="  ")


def test_normalise_split():
    assert aq.normalise_split("Validation") == "val"
    with pytest.raises(ValueError, match="allowed"):
        aq.normalise_split("dev-2")
