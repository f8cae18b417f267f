"""The one JSON / JSON Lines parser behind the training-file, description and table readers."""

from __future__ import annotations

from pathlib import Path

import pytest

import artquant_data as aq
from artquant_data._jsonio import parse_json


def test_json_lines_skip_blank_lines_and_name_the_bad_line() -> None:
    assert parse_json("[1, 2]", Path("a.json"), lines=False) == [1, 2]
    assert parse_json("1\n\n  \n[2]\n", Path("a.jsonl"), lines=True) == [1, [2]]
    with pytest.raises(ValueError, match=r"a\.jsonl line 3: invalid JSON"):
        parse_json('{"a": 1}\n\n{"a": \n', Path("a.jsonl"), lines=True)
    with pytest.raises(ValueError, match=r"a\.json: invalid JSON \(.* at line 2\)"):
        parse_json("[1,\n}", Path("a.json"), lines=False)


def test_every_reader_reports_the_bad_line_of_a_jsonl_file(tmp_path: Path) -> None:
    good = '{"image": "a.jpg", "score": 5, "perception": "p", "cognition": "c", "emotion": "e"}'
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\ufeff" + good + "\n{oops\n", encoding="utf-8")
    mapping = aq.ColumnMapping(image="image", score="score")
    for read in (aq.read_training_json, aq.load_descriptions, lambda p: aq.load_table(p, mapping)):
        with pytest.raises(ValueError, match=r"bad\.jsonl line 2: invalid JSON"):
            read(bad)
    # the byte-order mark is dropped before parsing
    bad.write_text("\ufeff" + good + "\n", encoding="utf-8")
    assert list(aq.load_descriptions(bad)) == ["a.jpg"]
    assert [r.score for r in aq.load_table(bad, mapping)] == [5.0]
