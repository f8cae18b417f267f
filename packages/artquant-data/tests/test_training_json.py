"""Training JSON: the original ArtQuant / DeQA-Score format and ours, read and written."""

from __future__ import annotations

import json

import pytest

import artquant_data as aq

# Structure of the original files: the notebook's score samples (json.dumps(list, indent=4)),
# a description sample as SingleDataset reads it, and a DeQA-Score sample with its extra keys.
ORIGINAL = [
    {
        "id": "422028f2a0ed4cc2b24b6c21371dd3b7.png->1.833",
        "image": "422028f2a0ed4cc2b24b6c21371dd3b7.png",
        "gt_score": 1.833,
        "level_probs": [0.0, 0.0, 0.0020, 0.2163, 0.7817],
        "conversations": [
            {"from": "human", "value": "Rate the quality of this painting.\n<|image|>"},
            {"from": "gpt", "value": "The quality of the painting is poor."},
        ],
    },
    {
        "id": "422028f2a0ed4cc2b24b6c21371dd3b7.png",
        "image": "422028f2a0ed4cc2b24b6c21371dd3b7.png",
        "task_type": "description",
        "conversations": [
            {"from": "human", "value": "Describe this painting.\n<|image|>"},
            {"from": "gpt", "value": "Perception: muted caf\u00e9 tones. Cognition: ..."},
        ],
    },
    {
        "id": "10004.jpg->3.2",
        "image": "koniq/10004.jpg",
        "gt_score": 3.2,
        "gt_score_norm": 3.1,
        "level_probs_org": [0.1, 0.2, 0.3, 0.2, 0.1],
        "level_probs": [0.05, 0.25, 0.4, 0.25, 0.05],
        "std": 0.7,
        "std_norm": 0.6,
        "conversations": [
            {"from": "human", "value": "Rate the quality of this image.\n<|image|>"},
            {"from": "gpt", "value": "The quality of the image is fair."},
        ],
    },
]


def test_original_round_trip_is_byte_identical(tmp_path):
    src = tmp_path / "apdd_score.json"
    src.write_text(json.dumps(ORIGINAL, indent=4))
    samples = aq.read_training_json(src)
    assert [s.task_type for s in samples] == ["score", "description", "score"]
    assert samples[0].gt_score == 1.833
    assert samples[0].level_probs == (0.0, 0.0, 0.0020, 0.2163, 0.7817)
    assert samples[0].answer == "The quality of the painting is poor."
    assert samples[0].conversations[0].from_ == "human"
    assert samples[2].extra["std"] == 0.7
    out = aq.write_training_json(samples, tmp_path / "out.json", format="original")
    assert out.read_bytes() == src.read_bytes()


def test_our_format_round_trip(tmp_path):
    rec = aq.ArtRecord(
        image="x.jpg", score=6.5, attributes={"Color": 8.0}, attribute_scale=(0, 10), source="d"
    )
    samples = aq.build_score_samples([rec]) + aq.build_attribute_samples([rec])
    path = aq.write_training_json(samples, tmp_path / "ours.json")
    data = json.loads(path.read_text())
    assert data[0]["task_type"] == "score"
    assert data[0]["source"] == "d"
    assert data[1]["task_type"] == "attribute"
    assert data[1]["attribute"] == "Color"
    assert aq.read_training_json(path) == samples
    # JSON Lines are read too
    jsonl = tmp_path / "ours.jsonl"
    jsonl.write_text("\n".join(json.dumps(d) for d in data))
    assert aq.read_training_json(jsonl) == samples


def test_ours_to_original_keeps_what_the_original_reads(tmp_path):
    rec = aq.ArtRecord(
        image="x.jpg",
        score=6.5,
        source="d",
        description=aq.HierarchicalDescription(perception="P.", cognition="C."),
    )
    samples = aq.build_score_samples([rec]) + aq.build_description_samples([rec])
    path = aq.write_training_json(samples, tmp_path / "orig.json", format="original")
    data = json.loads(path.read_text())
    assert list(data[0]) == ["id", "image", "gt_score", "level_probs", "conversations"]
    assert list(data[1]) == ["id", "image", "task_type", "conversations"]
    assert data[1]["task_type"] == "description"
    assert data[1]["conversations"][1]["value"] == "P.\n\nC."
    back = aq.read_training_json(path)
    assert back[0].level_probs == samples[0].level_probs
    assert back[0].source is None  # the original format has no source key


def test_original_format_refuses_what_the_original_cannot_train(tmp_path):
    rec = aq.ArtRecord(image="x.jpg", score=6.5, attributes={"Mood": 5.0}, attribute_scale=(0, 10))
    attr = aq.build_attribute_samples([rec])
    with pytest.raises(ValueError, match="attribute samples cannot be written in the original"):
        aq.write_training_json(attr, tmp_path / "a.json", format="original")
    assert not (tmp_path / "a.json").exists()
    bare = aq.TrainingSample.from_json(
        {"id": "1", "image": "x.jpg", "conversations": ORIGINAL[0]["conversations"]}
    )
    with pytest.raises(ValueError, match="needs gt_score and level_probs"):
        aq.write_training_json([bare], tmp_path / "b.json", format="original")
    with pytest.raises(ValueError, match="format must be"):
        aq.write_training_json([bare], tmp_path / "b.json", format="deqa")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("[{", "invalid JSON"),
        ('[{"id": "a"}]', "sample 0 \\(id 'a'\\): missing key\\(s\\) \\['conversations'\\]"),
        (
            '[{"id": "a", "conversations": [{"from": "gpt", "value": "x"},'
            ' {"from": "gpt", "value": "y"}]}]',
            "start with a human turn",
        ),
        (
            '[{"id": "a", "conversations": [{"from": "user", "value": "x"},'
            ' {"from": "gpt", "value": "y"}]}]',
            "human",
        ),
        ('[{"id": "a", "task_type": "rank", "conversations": []}]', "sample 0"),
    ],
)
def test_read_errors(tmp_path, payload, message):
    path = tmp_path / "bad.json"
    path.write_text(payload)
    with pytest.raises(ValueError, match=message):
        aq.read_training_json(path)


def test_read_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="training file not found"):
        aq.read_training_json(tmp_path / "nope.json")
