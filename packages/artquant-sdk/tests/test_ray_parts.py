"""The Ray engine's pure parts, without starting Ray: sources, units, part files, merge, resume.

These need pyarrow, which comes with the ``artquant-sdk[ray]`` extra; the isolated CI loop
installs no extras, so they skip there (the workspace run has them).
"""

from __future__ import annotations

import io
import tarfile
from collections import Counter
from pathlib import Path

import pytest

pa = pytest.importorskip("pyarrow", reason="pyarrow comes with the artquant-sdk[ray] extra")

import pyarrow.parquet as pq  # noqa: E402
from PIL import Image  # noqa: E402

from artquant_sdk import cli  # noqa: E402
from artquant_sdk._output import OutputFormatError, columns_for  # noqa: E402
from artquant_sdk._ray_sources import (  # noqa: E402
    ManifestColumns,
    Unit,
    apply_resume,
    expand_sources,
    order_keys,
    read_unit,
    units_table,
)
from artquant_sdk._ray_store import (  # noqa: E402
    Location,
    commit_part,
    dedupe,
    list_parts,
    merge_parts,
    output_schema,
    parts_location,
    read_done_ids,
    remove_temporary,
    rows_to_table,
)

WORDS = ["excellent", "good", "fair", "poor", "bad"]


def _png(path: Path, colour: tuple[int, int, int] = (10, 20, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), colour).save(path)
    return path


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def _row(image: str, score: float | None = 5.0, error: str | None = None) -> dict[str, object]:
    if error is not None:
        return {"image": image, "error": error}
    row: dict[str, object] = {"image": image, "score": score, "std": 1.0, "level": "fair"}
    row.update({f"p_{w}": 0.2 for w in WORDS})
    return row


def _rows(units: list[Unit]) -> list[tuple[str, int, object, object]]:
    table = units_table(units)
    out = []
    for unit in table.to_pylist():
        out += list(read_unit(unit, ManifestColumns(id="key")))
    return out


# --- sources ------------------------------------------------------------------------------


def test_folders_files_globs_manifests_and_shards_expand_in_order(tmp_path: Path) -> None:
    pics = tmp_path / "pics"
    a, b = _png(pics / "a.png"), _png(pics / "b.jpg")
    _png(pics / "sub" / "c.png")
    (pics / "notes.txt").write_text("not an image")
    loose = _png(tmp_path / "loose" / "x.png")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,key\npics/a.png,first\nloose/x.png,second\n")
    shard = _tar(tmp_path / "s.tar", {"k1.jpg": b"x"})
    units = expand_sources(
        [pics, str(tmp_path / "loose" / "*.png"), manifest, shard, a],
        columns=ManifestColumns(id="key"),
    )
    assert [(u.kind, u.image_id) for u in units] == [
        ("file", str(a)),
        ("file", str(b)),
        ("file", str(loose)),
        ("file", "first"),  # ids from the id column, paths beside the manifest
        ("file", "second"),
        ("tar", str(shard)),
    ]  # the folder's sub-folder and text file are left out; `a` named again is kept once
    assert units[3].location == str(tmp_path / "pics/a.png")
    assert [u.unit for u in units] == list(range(6))
    recursive = expand_sources([pics], recursive=True)
    assert [Path(u.image_id).name for u in recursive] == ["a.png", "b.jpg", "c.png"]


def test_uri_sources_are_listed_and_read_through_pyarrow(tmp_path: Path) -> None:
    # file:// goes the way of s3:// or gs://: pyarrow lists the folder, reads the bytes
    a, b = _png(tmp_path / "pics" / "a.png"), _png(tmp_path / "pics" / "b.png", (1, 2, 3))
    _png(tmp_path / "pics" / ".hidden.png")
    _tar(tmp_path / "s.tar", {"k.png": a.read_bytes()})
    uri = f"file://{tmp_path}"
    units = expand_sources([f"{uri}/pics", f"{uri}/*.tar"])
    assert [(u.kind, u.image_id) for u in units] == [
        ("file", f"{uri}/pics/a.png"),
        ("file", f"{uri}/pics/b.png"),
        ("tar", f"{uri}/s.tar"),
    ]
    rows = _rows(units)
    assert [(r[0], r[2], r[3]) for r in rows] == [
        (f"{uri}/pics/a.png", a.read_bytes(), None),
        (f"{uri}/pics/b.png", b.read_bytes(), None),
        (f"{uri}/s.tar#k.png", a.read_bytes(), None),
    ]
    gone = Unit("file", f"{uri}/pics/gone.png", 0, f"{uri}/pics/gone.png")
    [(_, _, source, error)] = _rows([gone])
    assert source is None
    assert "gone.png" in str(error)


