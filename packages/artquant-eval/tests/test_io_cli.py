"""File reading, the join by id, and the artquant-eval command line end to end."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from artquant_eval import DataFileError, EvalReport, join_by_id, read_records, srcc
from artquant_eval.cli import main

N = 40
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def _scores(seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = [f"img_{i:03d}.jpg" for i in range(N)]
    target = np.round(rng.uniform(1, 10, N), 3)
    pred = target + rng.normal(0, 1.0, N)
    return ids, pred, target


def _write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, object]:
    """Targets for img_000..img_039; predictions for img_001..img_039 plus one unknown id,
    shuffled, so that joining by order would be wrong."""
    ids, pred, target = _scores()
    order = np.random.default_rng(1).permutation(N)
    pred_rows = [{"image": f"/data/run/{ids[i]}", "score": float(pred[i])} for i in order if i != 0]
    pred_rows.insert(5, {"image": "/data/run/not_in_targets.jpg", "score": 5.0})
    targets = [
        {"filename": ids[i], "Score": float(target[i]), "category": "oil" if i % 2 else "sketch"}
        for i in range(N)
    ]
    jsonl = tmp_path / "pred.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in pred_rows), encoding="utf-8")
    return {
        "pred_jsonl": jsonl,
        "pred_csv": _write_csv(tmp_path / "pred.csv", pred_rows),
        "pred_json": _write_json(tmp_path / "pred.json", pred_rows),
        "target_csv": _write_csv(tmp_path / "target.csv", targets),
        "pred": pred[1:],
        "target": target[1:],
    }


def _write_json(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def test_read_records_formats(files) -> None:
    for key in ("pred_jsonl", "pred_csv", "pred_json"):
        rows = read_records(files[key])
        assert len(rows) == N
        assert float(rows[0]["score"]) == pytest.approx(
            float(read_records(files["pred_csv"])[0]["score"])
        )


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a.txt", "x", "cannot tell the format from the suffix '.txt'"),
        ("a.json", "{", "invalid JSON"),
        ("a.json", '{"image": "a"}', "must hold a list of objects"),
        ("a.jsonl", '{"a": 1}\n[1]\n', r"a.jsonl:2: each line must be a JSON object"),
        ("a.csv", "", "the file is empty"),
    ],
)
def test_read_records_errors(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataFileError, match=message):
        read_records(path)


def test_read_records_keeps_line_breaks_inside_quoted_cells(tmp_path: Path) -> None:
    path = tmp_path / "comments.csv"
    path.write_text('image,score,comment\na.png,3,"dark,\nmoody"\nb.png,4,fine\n', encoding="utf-8")
    rows = read_records(path)
    assert [r["image"] for r in rows] == ["a.png", "b.png"]
    assert rows[0]["comment"] == "dark,\nmoody"


def test_read_records_tsv_and_format_override(tmp_path: Path) -> None:
    path = tmp_path / "scores.txt"
    path.write_text("image\tscore\na.png\t3.5\n", encoding="utf-8")
    assert read_records(path, file_format="tsv") == [{"image": "a.png", "score": "3.5"}]


def test_read_records_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="no such file"):
        read_records(tmp_path / "nope.csv")


def test_join_is_by_id_not_order(files) -> None:
    joined = join_by_id(
        read_records(files["pred_jsonl"]),
        read_records(files["target_csv"]),
        target_key="Score",
        target_id_key="filename",
        group_key="category",
        match="basename",
    )
    assert joined.missing == ["img_000.jpg"]
    assert joined.extra == ["not_in_targets.jpg"]
    np.testing.assert_array_equal(joined.pred, files["pred"])
    np.testing.assert_array_equal(joined.target, files["target"])
    assert joined.groups is not None
    assert joined.groups[:2] == ["oil", "sketch"]  # img_001 is odd


def test_join_stem_match_and_empty_cells() -> None:
    joined = join_by_id(
        [
            {"image": "a.jpg", "score": 1},
            {"image": "b.jpg", "score": 2},
            {"image": "c.jpg", "score": 3},
        ],
        [
            {"image": "a.png", "score": ""},
            {"image": "b.png", "score": 2.5},
            {"image": "c.jpeg", "score": None},
        ],
        match="stem",
    )
    assert joined.ids == ["b"]
    assert joined.no_value == ["a", "c"]


def test_join_errors() -> None:
    good = [{"image": "a", "score": 1.0}]
    with pytest.raises(
        DataFileError, match=r"prediction record 1 has no id column 'image'; its keys are \['file'"
    ):
        join_by_id([{"file": "a", "score": 1}], good)
    with pytest.raises(DataFileError, match=r"target record 'a' has no column 'Score'"):
        join_by_id(good, good, target_key="Score")
    with pytest.raises(DataFileError, match=r"repeats 1 id\(s\) \(after match='basename'\)"):
        join_by_id(
            [{"image": "x/a", "score": 1}, {"image": "y/a", "score": 2}], good, match="basename"
        )
    with pytest.raises(DataFileError, match="is not a number: 'high'"):
        join_by_id([{"image": "a", "score": "high"}], good)
    with pytest.raises(DataFileError, match="no id is shared"):
        join_by_id([{"image": "b", "score": 1}], good)
    with pytest.raises(DataFileError, match="the prediction file holds no records"):
        join_by_id([], good)
    with pytest.raises(ValueError, match="match must be one of"):
        join_by_id(good, good, match="fuzzy")


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("pred_key", ["pred_csv", "pred_jsonl"])
def test_cli_end_to_end(files, tmp_path: Path, capsys, pred_key: str) -> None:
    report_path = tmp_path / "out" / "report.json"
    plot_path = tmp_path / "out" / "scatter.png"
    code, out, err = _run(
        [
            "--pred",
            files[pred_key],
            "--target",
            files["target_csv"],
            "--pred-key",
            "score",
            "--target-key",
            "Score",
            "--id-key",
            "image",
            "--target-id-key",
            "filename",
            "--match",
            "basename",
            "--group-key",
            "category",
            "--bootstrap",
            "50",
            "--json",
            report_path,
            *(["--plot", plot_path] if HAS_MATPLOTLIB else []),
        ],
        capsys,
    )
    assert code == 0, err
    assert "missing predictions (target ids without a prediction): 1 (img_000.jpg)" in out
    assert "extra predictions (ids not in the target file): 1 (not_in_targets.jpg)" in out
    expected = srcc(files["pred"], files["target"])
    assert "SRCC" in out
    assert f"{expected:.4f}" in out
    assert "oil" in out
    assert "sketch" in out
    document = json.loads(report_path.read_text(encoding="utf-8"))
    assert document["missing"] == ["img_000.jpg"]
    assert document["extra"] == ["not_in_targets.jpg"]
    report = EvalReport.from_dict(document["report"])
    assert report.n == N - 1
    assert report.srcc == pytest.approx(expected, abs=1e-12)
    assert report.intervals["srcc"].n_resamples == 50
    assert set(report.groups) == {"oil", "sketch"}
    if HAS_MATPLOTLIB:  # without the plot extra the rest still runs; the plot is checked here
        data = plot_path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(data) > 10_000


def test_cli_plot_without_matplotlib_exits_2(files, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    code, out, err = _run(
        ["--pred", files["pred_csv"], "--target", files["target_csv"], "--target-id-key",
         "filename", "--target-key", "Score", "--match", "basename", "--plot",
         tmp_path / "s.png"],
        capsys,
    )  # fmt: skip
    assert code == 2
    assert "SRCC" in out  # the table is printed before the plot is attempted
    assert "pip install 'artquant-eval[plot]'" in err


@pytest.mark.parametrize(
    ("extra_args", "message"),
    [
        (["--target-key", "Missing"], "has no column 'Missing'"),
        (["--id-key", "nope"], "has no id column 'nope'"),
        (["--match", "exact"], "no id is shared"),
    ],
)
def test_cli_data_errors_exit_2(files, capsys, extra_args: list[str], message: str) -> None:
    base = [
        "--pred",
        files["pred_csv"],
        "--target",
        files["target_csv"],
        "--target-id-key",
        "filename",
        "--target-key",
        "Score",
        "--match",
        "basename",
    ]
    code, _out, err = _run(base + extra_args, capsys)
    assert code == 2
    assert message in err
    assert err.startswith("artquant-eval: error:")


def test_cli_missing_file_and_usage_errors(files, tmp_path: Path, capsys) -> None:
    code, _, err = _run(["--pred", tmp_path / "none.csv", "--target", files["target_csv"]], capsys)
    assert code == 2
    assert "no such file" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["--pred", "x.csv"])  # --target missing: argparse's usage error
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["--pred", "x.csv", "--target", "y.csv", "--bootstrap", "-3"])
    assert exit_info.value.code == 2


def test_cli_non_finite_scores(tmp_path: Path, capsys) -> None:
    ids, pred, target = _scores()
    pred_rows = [{"image": i, "score": float(p)} for i, p in zip(ids, pred, strict=True)]
    pred_rows[3]["score"] = "nan"
    target_rows = [{"image": i, "score": float(t)} for i, t in zip(ids, target, strict=True)]
    pred_path = _write_csv(tmp_path / "p.csv", pred_rows)
    target_path = _write_json(tmp_path / "t.json", target_rows)
    code, _, err = _run(["--pred", pred_path, "--target", target_path], capsys)
    assert code == 2
    assert "1 pair(s) have a NaN/inf score, e.g. ['img_003.jpg']" in err
    code, out, _ = _run(
        ["--pred", pred_path, "--target", target_path, "--omit-nonfinite", "--fit", "none"], capsys
    )
    assert code == 0
    assert "n = 39 (1 dropped: NaN/inf)" in out


def test_console_script_runs_as_a_module(files) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "artquant_eval.cli",
            "--pred",
            str(files["pred_csv"]),
            "--target",
            str(files["target_csv"]),
            "--target-id-key",
            "filename",
            "--target-key",
            "Score",
            "--match",
            "basename",
            "--quiet",
            "--fit",
            "none",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("n = 39")
