"""The real APDDv2 test split: an attribute score evaluated against the total ``Score``."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from artquant_eval import DataFileError, evaluate, join_by_id, read_records
from artquant_eval.cli import main

CATEGORY = "Artistic Categories"


def _column(rows: list[dict[str, str]], key: str) -> np.ndarray:
    """Floats, with NaN where APDDv2 leaves an attribute empty (not rated for this category)."""
    return np.array([float(r[key]) if r[key].strip() else np.nan for r in rows])


@pytest.fixture(scope="module")
def rows(apddv2_test_csv: Path) -> list[dict[str, str]]:
    with apddv2_test_csv.open(encoding="utf-8-sig", newline="") as handle:
        data = list(csv.DictReader(handle))
    assert len(data) == 1002  # the official test split
    return data


def _scipy_reference(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    return {
        "srcc": stats.spearmanr(pred, target).statistic,
        "plcc": stats.pearsonr(pred, target).statistic,
        "krcc": stats.kendalltau(pred, target).statistic,
        "rmse": float(np.sqrt(np.mean((pred - target) ** 2))),
        "mae": float(np.mean(np.abs(pred - target))),
    }


def test_overall_attribute_against_score(rows) -> None:
    # "The overall" is rated 1-5 for every painting; Score is on 0-10.
    pred, target = _column(rows, "The overall"), _column(rows, "Score")
    assert np.isfinite(pred).all()
    report = evaluate(pred, target, threshold=5.0, fit="logistic4")
    assert report.n == 1002
    for name, value in _scipy_reference(pred, target).items():
        assert getattr(report, name) == pytest.approx(value, abs=1e-12), name
    assert report.srcc > 0.8  # the overall impression tracks the total score
    assert report.plcc_fitted is not None
    assert report.plcc_fitted >= report.plcc - 1e-9  # plcc(f(x), y) with f fitted by LS


def test_attribute_with_empty_cells_grouped_by_category(rows) -> None:
    # "Creativity" is empty for most paintings: nan_policy="omit" drops them and counts them.
    pred, target = _column(rows, "Creativity"), _column(rows, "Score")
    categories = np.array([r[CATEGORY].split("*")[0] for r in rows])
    report = evaluate(pred, target, groups=categories, nan_policy="omit", fit=None)
    rated = np.isfinite(pred)
    assert report.n_dropped == int((~rated).sum()) > 0
    assert report.n == int(rated.sum())
    for name, value in _scipy_reference(pred[rated], target[rated]).items():
        assert getattr(report, name) == pytest.approx(value, abs=1e-12), name
    assert set(report.groups) == set(categories[rated])
    for label, group in report.groups.items():
        mask = rated & (categories == label)
        assert group.n == int(mask.sum())
        for name, value in _scipy_reference(pred[mask], target[mask]).items():
            assert getattr(group, name) == pytest.approx(value, abs=1e-12), (label, name)


def test_full_category_groups_and_bootstrap(rows) -> None:
    pred, target = _column(rows, "Layout and composition"), _column(rows, "Score")
    labels = np.array([r[CATEGORY] for r in rows])
    report = evaluate(pred, target, groups=labels, fit=None, bootstrap=100, seed=0)
    assert len(report.groups) == len(set(labels)) == 24
    for label, group in report.groups.items():
        mask = labels == label
        assert group.srcc == pytest.approx(
            stats.spearmanr(pred[mask], target[mask]).statistic, abs=1e-12
        )
        assert group.intervals["srcc"].low <= group.srcc <= group.intervals["srcc"].high
    assert evaluate(pred, target, fit=None, bootstrap=100, seed=0).intervals == report.intervals


def test_cli_on_the_real_split(apddv2_test_csv: Path, tmp_path: Path, capsys) -> None:
    """Predictions written as JSONL under other file names, joined by stem to the CSV."""
    rows = read_records(apddv2_test_csv)
    lines = [
        json.dumps(
            {
                "path": f"/images/{Path(r['filename']).stem}.webp",
                "score": 2 * float(r["The overall"]),
            }
        )
        for r in rows[::-1]
    ]
    pred = tmp_path / "pred.jsonl"
    pred.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code = main(
        [
            "--pred", str(pred), "--target", str(apddv2_test_csv), "--id-key", "path",
            "--target-id-key", "filename", "--target-key", "Score", "--match", "stem",
            "--fit", "none", "--quiet",
        ]
    )  # fmt: skip
    assert code == 0
    joined = join_by_id(
        read_records(pred), rows, pred_id_key="path", target_id_key="filename",
        target_key="Score", match="stem",
    )  # fmt: skip
    expected = stats.spearmanr(joined.pred, joined.target).statistic
    assert re.search(rf"^SRCC +{expected:.4f}$", capsys.readouterr().out, re.MULTILINE)


def test_main_csv_needs_its_gb18030_encoding(apddv2_test_csv: Path) -> None:
    main_csv = apddv2_test_csv.parent / "APDDv2-10023.csv"
    if not main_csv.is_file():
        pytest.skip(f"{main_csv} is absent")
    with pytest.raises(DataFileError, match="cannot read it as utf-8-sig text"):
        read_records(main_csv)
    rows = read_records(main_csv, encoding="gb18030")
    assert len(rows) == 10023
    assert {"filename", "Total aesthetic score", "Language Comment"} <= set(rows[0])
