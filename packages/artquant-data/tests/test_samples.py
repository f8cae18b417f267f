"""Sample builders: prompts, answers, targets, determinism."""

from __future__ import annotations

import numpy as np
import pytest

import artquant_data as aq

RECORDS = [
    aq.ArtRecord(
        image=f"{i}.jpg", score=s, source="t", std=1.0, votes=(0, 1, 2, 1, 0, 0, 0, 0, 0, 0)
    )
    for i, s in enumerate([1.833, 4.0, 5.5, 6.5, 7.5, 8.5, 9.5, 7.51])
]


def test_score_samples_follow_the_original():
    samples = aq.build_score_samples(RECORDS, seed=3)
    assert len(samples) == len(RECORDS)
    for rec, s in zip(RECORDS, samples, strict=True):
        assert s.id == f"{rec.image}->{rec.score}"
        assert s.image == rec.image
        assert s.task_type == "score"
        assert s.gt_score == rec.score
        prompt, image = s.prompt.split("\n")
        assert prompt in aq.SCORE_PROMPTS
        assert image == "<|image|>"
        assert s.answer == f"The quality of the painting is {aq.hard_level(rec.score)}."
        np.testing.assert_allclose(s.level_probs, aq.estimate_level_distribution(rec.score))
    assert samples[0].id == "0.jpg->1.833"
    assert samples[4].answer == "The quality of the painting is good."  # 7.5
    assert samples[-1].answer == "The quality of the painting is excellent."  # 7.51
    assert len(aq.SCORE_PROMPTS) == 10


def test_seeded_and_deterministic():
    a = aq.build_score_samples(RECORDS * 5, seed=7)
    b = aq.build_score_samples(RECORDS * 5, seed=7)
    c = aq.build_score_samples(RECORDS * 5, seed=8)
    assert a == b
    assert [s.prompt for s in a] != [s.prompt for s in c]


def test_alternative_distributions_and_target_scale():
    rec = aq.ArtRecord(image="x.jpg", score=5.0, scale=(1, 7), std=0.9, votes=(0, 0, 1, 2, 1, 0, 0))
    s = aq.build_score_samples([rec], distribution="mean_std")[0]
    assert s.gt_score == pytest.approx(20 / 3)
    assert sum(s.level_probs) == pytest.approx(1.0, abs=1e-12)
    # equals level_distribution_from_mean_std on the 0–10 scale (std 0.9 on 1–7 -> 1.5)
    np.testing.assert_allclose(
        s.level_probs, aq.level_distribution_from_mean_std(20 / 3, 1.5), atol=1e-12
    )
    assert aq.expected_score(s.level_probs) == pytest.approx(20 / 3, abs=0.1)
    h = aq.build_score_samples([rec], distribution="histogram")[0]
    # votes at 3, 4, 5 on 1..7 -> mean 4 -> 5 on 0..10
    assert aq.expected_score(h.level_probs) == pytest.approx(5.0, abs=1e-9)
    with pytest.raises(ValueError, match="needs a std"):
        aq.build_score_samples([aq.ArtRecord(image="y.jpg", score=5)], distribution="mean_std")
    with pytest.raises(ValueError, match="needs votes"):
        aq.build_score_samples([aq.ArtRecord(image="y.jpg", score=5)], distribution="histogram")


def test_attribute_samples():
    rec = aq.ArtRecord(
        image="p.png",
        score=6.0,
        attributes={"Color": 8.0, "Creativity": None, "The sense of order": 4.0},
        attribute_scale=(0, 10),
        source="apddv2",
    )
    samples = aq.build_attribute_samples([rec], seed=0)
    assert [s.attribute for s in samples] == ["Color", "The sense of order"]
    assert samples[0].answer == "The color of the painting is excellent."
    assert samples[1].answer == "The sense of order of the painting is fair."
    assert "color of this painting" in samples[0].prompt
    assert samples[0].prompt.startswith("<|image|>\n")  # the picture, then the question
    assert all(s.task_type == "attribute" for s in samples)
    np.testing.assert_allclose(samples[0].level_probs, aq.estimate_level_distribution(8.0))
    only = aq.build_attribute_samples([rec], attributes=["The sense of order"])
    assert [s.attribute for s in only] == ["The sense of order"]
    fixed = aq.build_attribute_samples(
        [rec], prompts=["Judge the {attribute}."], phrases={"Color": "colour"}
    )
    assert [s.prompt for s in fixed] == [
        "<|image|>\nJudge the colour.",
        "<|image|>\nJudge the sense of order.",
    ]
    assert fixed[0].answer == "The colour of the painting is excellent."
    with pytest.raises(ValueError, match="prompts must not be empty"):
        aq.build_attribute_samples([rec], prompts=[])
    # every APDDv2 attribute has a phrase, and the phrase reads in the prompt
    assert set(aq.ATTRIBUTE_PHRASES) == set(aq.APDDV2_ATTRIBUTES)
    assert aq.ATTRIBUTE_PROMPTS[1].format(attribute="color") == (
        "How would you rate the color of this painting?"
    )


def test_description_samples():
    recs = [
        aq.ArtRecord(
            image="a.jpg", score=5, description=aq.HierarchicalDescription(perception="P")
        ),
        aq.ArtRecord(image="b.jpg", score=5),
    ]
    samples = aq.build_description_samples(recs, seed=1)
    assert len(samples) == 1
    assert samples[0].task_type == "description"
    assert samples[0].answer == "P"
    assert samples[0].prompt.split("\n")[0] in aq.DESCRIPTION_PROMPTS
    assert samples[0].level_probs is None
    assert samples[0].gt_score is None
    with pytest.raises(ValueError, match="prompts must not be empty"):
        aq.build_description_samples(recs, prompts=())


def test_attach_descriptions(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(
        '[{"image": "imgs/a.jpg", "perception": "Pa", "cognition": "Ca"},'
        ' {"id": "b", "description": "Db"}, {"image": "zzz.jpg", "perception": "unused"}]'
    )
    descriptions = aq.load_descriptions(path)
    recs = [aq.ArtRecord(image="a.jpg", score=5), aq.ArtRecord(image="b.png", score=5),
            aq.ArtRecord(image="c.jpg", score=5)]  # fmt: skip
    out = aq.attach_descriptions(recs, descriptions)
    assert out[0].description == aq.HierarchicalDescription(perception="Pa", cognition="Ca")
    assert out[1].description == aq.HierarchicalDescription(perception="Db")
    assert out[2].description is None
    assert recs[0].description is None
    (tmp_path / "bad.json").write_text('[{"perception": "x"}]')
    with pytest.raises(ValueError, match="no 'image' or 'id'"):
        aq.load_descriptions(tmp_path / "bad.json")
    (tmp_path / "bad2.json").write_text('{"a": 3}')
    with pytest.raises(ValueError, match="expected a text"):
        aq.load_descriptions(tmp_path / "bad2.json")
