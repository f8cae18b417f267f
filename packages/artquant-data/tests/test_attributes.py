"""The canonical attribute table, and attribute samples built from APDDv2's real labels."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

import artquant_data as aq

# Non-empty cells per attribute column of APDDv2-10023.csv (10,023 rows): an attribute is left
# empty where it does not apply to a painting's category.
RATED_CELLS = {
    "Theme and logic": 7964,
    "Creativity": 3819,
    "Layout and composition": 10023,
    "Space and perspective": 6204,
    "The sense of order": 7964,
    "Light and shadow": 6204,
    "Color": 6201,
    "Details and texture": 10023,
    "The overall": 10023,
    "Mood": 6736,
}


def test_table_matches_the_csv_header_and_is_column_safe(apddv2_dir: Path) -> None:
    with (apddv2_dir / "APDDv2-10023.csv").open(encoding="gb18030", newline="") as handle:
        header = next(csv.reader(handle))
    columns = [spec.column for spec in aq.APDDV2_ATTRIBUTE_SPECS]
    assert columns == header[3:13]  # filename, category, total, then the ten, in order


def test_table_fields() -> None:
    specs = aq.APDDV2_ATTRIBUTE_SPECS
    assert len(specs) == 10
    assert tuple(s.name for s in specs) == aq.APDDV2_ATTRIBUTES
    assert len({s.id for s in specs}) == 10
    for spec in specs:
        assert spec.id == aq.attribute_id(spec.name)
        assert spec.question == f"How would you rate the {spec.phrase} of this painting?"
        assert spec.stem == f"The {spec.phrase} of the painting is"
        assert spec.question == aq.ATTRIBUTE_PROMPTS[1].format(attribute=spec.phrase)
    by_id = {s.id: s for s in specs}
    assert by_id["light_and_shadow"].stem == "The light and shadow of the painting is"
    assert by_id["color"].question == "How would you rate the color of this painting?"
    assert by_id["the_sense_of_order"].stem == "The sense of order of the painting is"
    assert by_id["the_overall"].stem == "The overall effect of the painting is"
    assert {s.name: s.phrase for s in specs} == aq.ATTRIBUTE_PHRASES


@pytest.mark.parametrize("key", ["Light and shadow", "light and shadow", "light_and_shadow"])
def test_find_attribute_by_name_id_or_column(key: str) -> None:
    assert aq.find_attribute(key).id == "light_and_shadow"


def test_unknown_attributes() -> None:
    with pytest.raises(KeyError, match=r"unknown attribute 'brushwork'.*light_and_shadow"):
        aq.find_attribute("brushwork")
    spec = aq.attribute_spec("Brush work")  # outside the table: the same templates
    assert (spec.id, spec.column, spec.question, spec.stem) == (
        "brush_work",
        "Brush work",
        "How would you rate the brush work of this painting?",
        "The brush work of the painting is",
    )
    with pytest.raises(ValueError, match="no letter or digit"):
        aq.attribute_id(" & ")
    with pytest.raises(ValidationError, match="not column-safe"):
        aq.AttributeSpec(name="x", id="Bad Id", column="x", phrase="x", question="q", stem="s")
    with pytest.raises(ValidationError, match="whitespace"):
        aq.AttributeSpec(name="x", id="x", column="x", phrase="x", question="q", stem="s ")


def test_attribute_samples_from_the_real_labels(apddv2_dir: Path) -> None:
    """Every non-empty cell gives one sample, on its own 0-10 scale; no empty cell becomes 0."""
    with (apddv2_dir / "APDDv2-10023.csv").open(encoding="gb18030", newline="") as handle:
        rows = list(csv.DictReader(handle))
    cells = {
        (row["filename"], name): float(row[name])
        for row in rows
        for name in aq.APDDV2_ATTRIBUTES
        if row[name].strip()
    }
    assert Counter(name for _, name in cells) == RATED_CELLS

    records = aq.load_apddv2(apddv2_dir)
    assert len(records) == 10023
    samples = aq.build_attribute_samples(records, seed=0)
    assert Counter(s.attribute for s in samples) == RATED_CELLS
    got = {(s.image, s.attribute): s.gt_score for s in samples}
    assert got == cells  # verbatim: attributes are 0-10 already (the total is 0-100)
    assert min(v for v in got.values() if v is not None) > 1.0  # no empty cell read as 0

    scores = np.array([s.gt_score for s in samples])
    probs = np.array([s.level_probs for s in samples])
    np.testing.assert_array_equal(probs, aq.estimate_level_distribution(scores))
    np.testing.assert_allclose(aq.expected_score(probs), np.clip(scores, 1.0, 10.0), atol=1e-4)

    specs = {s.name: s for s in aq.APDDV2_ATTRIBUTE_SPECS}
    for sample in samples[:200]:
        spec = specs[sample.attribute]
        # picture first, then one of the question variants, then the stem and a level word
        assert sample.prompt.startswith(f"{aq.IMAGE_TOKEN}\n")
        assert spec.phrase in sample.prompt
        level = aq.hard_level(sample.gt_score)
        assert sample.answer == f"{spec.stem} {level}."