def test_a_bytes_manifest_becomes_one_unit_per_row_group(tmp_path: Path) -> None:
    manifest = tmp_path / "m.parquet"
    table = pa.table({"bytes": [b"1", b"2", b"3"], "other": [1, 2, 3]})
    pq.write_table(table, manifest, row_group_size=2)
    units = expand_sources([manifest])
    assert [(u.kind, u.row_group, u.ids) for u in units] == [
        ("rows", 0, [f"{manifest}#0", f"{manifest}#1"]),
        ("rows", 1, [f"{manifest}#2"]),
    ]
    assert [r[:3] for r in _rows(units)] == [
        (f"{manifest}#0", 0, b"1"),
        (f"{manifest}#1", 1, b"2"),
        (f"{manifest}#2", 0, b"3"),
    ]


@pytest.mark.parametrize(
    ("content", "columns", "message"),
    [
        ("name\nx.png\n", ManifestColumns(), "needs a path column 'path'"),
        ("path\nx.png\n", ManifestColumns(id="key"), "has no id column 'key'"),
    ],
)
def test_a_manifest_without_the_columns_is_refused(
    tmp_path: Path, content: str, columns: ManifestColumns, message: str
) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(content)
    with pytest.raises(ValueError, match=message):
        expand_sources([manifest], columns=columns)


def test_missing_sources_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nowhere\.png"):
        expand_sources([tmp_path / "nowhere.png"])
    with pytest.raises(FileNotFoundError, match="matches nothing"):
        expand_sources([str(tmp_path / "*.png")])


def test_a_tar_shard_yields_its_images_and_an_error_where_it_breaks(tmp_path: Path) -> None:
    good = _png(tmp_path / "g.png").read_bytes()
    members = {"s/000.jpg": good, "s/000.json": b"{}", "s/001.png": good, "s/002.png": good}
    shard = _tar(tmp_path / "s.tar", members)
    [unit] = expand_sources([shard])
    rows = _rows([unit])
    assert [(r[0], r[1], r[3]) for r in rows] == [
        (f"{shard}#s/000.jpg", 0, None),
        (f"{shard}#s/001.png", 1, None),
        (f"{shard}#s/002.png", 2, None),
    ]  # the .json member is not a picture
    # resuming skips done members but keeps everyone's position
    unit.skip = [f"{shard}#s/001.png"]
    assert [r[:2] for r in _rows([unit])] == [(f"{shard}#s/000.jpg", 0), (f"{shard}#s/002.png", 2)]
    # a shard cut in the middle of its third member: two rows, then one error row for the shard
    data = shard.read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: data.index(b"s/002.png") + 512 + 20])  # 20 bytes of its data
    [unit] = expand_sources([cut])
    rows = _rows([unit])
    assert [r[0] for r in rows] == [f"{cut}#s/000.jpg", f"{cut}#s/001.png", str(cut)]
    assert rows[-1][2] is None
    assert "Error" in str(rows[-1][3])
    # a shard that is not a tar at all
    bogus = tmp_path / "bogus.tar"
    bogus.write_bytes(b"this is not a tar file")
    [(image_id, _, source, error)] = _rows(expand_sources([bogus]))
    assert (image_id, source) == (str(bogus), None)
    assert error


def test_resume_drops_done_files_and_skips_done_members(tmp_path: Path) -> None:
    units = [
        Unit("file", "a.png", 0, "a.png"),
        Unit("rows", "m.parquet", 1, "m.parquet", 0, ["m#0", "m#1"]),
        Unit("rows", "m.parquet", 2, "m.parquet", 1, ["m#2"]),
        Unit("tar", "x#y.tar", 3, "x#y.tar"),  # a '#' in the shard's own name
        Unit("file", "b.png", 4, "b.png"),
    ]
    todo = apply_resume(units, {"a.png", "m#0", "m#2", "x#y.tar#k.jpg", "gone.png"})
    assert [(u.unit, u.skip) for u in todo] == [(1, ["m#0"]), (3, ["x#y.tar#k.jpg"]), (4, [])]
    keys = order_keys(units)
    assert keys(["b.png", "m#1", "x#y.tar#k.jpg", "gone.png"]) == ([4, 1, 3, 5], [0, 1, 2, 3])


# --- part files ---------------------------------------------------------------------------


