"""Path expansion, row files (CSV/JSONL, flushing, cut-off lines) and shard merging."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from artquant_sdk import expand_paths
from artquant_sdk._output import (
    OutputFormatError,
    RowWriter,
    columns_for,
    output_format,
    read_rows,
)
from artquant_sdk._sharding import (
    dist_env,
    merge_outputs,
    part_path,
    parts_dir,
    row_key,
    shard,
    wait_for_parts,
)

COLUMNS = columns_for(["good", "bad"])


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- expansion


def test_folder_expansion_policy(tmp_path: Path) -> None:
    root = tmp_path / "art"
    for name in ["b.JPG", "a.png", "notes.txt", ".hidden.png", "sub/c.webp", ".git/d.png"]:
        _touch(root / name)
    flat = expand_paths([root])
    assert flat == [str(root / "a.png"), str(root / "b.JPG")]
    deep = expand_paths([root], recursive=True)
    assert deep == [str(root / "a.png"), str(root / "b.JPG"), str(root / "sub" / "c.webp")]


def test_explicit_files_are_kept_whatever_their_extension(tmp_path: Path) -> None:
    text = _touch(tmp_path / "notes.txt")
    image = _touch(tmp_path / "x.png")
    # order of the arguments is kept; a file reached twice appears once, first position
    assert expand_paths([text, tmp_path, image]) == [str(text), str(image)]


def test_relative_arguments_give_relative_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _touch(tmp_path / "imgs" / "a.png")
    monkeypatch.chdir(tmp_path)
    assert expand_paths(["imgs"]) == [os.path.join("imgs", "a.png")]


def test_missing_argument_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothere"):
        expand_paths([tmp_path / "nothere"])


# ---------------------------------------------------------------- row files


def test_output_format_by_extension() -> None:
    assert output_format("a.csv") == "csv"
    assert output_format("a.JSONL") == "jsonl"
    assert output_format("a.ndjson") == "jsonl"
    with pytest.raises(OutputFormatError, match=r"\.parquet"):
        output_format("a.parquet")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_rows_round_trip_and_are_flushed_each_time(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"s{suffix}"
    writer = RowWriter(out, COLUMNS)
    writer.write(
        {
            "image": "a,b.png",
            "score": 1.25,
            "std": 0.5,
            "level": "good",
            "p_good": 0.75,
            "p_bad": 0.25,
        }
    )
    # visible to another reader before close: flushed
    _, rows = read_rows(out, output_format(out))
    assert len(rows) == 1
    writer.write({"image": "c.png", "error": "ImageLoadError: cannot identify"})
    writer.close()
    header, rows = read_rows(out, output_format(out))
    assert header == COLUMNS
    assert rows[0]["image"] == "a,b.png"
    assert float(rows[0]["score"]) == 1.25  # type: ignore[arg-type]
    assert rows[1]["error"] == "ImageLoadError: cannot identify"
    assert rows[1]["score"] in ("", None)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_cut_off_last_line_is_dropped_and_repaired(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"s{suffix}"
    with RowWriter(out, COLUMNS) as writer:
        writer.write({"image": "a.png", "error": "x"})
        writer.write({"image": "b.png", "error": "y"})
    data = out.read_bytes()
    out.write_bytes(data[:-7])  # a kill in the middle of the second row
    _, rows = read_rows(out, output_format(out))
    assert [r["image"] for r in rows] == ["a.png"]
    assert out.read_bytes() == data[:-7], "reading without repair must not modify the file"
    read_rows(out, output_format(out), repair=True)
    assert out.read_bytes().endswith(b"\n")
    with RowWriter(out, COLUMNS) as writer:  # appending after repair gives clean lines
        writer.write({"image": "b.png", "error": "y"})
    _, rows = read_rows(out, output_format(out))
    assert [r["image"] for r in rows] == ["a.png", "b.png"]


def test_cut_off_header_is_rewritten(tmp_path: Path) -> None:
    out = tmp_path / "s.csv"
    out.write_text("image,sco")
    with RowWriter(out, COLUMNS) as writer:
        writer.write({"image": "a.png", "error": "x"})
    assert out.read_text().splitlines() == [",".join(COLUMNS), "a.png,,,,,,x"]


def test_other_columns_refuse_to_mix(tmp_path: Path) -> None:
    out = tmp_path / "s.csv"
    RowWriter(out, columns_for(["excellent", "poor"])).close()
    with pytest.raises(OutputFormatError, match="another --out"):
        RowWriter(out, COLUMNS)
    with RowWriter(tmp_path / "t.csv", COLUMNS) as writer, pytest.raises(OutputFormatError):
        writer.write({"image": "a", "p_fair": 0.3})


def test_corrupt_row_files_are_reported(tmp_path: Path) -> None:
    bad_json = tmp_path / "s.jsonl"
    bad_json.write_text('{"image": "a"}\nnot json\n')
    with pytest.raises(OutputFormatError, match="line 2 is not JSON"):
        read_rows(bad_json, "jsonl")
    bad_csv = tmp_path / "s.csv"
    bad_csv.write_text("image,score\na,1,2\n")
    with pytest.raises(OutputFormatError, match="row 2 has 3 fields"):
        read_rows(bad_csv, "csv")


def test_jsonl_rows_hold_nulls_and_numbers(tmp_path: Path) -> None:
    out = tmp_path / "s.jsonl"
    with RowWriter(out, COLUMNS) as writer:
        writer.write(
            {"image": "a", "score": 2.0, "std": 0.0, "level": "bad", "p_good": 0.0, "p_bad": 1.0}
        )
        writer.write({"image": "b", "error": "e"})
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[0] == {
        "image": "a",
        "score": 2.0,
        "std": 0.0,
        "level": "bad",
        "p_good": 0.0,
        "p_bad": 1.0,
        "error": None,
    }
    assert lines[1]["score"] is None
    assert lines[1]["error"] == "e"


# ---------------------------------------------------------------- sharding


def test_dist_env_reads_launcher_variables() -> None:
    assert dist_env({}).world_size == 1
    env = dist_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (env.rank, env.world_size, env.local_rank, env.is_main) == (3, 4, 1, False)
    with pytest.raises(ValueError, match="RANK=4, WORLD_SIZE=4"):
        dist_env({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(ValueError, match="not an integer"):
        dist_env({"RANK": "one"})


def test_shards_partition_the_input() -> None:
    files = [f"{i}.png" for i in range(11)]
    shares = [shard(files, r, 3) for r in range(3)]
    assert sorted(f for share in shares for f in share) == sorted(files)
    assert shares[1] == ["1.png", "4.png", "7.png", "10.png"]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_merge_gives_each_file_once_in_input_order(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"scores{suffix}"
    files = [str(tmp_path / f"{i}.png") for i in range(5)]
    fmt = output_format(out)
    for rank in range(2):
        with RowWriter(part_path(out, rank, 2), COLUMNS, fmt) as writer:
            for file in reversed(shard(files, rank, 2)):  # any order inside a part
                writer.write(
                    {
                        "image": file,
                        "score": float(files.index(file)),
                        "std": 0.0,
                        "level": "good",
                        "p_good": 1.0,
                        "p_bad": 0.0,
                    }
                )
    # a row duplicated by an earlier output, and one of a file no longer in the input
    with RowWriter(out, COLUMNS, fmt) as writer:
        writer.write({"image": files[2], "error": "earlier run"})
        writer.write({"image": str(tmp_path / "gone.png"), "error": "not in input"})
    assert wait_for_parts(out, files, 2, fmt, already_done=set(), timeout=0)
    sources = [out] + [part_path(out, r, 2) for r in range(2)]
    missing = merge_outputs(out, files, sources, fmt)
    assert missing == []
    _, rows = read_rows(out, fmt)
    assert [r["image"] for r in rows] == files
    assert rows[2]["error"] == "earlier run"  # the first source wins
    assert float(rows[4]["score"]) == 4.0  # type: ignore[arg-type]
    assert not (tmp_path / f".scores{suffix}.merging").exists()


def test_wait_for_parts_times_out_and_merge_reports_missing(tmp_path: Path) -> None:
    out = tmp_path / "s.csv"
    files = ["a.png", "b.png", "c.png"]
    with RowWriter(part_path(out, 0, 2), COLUMNS) as writer:
        writer.write({"image": "a.png", "error": "x"})
        writer.write({"image": "c.png", "error": "x"})
    assert parts_dir(out).is_dir()
    assert not wait_for_parts(
        out, files, 2, "csv", already_done=set(), timeout=0.05, poll_seconds=0.01
    )
    # b.png counts as done when the earlier output holds it
    assert wait_for_parts(out, files, 2, "csv", already_done={row_key("b.png")}, timeout=0)
    missing = merge_outputs(out, files, [part_path(out, 0, 2), part_path(out, 1, 2)], "csv")
    assert missing == ["b.png"]
