"""Loaders on the real label files (skipped without ../shared) and on small synthetic files."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter

import numpy as np
import pytest

import artquant_data as aq


@pytest.fixture(scope="module")
def apddv2(apddv2_dir):
    return aq.load_apddv2(apddv2_dir)


def test_apddv2_split_counts(apddv2):
    assert len(apddv2) == 10023
    assert Counter(r.split for r in apddv2) == {"train": 8019, "val": 1002, "test": 1002}
    assert len({r.image for r in apddv2}) == 10023
    assert all(r.source == "apddv2" and r.scale == (0.0, 10.0) for r in apddv2)


def test_apddv2_split_filter_and_order(apddv2_dir):
    test = aq.load_apddv2(apddv2_dir, splits=["test"])
    assert len(test) == 1002
    assert {r.split for r in test} == {"test"}
    # first row of split_test.csv
    assert test[0].image == "7b023b807dd640aca13b3719ac2923ae.png"
    assert test[0].score == 3.0
    assert len(aq.load_apddv2(apddv2_dir, splits=["valid"])) == 1002


def test_apddv2_scores_match_train_statistics(apddv2):
    train = np.array([r.score for r in apddv2 if r.split == "train"])
    # reference-artquant.md §3.2: train min 1.071, max 9.25, mean 6.43, std 1.53
    assert train.min() == pytest.approx(1.071, abs=1e-3)
    assert train.max() == pytest.approx(9.25, abs=1e-3)
    assert train.mean() == pytest.approx(6.43, abs=0.01)
    assert train.std() == pytest.approx(1.53, abs=0.01)


def test_apddv2_gb18030_decode(apddv2):
    by_name = {r.image: r for r in apddv2}
    comments = [r.comment for r in apddv2 if r.comment]
    assert len(comments) == 4906
    # two comments hold non-ASCII characters that only decode as GB18030
    non_ascii = [c for c in comments if any(ord(ch) > 127 for ch in c)]
    assert len(non_ascii) == 2
    assert any("clich é s" in c for c in non_ascii)
    assert any("6、 The picture" in c for c in non_ascii)
    first = by_name["0000d0cd38984fffb2c04f964edc9c88.png"]
    assert first.category == "traditional Chinese painting*meticulous*mountains and water"
    assert first.comment is not None
    assert first.comment.startswith("The composition of the picture")


def test_apddv2_attribute_gaps_are_none(apddv2):
    by_name = {r.image: r for r in apddv2}
    rec = by_name["0000d0cd38984fffb2c04f964edc9c88.png"]
    assert rec.attributes["Creativity"] is None
    assert rec.attributes["Theme and logic"] == pytest.approx(7.17)
    assert rec.attribute_scale == (0.0, 10.0)
    not_rated = Counter(k for r in apddv2 for k, v in r.attributes.items() if v is None)
    assert not_rated["Creativity"] == 6204
    assert not_rated["Color"] == 3822
    assert not_rated["The overall"] == 0
    assert set(rec.attributes) == set(aq.APDDV2_ATTRIBUTES)
    assert len(rec.rated_attributes()) == 9


def test_apddv2_mixed_extensions_and_categories(apddv2):
    exts = Counter(r.image.rsplit(".", 1)[-1] for r in apddv2)
    assert exts == {"jpg": 7001, "png": 2768, "JPG": 253, "jpeg": 1}
    assert len({r.category for r in apddv2}) == 24


def test_apddv2_wrong_encoding_is_a_clear_error(apddv2_dir):
    with pytest.raises(ValueError, match="not valid utf-8"):
        aq.load_apddv2(apddv2_dir, encoding="utf-8")


def test_apddv2_missing_files(tmp_path, apddv2_dir):
    with pytest.raises(FileNotFoundError, match=re.escape("APDDv2-10023.csv")):
        aq.load_apddv2(tmp_path)
    shutil.copy(apddv2_dir / "APDDv2-10023.csv", tmp_path)
    # without split files: every record, split None, score = total / 10
    records = aq.load_apddv2(tmp_path)
    assert len(records) == 10023
    assert {r.split for r in records} == {None}
    with pytest.raises(FileNotFoundError, match="'test' split file"):
        aq.load_apddv2(tmp_path, splits=["test"])


def test_apddv2_split_scores_must_match_total(tmp_path, apddv2_dir):
    shutil.copy(apddv2_dir / "APDDv2-10023.csv", tmp_path)
    lines = (apddv2_dir / "split_test.csv").read_text().splitlines()
    name = lines[1].split(",")[0]
    (tmp_path / "split_test.csv").write_text(f"{lines[0]}\n{name},x,9.9\n")
    with pytest.raises(ValueError, match="differ from the main CSV"):
        aq.load_apddv2(tmp_path)
    (tmp_path / "split_test.csv").write_text(f"{lines[0]}\nnot-a-file.jpg,x,5\n")
    with pytest.raises(ValueError, match=re.escape("not in APDDv2-10023.csv")):
        aq.load_apddv2(tmp_path)


def test_baid_counts(baid_dir):
    records = aq.load_baid(baid_dir)
    assert Counter(r.split for r in records) == {"train": 50737, "val": 3200, "test": 6400}
    test = np.array([r.score for r in records if r.split == "test"])
    train = np.array([r.score for r in records if r.split == "train"])
    assert test.std() == pytest.approx(0.61, abs=0.01)  # compressed test scores
    assert train.std() == pytest.approx(1.65, abs=0.01)
    assert records[0].image == "24429.jpg"
    assert records[0].score == pytest.approx(4.034603)
    assert len(aq.load_baid(baid_dir, splits=["val"])) == 3200


def test_baid_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape("train_set.csv")):
        aq.load_baid(tmp_path)
    (tmp_path / "train_set.csv").write_text("image,score\na.jpg,11.5\n")
    with pytest.raises(ValueError, match="outside BAID's 0–10"):
        aq.load_baid(tmp_path)
    (tmp_path / "train_set.csv").write_text("image,score\na.jpg,5\na.jpg,6\n")
    with pytest.raises(ValueError, match=re.escape("duplicate image 'a.jpg'")):
        aq.load_baid(tmp_path)
    (tmp_path / "train_set.csv").write_text("img,score\na.jpg,5\n")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['image'\]"):
        aq.load_baid(tmp_path)
    (tmp_path / "train_set.csv").write_text("image,score\na.jpg,5\n")
    with pytest.raises(FileNotFoundError, match=re.escape("test_set.csv")):
        aq.load_baid(tmp_path, splits=["test"])


MAPPING = aq.ColumnMapping(
    image="file",
    score="mos",
    std="sd",
    n_ratings="n",
    votes="hist",
    attributes={"Color": "color"},
    split="set",
    perception="p",
)


def _rows():
    return [
        {"file": "a/1.jpg", "mos": 5.5, "sd": 1.2, "n": 30, "hist": [1, 2, 3], "color": 6,
         "set": "train", "p": "Warm palette."},
        {"file": "2.png", "mos": 3, "sd": 0.5, "n": 10, "hist": [3, 0, 1], "color": None,
         "set": "valid", "p": ""},
    ]  # fmt: skip


def _check(records):
    assert [r.image for r in records] == ["a/1.jpg", "2.png"]
    assert records[0].score == 5.5
    assert records[0].std == 1.2
    assert records[0].n_ratings == 30
    assert records[0].votes == (1, 2, 3)
    assert records[0].attributes == {"Color": 6.0}
    assert records[1].attributes == {"Color": None}
    assert records[1].split == "val"
    assert records[0].description is not None
    assert records[0].description.perception == "Warm palette."
    assert records[1].description is None


def test_generic_json_and_jsonl(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(_rows()))
    _check(aq.load_table(path, MAPPING, scale=(1, 7)))
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in _rows()) + "\n")
    records = aq.load_table(path, MAPPING, scale=(1, 7))
    _check(records)
    assert records[0].source == "mine"
    assert records[0].scale == (1.0, 7.0)


def test_generic_csv(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text(
        "file,mos,sd,n,hist,color,set,p\n"
        'a/1.jpg,5.5,1.2,30,"1 2 3",6,train,Warm palette.\n'
        "2.png,3,0.5,10,3;0;1,,valid,\n".replace(";", " ")
    )
    _check(aq.load_table(path, MAPPING, scale=(1, 7)))


def test_generic_errors(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("file,mos\na.jpg,abc\n")
    with pytest.raises(ValueError, match=r"row 2 column 'mos': not a number"):
        aq.load_table(path, aq.ColumnMapping(image="file", score="mos"))
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['score'\]; available"):
        aq.load_table(path, aq.ColumnMapping(image="file"))
    path.write_text("file,mos\n../a.jpg,5\n")
    with pytest.raises(ValueError, match="escapes the image root"):
        aq.load_table(path, aq.ColumnMapping(image="file", score="mos"))
    path.write_text("file,mos\na.jpg,12\n")
    with pytest.raises(ValueError, match="outside scale"):
        aq.load_table(path, aq.ColumnMapping(image="file", score="mos"))
    bad = tmp_path / "x.xlsx"
    bad.write_text("")
    with pytest.raises(ValueError, match="unsupported extension"):
        aq.load_table(bad)
    with pytest.raises(ValueError, match="extra"):
        aq.ColumnMapping(imagee="x")  # type: ignore[call-arg]