def test_parts_commit_atomically_and_read_back_each_id_once(tmp_path: Path) -> None:
    out = Location.of(tmp_path / "scores.parquet")
    parts = parts_location(out)
    assert parts.path == str(tmp_path / ".scores.parquet.parts")
    first = rows_to_table([_row("a", 1.0), _row("b", error="boom")], WORDS, [0, 1], [0, 0])
    name = commit_part(parts, first)
    assert commit_part(parts, first) == name  # a retried batch lands on the same name
    # a retry that batched differently: "b" scored this time, "c" new
    commit_part(parts, rows_to_table([_row("b", 2.0), _row("c", 3.0)], WORDS, [1, 2], [0, 0]))
    (Path(parts.path) / ".tmp-killed-writer.parquet").write_bytes(b"PAR1 half")
    assert len(list_parts(parts)) == 2  # the killed writer's file is not a part
    assert read_done_ids(out, parts, WORDS) == {"a", "b", "c"}
    assert remove_temporary(parts) == 1

    result = merge_parts(
        out, parts, WORDS, previous=False, order_of_previous=order_keys([]), expected=["a", "b"]
    )
    table = pq.read_table(out.path)
    assert table.schema == output_schema(WORDS)
    assert table.schema.names == columns_for(WORDS)  # the columns of `artquant score`
    assert table.column("image").to_pylist() == ["a", "b", "c"]
    assert table.column("score").to_pylist() == [1.0, 2.0, 3.0]  # the scored copy of "b"
    assert (result.rows, result.scored, result.errors, result.missing) == (3, 3, 0, [])


def test_dedupe_prefers_a_score_then_the_earliest_part() -> None:
    table = pa.table(
        {
            "image": ["x", "y", "x", "y", "x"],
            "error": ["bad", None, None, None, None],
            "score": [0.0, 1.0, 2.0, 3.0, 4.0],
            "_part": [0, 2, 1, 1, 0],
        }
    )
    kept = dedupe(table).to_pydict()
    assert Counter(kept["image"]) == {"x": 1, "y": 1}
    assert dict(zip(kept["image"], kept["score"], strict=True)) == {"x": 4.0, "y": 3.0}


def test_a_resumed_merge_keeps_the_previous_output_in_input_order(tmp_path: Path) -> None:
    out = Location.of(tmp_path / "s.parquet")
    parts = parts_location(out)
    old = rows_to_table([_row("b", 2.0), _row("z", 9.0)], WORDS, [0, 0], [0, 0])
    pq.write_table(old.select(columns_for(WORDS)), out.path)
    commit_part(parts, rows_to_table([_row("a", 1.0), _row("c", 3.0)], WORDS, [0, 2], [0, 0]))
    units = [Unit("file", i, n, i) for n, i in enumerate(["a", "b", "c"])]
    result = merge_parts(
        out,
        parts,
        WORDS,
        previous=True,
        order_of_previous=order_keys(units),
        expected=["a", "b", "c", "d"],
    )
    assert pq.read_table(out.path).column("image").to_pylist() == ["a", "b", "c", "z"]
    assert result.missing == ["d"]


def test_parts_of_another_model_are_refused(tmp_path: Path) -> None:
    out = Location.of(tmp_path / "s.parquet")
    parts = parts_location(out)
    commit_part(parts, rows_to_table([_row("a")], WORDS, [0], [0]))
    with pytest.raises(OutputFormatError, match="another model"):
        read_done_ids(out, parts, ["high", "low"])


# --- the command line, before any Ray is started ------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--actors", "2"], "--actors need --engine ray"),
        (["--ray-address", "auto", "--id-column", "k"], "--ray-address, --id-column need"),
        (["--engine", "ray", "--workers", "2"], "--workers apply only to --engine local"),
        (["--engine", "ray", "--resume", "--overwrite"], "exclude each other"),
    ],
)
def test_engine_options_are_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    out = tmp_path / ("s.parquet" if "ray" in argv else "s.csv")
    assert cli.main(["score", str(tmp_path), "--out", str(out), *argv]) == cli.EXIT_USAGE
    assert message in capsys.readouterr().err


def test_parquet_output_needs_the_ray_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s.parquet"
    assert cli.main(["score", str(tmp_path), "--out", str(out)]) == cli.EXIT_USAGE
    assert "Parquet output is written by --engine ray" in capsys.readouterr().err


@pytest.mark.parametrize(("option", "value"), [("--gpus-per-actor", "-1"), ("--actors", "0")])
def test_bad_engine_values_exit_2(
    capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["score", ".", "--out", "x.parquet", "--engine", "ray", option, value])
    assert info.value.code == cli.EXIT_USAGE
    assert option in capsys.readouterr().err


