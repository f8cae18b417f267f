"""Per-attribute evaluation: ``score_<attribute>`` columns against attribute labels."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from artquant_eval import (
    APDDV2_ATTRIBUTE_COLUMNS,
    DataFileError,
    attribute_id,
    attribute_plot,
    evaluate,
    evaluate_attributes,
    read_records,
    resolve_attributes,
)
from artquant_eval.cli import main

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
# Non-empty cells per attribute of APDDv2-10023.csv (10,023 rows).
RATED_CELLS = {
    "theme_and_logic": 7964,
    "creativity": 3819,
    "layout_and_composition": 10023,
    "space_and_perspective": 6204,
    "the_sense_of_order": 7964,
    "light_and_shadow": 6204,
    "color": 6201,
    "details_and_texture": 10023,
    "the_overall": 10023,
    "mood": 6736,
}


def _scipy(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    return {
        "srcc": stats.spearmanr(pred, target).statistic,
        "plcc": stats.pearsonr(pred, target).statistic,
        "krcc": stats.kendalltau(pred, target).statistic,
    }


@pytest.fixture
def synthetic() -> tuple[list[dict[str, object]], list[dict[str, str]]]:
    """60 labelled paintings; Color empty on every 4th, one failed prediction, ties included."""
    rng = np.random.default_rng(5)
    labels, preds = [], []
    for i in range(60):
        color = round(float(rng.uniform(1, 10)), 1)
        light = round(float(rng.uniform(1, 10)), 1)
        labels.append(
            {"filename": f"p{i:02d}.png", "Color": "" if i % 4 == 0 else str(color),
             "Light and shadow": str(light)}
        )  # fmt: skip
        preds.append(
            {"image": f"/run/imgs/p{i:02d}.png",
             "score_color": "" if i == 7 else f"{color + rng.normal(0, 1.5):.2f}",
             "score_light_and_shadow": f"{round(light + rng.normal(0, 2.0)):.1f}"}
        )  # fmt: skip
    preds.append(
        {"image": "/run/imgs/extra.png", "score_color": "5", "score_light_and_shadow": "5"}
    )
    labels.append({"filename": "unscored.png", "Color": "3", "Light and shadow": "4"})
    return preds, labels


def test_against_scipy_with_skips(synthetic) -> None:
    preds, labels = synthetic
    result = evaluate_attributes(preds, labels, "color,light_and_shadow", bootstrap=200, seed=3)
    assert result.missing == ("unscored.png",)
    assert result.extra == ("extra.png",)
    color, light = result.attributes["color"], result.attributes["light_and_shadow"]
    assert (color.skipped_no_label, color.skipped_no_prediction, color.n) == (15, 1, 44)
    assert (light.skipped_no_label, light.skipped_no_prediction, light.n) == (0, 0, 60)
    for ident, column in (("color", "Color"), ("light_and_shadow", "Light and shadow")):
        kept = [
            (float(p[f"score_{ident}"]), float(t[column]))
            for p, t in zip(preds[:60], labels[:60], strict=True)
            if t[column] and p[f"score_{ident}"]
        ]
        pred, target = np.array(kept).T
        report = result.attributes[ident].report
        assert report is not None
        for name, value in _scipy(pred, target).items():
            assert getattr(report, name) == pytest.approx(value, abs=1e-12), (ident, name)
            ci = report.intervals[name]
            assert ci.low <= value <= ci.high
        # the intervals are evaluate()'s own, with the same seed
        again = evaluate(pred, target, bootstrap=200, seed=3, fit=None)
        assert report.intervals["srcc"] == again.intervals["srcc"]
    for name in ("srcc", "plcc", "krcc"):
        expected = np.mean([getattr(r.report, name) for r in result.attributes.values()])
        assert result.mean[name] == pytest.approx(expected, abs=1e-15)
    table = result.to_table()
    assert table.splitlines()[0].split() == [
        "attribute", "n", "no", "label", "no", "pred", "SRCC", "PLCC", "KRCC"
    ]  # fmt: skip
    assert table.splitlines()[1].split()[:4] == ["color", "44", "15", "1"]
    document = json.loads(result.to_json())
    assert document["attributes"]["color"]["skipped_no_label"] == 15
    assert document["attributes"]["color"]["report"]["n"] == 44


def test_too_few_pairs_is_reported_not_raised() -> None:
    preds = [{"image": f"{i}.png", "score_mood": i} for i in range(4)]
    labels = [{"filename": f"{i}.png", "Mood": "5" if i < 2 else ""} for i in range(4)]
    result = evaluate_attributes(preds, labels, ["Mood"], bootstrap=0)
    mood = result.attributes["mood"]
    assert mood.report is None
    assert (mood.n, mood.skipped_no_label) == (0, 2)
    assert "at least 3" in (mood.reason or "")
    assert result.mean == {}
    assert "mood: not evaluated" in result.to_table()


def test_resolve_attributes() -> None:
    assert resolve_attributes(None) == APDDV2_ATTRIBUTE_COLUMNS
    assert list(resolve_attributes("all")) == list(RATED_CELLS)
    assert resolve_attributes(["The overall", "light_and_shadow"]) == {
        "the_overall": "The overall",
        "light_and_shadow": "Light and shadow",
    }
    assert resolve_attributes({"brush": "Brushwork"}) == {"brush": "Brushwork"}
    with pytest.raises(ValueError, match=r"unknown attribute 'brushwork'.*ID=COLUMN"):
        resolve_attributes("brushwork")
    with pytest.raises(ValueError, match="asked for twice"):
        resolve_attributes("color,Color")
    with pytest.raises(ValueError, match="not column-safe; use 'brush_work'"):
        resolve_attributes("Brush Work=Brushwork")
    with pytest.raises(ValueError, match="no attribute"):
        resolve_attributes(" , ")
    assert [attribute_id(c) for c in APDDV2_ATTRIBUTE_COLUMNS.values()] == list(RATED_CELLS)


def test_missing_columns_are_named(synthetic) -> None:
    preds, labels = synthetic
    with pytest.raises(DataFileError, match=r"no column 'score_mood'.*\['score_color'"):
        evaluate_attributes(preds, labels, "mood", bootstrap=0)
    renamed = [{**p, "score_mood": "1"} for p in preds]
    with pytest.raises(DataFileError, match="label file has no column 'Mood'"):
        evaluate_attributes(renamed, labels, "mood", bootstrap=0)
    with pytest.raises(DataFileError, match="no id is shared"):
        evaluate_attributes(preds, labels, "color", match="exact", bootstrap=0)


def _apddv2_predictions(path: Path, rows: list[dict[str, str]]) -> Path:
    """A scores file like `artquant score --attributes all` writes: label + noise, one error row."""
    rng = np.random.default_rng(0)
    ids = list(APDDV2_ATTRIBUTE_COLUMNS)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "score", *(f"score_{i}" for i in ids), "error"])
        for n, row in enumerate(rows):
            if n == 0:
                writer.writerow([f"imgs/{row['filename']}", "", *([""] * len(ids)), "unreadable"])
                continue
            cells = []
            for column in APDDV2_ATTRIBUTE_COLUMNS.values():
                # a prediction for every attribute, even where the label is empty
                base = float(row[column]) if row[column].strip() else 5.0
                cells.append(f"{base + rng.normal(0, 0.8):.4f}")
            writer.writerow([f"imgs/{row['filename']}", "6.0", *cells, ""])
    return path


def test_real_label_file(apddv2_labels_csv: Path, tmp_path: Path) -> None:
    labels = read_records(apddv2_labels_csv, encoding="gb18030")
    assert len(labels) == 10023
    pred_file = _apddv2_predictions(tmp_path / "scores.csv", labels)
    result = evaluate_attributes(read_records(pred_file), labels, "all", bootstrap=0)
    first = labels[0]  # its prediction row is an error row
    preds = {row["image"].split("/")[-1]: row for row in read_records(pred_file)}
    for ident, column in APDDV2_ATTRIBUTE_COLUMNS.items():
        r = result.attributes[ident]
        first_rated = bool(first[column].strip())
        assert r.skipped_no_label == 10023 - RATED_CELLS[ident], ident
        assert r.skipped_no_prediction == int(first_rated)
        assert r.n == RATED_CELLS[ident] - int(first_rated)
        kept = [
            (float(preds[t["filename"]][f"score_{ident}"]), float(t[column]))
            for t in labels[1:]
            if t[column].strip()
        ]
        pred, target = np.array(kept).T
        assert r.report is not None
        assert r.report.srcc == pytest.approx(stats.spearmanr(pred, target).statistic, abs=1e-12)
        assert r.report.plcc == pytest.approx(stats.pearsonr(pred, target).statistic, abs=1e-12)


def test_cli_attributes_on_the_real_labels(apddv2_labels_csv: Path, tmp_path: Path, capsys) -> None:
    labels = read_records(apddv2_labels_csv, encoding="gb18030")[:300]
    pred_file = _apddv2_predictions(tmp_path / "scores.csv", labels)
    out_json, out_png = tmp_path / "attrs.json", tmp_path / "attrs.png"
    code = main(
        ["--pred", str(pred_file), "--target", str(apddv2_labels_csv),
         "--target-encoding", "gb18030", "--attributes", "all", "--bootstrap", "30",
         "--json", str(out_json)] + (["--plot", str(out_png)] if HAS_MATPLOTLIB else [])
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "missing predictions (target ids without a prediction): 9723" in captured.out
    rated_creativity = sum(1 for row in labels if row["Creativity"].strip())
    skipped = 300 - rated_creativity
    first_rated = int(bool(labels[0]["Creativity"].strip()))
    assert (
        f"creativity: {rated_creativity - first_rated} evaluated, {skipped} skipped for an empty "
        f"label ('Creativity'), {first_rated} for an empty prediction ('score_creativity')"
    ) in captured.out
    document = json.loads(out_json.read_text())
    assert set(document["attributes"]) == set(RATED_CELLS)
    assert document["attributes"]["creativity"]["skipped_no_label"] == skipped
    assert document["match"] == "basename"
    if HAS_MATPLOTLIB:
        assert out_png.stat().st_size > 10_000
    # an attribute the scores file lacks is a usage error naming it
    code = main(["--pred", str(pred_file), "--target", str(apddv2_labels_csv),
                 "--target-encoding", "gb18030", "--attributes", "color,brushwork"])  # fmt: skip
    assert code == 2
    assert "unknown attribute 'brushwork'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["--pred", str(pred_file), "--target", str(apddv2_labels_csv),
              "--attributes", "color", "--group-key", "x"])  # fmt: skip
    assert exited.value.code == 2
    assert "--group-key cannot be combined with --attributes" in capsys.readouterr().err


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib (the plot extra) is not installed")
def test_attribute_plot(synthetic, tmp_path: Path) -> None:
    preds, labels = synthetic
    result = evaluate_attributes(preds, labels, "color,light_and_shadow", bootstrap=50)
    figure = attribute_plot(result, path=tmp_path / "a.svg", title="t")
    ax = figure.axes[0]
    rows = dict(zip(ax.get_yticks(), (t.get_text() for t in ax.get_yticklabels()), strict=True))
    assert rows == {  # the first attribute on top
        1: "color (n=44, 15 unlabelled)",
        0: "light_and_shadow (n=60, 0 unlabelled)",
    }
    assert ax.get_title() == "t"
    assert (tmp_path / "a.svg").stat().st_size > 5_000
