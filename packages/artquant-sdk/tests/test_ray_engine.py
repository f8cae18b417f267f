"""The Ray engine end to end on a local Ray instance, with the tiny real-vocabulary fixture.

One Ray instance (``num_cpus=2``) serves the module: starting Ray takes tens of seconds on a
busy 2-core machine, so the tests are few and each covers much. Ray comes with the
``artquant-sdk[ray]`` extra; the isolated CI loop installs no extras and skips this module.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip(
    "ray", reason="Ray comes with the artquant-sdk[ray] extra (not installed here)"
)

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from PIL import Image  # noqa: E402

from artquant_sdk import ArtQuant, cli, expand_paths  # noqa: E402
from artquant_sdk._output import columns_for  # noqa: E402
from artquant_sdk.ray import score_dataset  # noqa: E402

BOMB_LIMIT = 200_000  # pixels; make_bad_files' bomb has 600 x 400 = 240,000
WORDS = ["excellent", "good", "fair", "poor", "bad"]
ATOL = 1e-6
# Workers run this interpreter; under `uv run` Ray would otherwise start them through `uv run`
# and upload the working directory.
NO_UV_HOOK = {"RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A local Ray instance for the module; its address lets a subprocess join it."""
    from ray._private import ray_constants

    previous = ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV
    ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV = False
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV = previous


@pytest.fixture(scope="module")
def model(shared: Path) -> dict[str, str]:
    fixture = shared / "fixtures" / "mplug_owl2_tiny_vocab32k"
    tokenizer = shared / "tokenizers" / "llama2"
    if not fixture.is_dir() or not tokenizer.is_dir():
        pytest.skip(f"the vocab32k fixture or the LLaMA-2 tokenizer is missing from {shared}")
    return {"model": str(fixture / "checkpoint"), "tokenizer": str(tokenizer)}


def _pictures(shared: Path, oasis: list[Path]) -> list[Path]:
    fixture = shared / "fixtures" / "mplug_owl2_tiny_vocab32k"
    return sorted(fixture.glob("picture*.png")) + oasis[:4]


def test_folder_manifests_and_shard_score_as_the_api_and_bad_files_get_errors(
    ray_address: str,
    tmp_path: Path,
    shared: Path,
    oasis: list[Path],
    model: dict[str, str],
    make_bad_files: Callable[[Path, Path], dict[str, bool]],
) -> None:
    pictures = _pictures(shared, oasis)
    folder = tmp_path / "pics"
    folder.mkdir()
    for picture in pictures:
        (folder / picture.name).write_bytes(picture.read_bytes())
    bad = tmp_path / "bad"
    expected_ok = make_bad_files(bad, oasis[0])
    names = [p.name for p in pictures]
    blobs = [p.read_bytes() for p in pictures]
    bytes_manifest = tmp_path / "pictures.parquet"
    pq.write_table(pa.table({"key": names, "bytes": blobs}), bytes_manifest, row_group_size=4)
    path_manifest = tmp_path / "paths.csv"
    path_manifest.write_text("path\n" + "".join(f"pics/{n}\n" for n in names))
    shard = tmp_path / "shard.tar"
    with tarfile.open(shard, "w") as archive:
        for name, blob in zip(names, blobs, strict=True):
            info = tarfile.TarInfo(f"sample/{name}")
            info.size = len(blob)
            archive.addfile(info, io.BytesIO(blob))

    out = tmp_path / "scores.parquet"
    summary = score_dataset(
        [folder, bad, bytes_manifest, path_manifest, shard],
        out,
        **model,
        device="cpu",
        batch_size=4,
        actors=1,
        id_column=None,
        max_pixels=BOMB_LIMIT,
        progress=False,
    )

    table = pq.read_table(out)
    assert table.schema.names == columns_for(WORDS)  # the columns of `artquant score`
    rows = table.to_pylist()
    by_id = {r["image"]: r for r in rows}
    folder_ids = [str(folder / n) for n in names]  # the folder's files come sorted by name
    bad_ids = [str(bad / n) for n in sorted(expected_ok)]
    manifest_ids = [f"{bytes_manifest}#{i}" for i in range(len(names))]
    csv_ids = [f"pics/{n}" for n in names]  # a path manifest's ids: the paths as written
    shard_ids = [f"{shard}#sample/{n}" for n in names]
    expected = [*sorted(folder_ids), *bad_ids, *manifest_ids, *csv_ids, *shard_ids]
    assert Counter(r["image"] for r in rows) == Counter(expected), "each id exactly once"
    assert [r["image"] for r in rows] == expected  # input order
    unreadable = [n for n, ok in expected_ok.items() if not ok]
    assert (summary.rows, summary.errors) == (len(expected), len(unreadable))
    assert summary.already_done == 0

    # every picture scores as ArtQuant.score scores it, whichever way it was read
    scorer = ArtQuant.from_pretrained(model["model"], tokenizer=model["tokenizer"], device="cpu")
    good_bad = [bad / n for n in sorted(expected_ok) if expected_ok[n]]
    api = scorer.score([*pictures, *good_bad], batch_size=1)
    for result, sources in zip(
        api,
        [*zip(folder_ids, manifest_ids, csv_ids, shard_ids, strict=True)]
        + [(str(p),) for p in good_bad],
        strict=True,
    ):
        for image_id in sources:
            row = by_id[image_id]
            assert row["error"] is None, row
            assert row["score"] == pytest.approx(result.score, abs=ATOL)
            assert row["std"] == pytest.approx(result.std, abs=ATOL)
            probs = [row[f"p_{w}"] for w in WORDS]
            assert probs == pytest.approx(list(result.probs.values()), abs=ATOL)
            assert row["level"] == result.level
    # the hostile files that cannot be read get an error row naming them, never a score
    for name, ok in expected_ok.items():
        if not ok:
            row = by_id[str(bad / name)]
            assert row["error"].startswith("ImageLoadError: "), row
            assert name in row["error"]
            assert row["score"] is None
    assert "pixels" in by_id[str(bad / "bomb.png")]["error"]
    assert not Path(tmp_path / ".scores.parquet.parts").exists()