@pytest.mark.parametrize("name", ["artquant_sdk._ray_sources", "artquant_sdk._ray_store"])
def test_docstring_examples(name: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no docstring example"
    assert result.failed == 0


def _ray_round_trip(batch: dict[str, object]) -> dict[str, object]:
    """A numpy batch through Ray Data's own conversion to an Arrow block and back, as it travels
    from a read task to an actor."""
    from ray.data.block import BlockAccessor

    block = BlockAccessor.batch_to_block(batch)
    assert isinstance(block, pa.Table)  # Arrow, not pickled Python objects
    return BlockAccessor.for_block(block).to_batch_format("numpy")  # type: ignore[no-any-return]


def _pictures(folder: Path) -> list[Path]:
    import numpy as np

    folder.mkdir()
    rng = np.random.default_rng(1)
    paths = []
    for i, (w, h) in enumerate([(40, 60), (100, 50), (30, 90), (64, 64)]):
        paths.append(folder / f"p{i}.png")
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(paths[-1])
    return paths


@pytest.mark.parametrize("mode", ["native", "fixed"])
def test_qwen_payloads_carry_exactly_the_pixels_the_api_scores(
    tmp_path: Path, tiny_qwen_checkpoints: dict[str, Path], mode: str
) -> None:
    # A read task's payloads, through Ray's Arrow conversion, give the actor the very pixels
    # ArtQuant.score feeds the backbone (bit for bit), error rows included in the batch.
    import torch

    pytest.importorskip("ray", reason="Ray comes with the artquant-sdk[ray] extra")
    from artquant_model import VisionBatch
    from artquant_sdk import ArtQuant
    from artquant_sdk.ray import _Backbone, _payload_batch, _Pending, _ScorerSpec

    pictures = _pictures(tmp_path / "pics")
    backbone = _Backbone(_ScorerSpec(model=str(tiny_qwen_checkpoints[mode])))
    rows = [_Pending(str(p), 0, i, backbone.decode(str(p)), "") for i, p in enumerate(pictures)]
    rows.insert(2, _Pending("broken", 0, 9, backbone.placeholder(), "ImageLoadError: x"))
    batch = _ray_round_trip(_payload_batch(backbone, rows))
    good = [0, 1, 3, 4]
    pixels = backbone.payload.pixels(batch, good)  # type: ignore[arg-type]

    expected = ArtQuant.from_pretrained(tiny_qwen_checkpoints[mode], device="cpu").preprocess(
        pictures
    )
    assert isinstance(pixels, VisionBatch)
    assert torch.equal(pixels.image_grid_thw, expected.image_grid_thw)
    assert torch.equal(pixels.pixel_values, expected.pixel_values)
    grids = {tuple(g) for g in expected.image_grid_thw.tolist()}
    assert len(grids) == (len(pictures) if mode == "native" else 1)  # ragged when native


def test_mplug_owl2_payloads_carry_the_api_pixels(tmp_path: Path, shared: Path) -> None:
    # a tensor-valued image processor: the payload gives the actor ArtQuant.preprocess's tensor
    import torch

    pytest.importorskip("ray", reason="Ray comes with the artquant-sdk[ray] extra")
    from artquant_sdk.ray import _Backbone, _payload_batch, _Pending, _ScorerSpec

    checkpoint = shared / "fixtures" / "mplug_owl2_tiny_vocab32k" / "checkpoint"
    if not checkpoint.is_dir():
        pytest.skip(f"the vocab32k fixture is missing from {shared}")
    pictures = _pictures(tmp_path / "pics")
    backbone = _Backbone(_ScorerSpec(model=str(checkpoint)))
    rows = [_Pending(str(p), 0, i, backbone.decode(str(p)), "") for i, p in enumerate(pictures)]
    rows.insert(1, _Pending("broken", 0, 9, backbone.placeholder(), "ImageLoadError: x"))
    batch = _ray_round_trip(_payload_batch(backbone, rows))
    pixels = backbone.payload.pixels(batch, [0, 2, 3, 4])  # type: ignore[arg-type]
    expected = backbone.image_processor(pictures)  # what ArtQuant.preprocess returns
    assert pixels.dtype == torch.float32
    assert pixels.shape == (len(pictures), 3, 448, 448)
    assert torch.equal(pixels, expected)


def test_an_actor_whose_model_preprocesses_otherwise_is_refused(
    tiny_qwen_checkpoints: dict[str, Path],
) -> None:
    # the read tasks would feed it pictures of another size: refuse, never score them
    pytest.importorskip("ray", reason="Ray comes with the artquant-sdk[ray] extra")
    from artquant_sdk.ray import ScorerLoadError, _Backbone, _ScorerSpec

    backbone = _Backbone(_ScorerSpec(model=str(tiny_qwen_checkpoints["fixed"]), device="cpu"))
    backbone.spec = backbone.spec.model_copy(update={"model": str(tiny_qwen_checkpoints["native"])})
    with pytest.raises(
        ScorerLoadError, match=r"otherwise than .*resolution: .*native.*driver: .*fixed"
    ):
        backbone.load()