def _parts_ids(parts: Path) -> set[str]:
    ids: set[str] = set()
    for part in parts.glob("part-*.parquet"):
        ids.update(pq.read_table(part, columns=["image"]).column(0).to_pylist())
    return ids


@pytest.mark.slow
def test_a_killed_driver_resumes_with_every_id_exactly_once(
    ray_address: str,
    tmp_path: Path,
    model: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(80):
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(
            folder / f"img{i:03d}.png"
        )
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    files = expand_paths([folder])
    out = tmp_path / "scores.parquet"
    parts = tmp_path / ".scores.parquet.parts"
    args = ["score", str(folder), "--out", str(out), "--engine", "ray",
            "--ray-address", ray_address, "--model", model["model"],
            "--tokenizer", model["tokenizer"], "--device", "cpu", "--batch-size", "2",
            "--actors", "1", "--no-progress"]  # fmt: skip

    env = {**os.environ, "OMP_NUM_THREADS": "1", **NO_UV_HOOK}
    driver = subprocess.Popen(
        [sys.executable, "-m", "artquant_sdk.cli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 600
    while (
        len(list(parts.glob("part-*.parquet"))) < 4
        and driver.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    still_running = driver.poll() is None
    driver.send_signal(signal.SIGKILL)
    _, stderr = driver.communicate()
    assert still_running, f"the run ended before it could be killed; make it longer\n{stderr}"
    time.sleep(3)  # Ray ends the dead driver's actor; let a last commit land before counting
    done = _parts_ids(parts)
    assert 8 <= len(done) < len(files)
    assert not out.exists()
    killed_rows = {
        r["image"]: r
        for part in parts.glob("part-*.parquet")
        for r in pq.read_table(part).to_pylist()
    }

    # without --resume the parts are not touched
    assert cli.main(args) == cli.EXIT_USAGE
    assert "--resume" in capsys.readouterr().err
    assert cli.main([*args, "--resume"]) == cli.EXIT_OK
    err = capsys.readouterr().err
    assert f"{len(files) - len(done)} new row(s), {len(done)} already done" in err
    rows = pq.read_table(out).to_pylist()
    assert [r["image"] for r in rows] == files  # every file once, in input order
    by_id = {r["image"]: r for r in rows}
    for image_id, row in killed_rows.items():  # the killed run's rows are kept as they were
        assert {k: by_id[image_id][k] for k in columns_for(WORDS)} == {
            k: row[k] for k in columns_for(WORDS)
        }
    assert by_id[str(folder / "broken.png")]["error"].startswith("ImageLoadError")
    assert sum(1 for r in rows if r["error"] is None) == len(files) - 1
    assert not parts.exists()

    # a second resume finds nothing to do and leaves the output as it is
    before = out.read_bytes()
    assert cli.main([*args, "--resume"]) == cli.EXIT_OK
    assert f"0 new row(s), {len(files)} already done" in capsys.readouterr().err
    assert pq.read_table(out).to_pylist() == pq.read_table(io.BytesIO(before)).to_pylist()


def test_shards_and_row_groups_get_a_read_task_each() -> None:
    from artquant_sdk._ray_sources import Unit
    from artquant_sdk.ray import _blocks

    def files(start: int, count: int) -> list[Unit]:
        return [Unit("file", f"{i}.png", i, f"{i}.png") for i in range(start, start + count)]

    units = [*files(0, 70), Unit("tar", "s.tar", 70, "s.tar"), *files(71, 60)]
    units.append(Unit("rows", "m.parquet", 131, "m.parquet", 0, ["m#0"]))
    blocks = _blocks(units)
    assert [b.num_rows for b in blocks] == [64, 1, 64, 1, 2]
    assert [b.column("kind")[0].as_py() for b in blocks] == ["file", "tar", "file", "rows", "file"]
    assert sorted(u for b in blocks for u in b.column("unit").to_pylist()) == list(range(132))


# Native resolution batches pictures of different token counts, left-padded: the padding changes
# float32 reductions, so a row in a batch moves from its batch-of-one score by about 1e-6 (1.1e-6
# measured here; the backbone guarantees 1e-5). Fixed resolution has no padding.
QWEN_ATOL = {"native": 1e-5, "fixed": ATOL}


@pytest.mark.parametrize("mode", ["native", "fixed"])
def test_a_qwen_checkpoint_scores_as_the_api_in_both_resolutions(
    ray_address: str, tmp_path: Path, tiny_qwen_checkpoints: dict[str, Path], mode: str
) -> None:
    folder = tmp_path / "pics"
    folder.mkdir()
    rng = np.random.default_rng(5)
    sizes = [(40, 60), (64, 64), (100, 50), (30, 90), (160, 120), (57, 33), (200, 80), (48, 48)]
    for i, (w, h) in enumerate(sizes):  # different sizes: different patch grids when native
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "truncated.png").write_bytes((folder / "p0.png").read_bytes()[:100])
    files = expand_paths([folder])
    out = tmp_path / "scores.parquet"

    summary = score_dataset(
        [folder, bad],
        out,
        model=tiny_qwen_checkpoints[mode],
        device="cpu",
        batch_size=4,
        actors=1,
        progress=False,
    )

    rows = pq.read_table(out).to_pylist()
    assert [r["image"] for r in rows] == [*files, str(bad / "truncated.png")]
    assert (summary.rows, summary.errors) == (len(files) + 1, 1)
    assert rows[-1]["error"].startswith("ImageLoadError: ")
    assert "truncated.png" in rows[-1]["error"]
    assert rows[-1]["score"] is None
    scorer = ArtQuant.from_pretrained(tiny_qwen_checkpoints[mode], device="cpu")
    for row, result in zip(rows[:-1], scorer.score(files, batch_size=1), strict=True):
        assert row["error"] is None, row
        assert row["score"] == pytest.approx(result.score, abs=QWEN_ATOL[mode])
        assert row["std"] == pytest.approx(result.std, abs=QWEN_ATOL[mode])
        probs = [row[f"p_{w}"] for w in WORDS]
        assert probs == pytest.approx(list(result.probs.values()), abs=QWEN_ATOL[mode])
        assert row["level"] == result.level


def test_a_tile_family_scores_as_the_api(ray_address: str, tmp_path: Path, shared: Path) -> None:
    # InternVL at native resolution: each picture its own number of tiles, so batches are ragged
    # in tiles (left-padded in tokens, hence the native tolerance of the Qwen test above).
    from transformers import AutoTokenizer

    from artquant_model.testing import save_tiny_vlm

    tokenizer_dir = shared / "tokenizers" / "qwen2_vl"
    if not (tokenizer_dir / "tokenizer.json").is_file():
        pytest.skip(f"the Qwen2 tokenizer is missing from {shared}")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = save_tiny_vlm(tmp_path / "internvl", "internvl", tokenizer)
    folder = tmp_path / "pics"
    folder.mkdir()
    rng = np.random.default_rng(6)
    for i, (w, h) in enumerate([(40, 60), (120, 40), (64, 64), (30, 90), (90, 50)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    files = expand_paths([folder])
    out = tmp_path / "scores.parquet"

    summary = score_dataset([folder], out, model=model, device="cpu", batch_size=3, progress=False)

    rows = pq.read_table(out).to_pylist()
    assert [r["image"] for r in rows] == files
    assert (summary.rows, summary.errors) == (len(files), 0)
    scorer = ArtQuant.from_pretrained(model, device="cpu")
    for row, result in zip(rows, scorer.score(files, batch_size=1), strict=True):
        assert row["score"] == pytest.approx(result.score, abs=QWEN_ATOL["native"])
        probs = [row[f"p_{w}"] for w in WORDS]
        assert probs == pytest.approx(list(result.probs.values()), abs=QWEN_ATOL["native"])


def test_attributes_get_their_columns_and_resume_needs_the_same(
    ray_address: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A model trained on two attributes (picture-first prompts, as the trainer writes them):
    # --attributes all adds score_/std_ columns equal to ArtQuant.score(attributes="all"), and a
    # resume asking other attributes is refused (its columns would not match the output's).
    from artquant_model import ARTQUANT_SPEC, Question
    from artquant_model.testing import save_tiny_checkpoint

    model = Path(save_tiny_checkpoint(tmp_path / "model", seed=3))
    questions = {"total": ARTQUANT_SPEC.question()}
    for key, phrase in [("color", "color"), ("light_and_shadow", "light and shadow")]:
        prompt = f"How would you rate the {phrase} of this painting?"
        stem = f"The {phrase} of the painting is"
        raw = f"A chat. USER: <|image|>\n{prompt} ASSISTANT: {stem}"
        questions[key] = Question(prompt=prompt, stem=stem, raw_prompt=raw)
    ARTQUANT_SPEC.model_copy(update={"questions": questions}).save(model)
    folder = tmp_path / "pics"
    folder.mkdir()
    rng = np.random.default_rng(7)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (40 + 9 * i, 50, 3), dtype=np.uint8)).save(
            folder / f"p{i}.png"
        )
    files = expand_paths([folder])
    out = tmp_path / "scores.parquet"
    args = ["score", str(folder), "--model", str(model), "--engine", "ray", "--out", str(out)]
    args += ["--device", "cpu", "--batch-size", "2", "--no-progress", "--ray-address", ray_address]

    assert cli.main([*args, "--attributes", "all"]) == cli.EXIT_OK

    table = pq.read_table(out)
    names = ["color", "light_and_shadow"]
    assert table.column_names == columns_for(WORDS, names)
    rows = table.to_pylist()
    scorer = ArtQuant.from_pretrained(model, device="cpu")
    expected = scorer.score(files, attributes="all", batch_size=1)
    for row, result in zip(rows, expected, strict=True):
        assert row["score"] == pytest.approx(result.score, abs=1e-5)
        for name in names:
            assert row[f"score_{name}"] == pytest.approx(result.attributes[name].score, abs=1e-5)
            assert row[f"std_{name}"] == pytest.approx(result.attributes[name].std, abs=1e-5)
    # the attributes really differ from the total and from each other (random weights)
    assert max(abs(r["score_color"] - r["score"]) for r in rows) > 1e-3
    assert max(abs(r["score_color"] - r["score_light_and_shadow"]) for r in rows) > 1e-3
    capsys.readouterr()

    assert cli.main([*args, "--attributes", "all", "--resume"]) == cli.EXIT_OK
    assert f"0 new row(s), {len(files)} already done" in capsys.readouterr().err
    assert cli.main([*args, "--attributes", "color", "--resume"]) == cli.EXIT_USAGE
    assert "std_light_and_shadow" in capsys.readouterr().err  # names the columns that differ
    assert cli.main([*args, "--attributes", "mood", "--overwrite"]) == cli.EXIT_USAGE
    assert "has no attribute 'mood'" in capsys.readouterr().err  # refused before Ray starts
    assert pq.read_table(out).equals(table)  # the refused runs left the output as it was
