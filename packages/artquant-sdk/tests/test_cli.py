"""The ``artquant`` command on real photos and a folder of hostile files, with a tiny model.

Covers: one row per file (bad ones with a clear error), CSV and JSONL, background decoding
workers, a real kill followed by ``--resume`` (each file exactly once), exit codes, the
``models``/``download``/``describe`` subcommands, and two processes sharing the work through
``RANK``/``WORLD_SIZE`` (as ``accelerate launch`` or ``torchrun`` set them).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import huggingface_hub
import numpy as np
import pytest
from PIL import Image

from artquant_sdk import cli
from artquant_sdk._sharding import parts_dir

BOMB_LIMIT = 200_000  # pixels; make_bad_files' bomb has 600 x 400 = 240,000


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from artquant_model.testing import save_tiny_checkpoint

    return Path(save_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt", seed=0))


@pytest.fixture
def inputs(
    tmp_path: Path, oasis: list[Path], make_bad_files: Callable[[Path, Path], dict[str, bool]]
) -> tuple[list[str], dict[str, bool]]:
    """PATH arguments (the OASIS folder, the bad folder, an explicit text file) and expectations."""
    bad = tmp_path / "bad"
    expected = make_bad_files(bad, oasis[0])
    text = tmp_path / "readme.txt"
    text.write_text("given explicitly, so it gets a row with an error\n")
    expected_by_path = {str(p): True for p in oasis}
    expected_by_path.update({str(bad / name): ok for name, ok in expected.items()})
    expected_by_path[str(text)] = False
    return [str(oasis[0].parent), str(bad), str(text)], expected_by_path


def _rows(out: Path) -> list[dict[str, Any]]:
    if out.suffix == ".csv":
        with open(out, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def _score_args(model: Path, out: Path, *extra: str) -> list[str]:
    return [
        "score",
        "--model",
        str(model),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--max-pixels",
        str(BOMB_LIMIT),
        "--no-progress",
        *extra,
    ]


@pytest.mark.parametrize(
    ("suffix", "decoding"),
    [
        (".csv", ["--workers", "0", "--decode-threads", "1"]),
        (".csv", ["--decode-threads", "3"]),  # the CPU default: no workers, threads
        (".jsonl", ["--workers", "2"]),
    ],
)
def test_every_file_gets_exactly_one_row(
    tmp_path: Path,
    tiny_checkpoint: Path,
    inputs: tuple[list[str], dict[str, bool]],
    suffix: str,
    decoding: list[str],
) -> None:
    paths, expected = inputs
    out = tmp_path / f"scores{suffix}"
    code = cli.main([*_score_args(tiny_checkpoint, out, "--batch-size", "3", *decoding), *paths])
    assert code == cli.EXIT_OK
    rows = _rows(out)
    images = [r["image"] for r in rows]
    assert Counter(images) == Counter(list(expected)), "each file exactly once, nothing else"
    assert set(images) == set(expected)
    for row in rows:
        if expected[row["image"]]:
            assert not row["error"], row
            score = float(row["score"])
            assert 1.0 <= score <= 10.0
            probs = [float(row[f"p_{w}"]) for w in ("excellent", "good", "fair", "poor", "bad")]
            assert sum(probs) == pytest.approx(1.0, abs=1e-9)
            assert (
                row["level"] == ["excellent", "good", "fair", "poor", "bad"][int(np.argmax(probs))]
            )
        else:
            # a clear reason: the loader's exception type and a message naming the file
            assert row["error"].startswith("ImageLoadError: "), row
            assert Path(row["image"]).name in row["error"]
            assert row["score"] in ("", None)
    by_name = {Path(r["image"]).name: r for r in rows}
    assert "pixels" in by_name["bomb.png"]["error"]
    assert "notes.txt" not in by_name  # a non-image file inside a folder is skipped
    # order: the OASIS folder sorted, then the bad folder sorted, then the explicit file
    assert images[:12] == sorted(images[:12])
    assert images[-1].endswith("readme.txt")


def test_scores_equal_the_python_api(
    tmp_path: Path, tiny_checkpoint: Path, oasis: list[Path]
) -> None:
    from artquant_sdk import ArtQuant

    out = tmp_path / "s.csv"
    args = _score_args(tiny_checkpoint, out, "--batch-size", "5", "--workers", "0")
    assert cli.main([*args, *map(str, oasis[:4])]) == 0
    scorer = ArtQuant.from_pretrained(tiny_checkpoint, device="cpu")
    api = scorer.score(oasis[:4], batch_size=1)
    for row, result in zip(_rows(out), api, strict=True):
        assert row["image"] == result.image
        assert float(row["score"]) == pytest.approx(result.score, abs=1e-6)
        assert float(row["std"]) == pytest.approx(result.std, abs=1e-6)


def test_cpu_decodes_in_process_and_a_gpu_uses_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    import torch

    monkeypatch.setattr(cli.os, "cpu_count", lambda: 32)
    assert cli._default_workers(SimpleNamespace(device=torch.device("cpu"))) == 0
    assert cli._default_workers(SimpleNamespace(device=torch.device("cuda"))) == 16
    assert cli._default_workers(SimpleNamespace(device=torch.device("mps"))) == 4
    monkeypatch.setattr(cli.os, "cpu_count", lambda: 4)
    assert cli._default_workers(SimpleNamespace(device=torch.device("cuda"))) == 3


def _run_cli(args: list[str], env: dict[str, str] | None = None, **kwargs: Any) -> Any:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "artquant_sdk.cli", *args],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_kill_then_resume_gives_each_file_exactly_once(
    tmp_path: Path,
    tiny_checkpoint: Path,
    inputs: tuple[list[str], dict[str, bool]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    paths, expected = inputs
    many = tmp_path / "many"
    many.mkdir()
    rng = np.random.default_rng(1)
    for i in range(300):
        array = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        Image.fromarray(array).save(many / f"img{i:03d}.png")
    expected.update({str(many / f"img{i:03d}.png"): True for i in range(300)})
    all_paths = [*paths, str(many)]
    out = tmp_path / "scores.csv"
    args = _score_args(tiny_checkpoint, out, "--batch-size", "1", "--workers", "0")

    proc = _run_cli([*args, *all_paths])
    deadline = time.monotonic() + 120
    while _count_lines(out) < 40 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    still_running = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert still_running, "the run ended before it could be interrupted; make it longer"
    killed_rows = _rows(out)
    assert 39 <= len(killed_rows) < len(expected)
    # simulate a kill in the middle of writing a row as well
    with open(out, "a", encoding="utf-8") as handle:
        handle.write(f"{all_paths[0]}/half-written-row.jpg,5.0")

    assert cli.main([*args, "--resume", *all_paths]) == 0
    assert f"{len(killed_rows)} already done" in capsys.readouterr().err
    rows = _rows(out)
    images = [r["image"] for r in rows]
    assert Counter(images) == Counter(list(expected))
    assert images[: len(killed_rows)] == [r["image"] for r in killed_rows]
    # a second resume has nothing left to do and adds nothing
    assert cli.main([*args, "--resume", *all_paths]) == 0
    assert len(_rows(out)) == len(expected)


def test_existing_output_needs_resume_or_overwrite(
    tmp_path: Path, tiny_checkpoint: Path, oasis: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s.jsonl"
    args = _score_args(tiny_checkpoint, out, "--workers", "0")
    assert cli.main([*args, str(oasis[0])]) == 0
    assert cli.main([*args, str(oasis[0])]) == cli.EXIT_USAGE
    assert "--resume" in capsys.readouterr().err
    assert cli.main([*args, "--overwrite", str(oasis[0]), str(oasis[1])]) == 0
    assert [r["image"] for r in _rows(out)] == [str(oasis[0]), str(oasis[1])]
    assert cli.main([*args, "--overwrite", "--resume", str(oasis[0])]) == cli.EXIT_USAGE


def test_resume_into_a_file_of_another_model_is_refused(
    tmp_path: Path, tiny_checkpoint: Path, oasis: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s.csv"
    out.write_text("image,score,std,level,p_high,p_low,error\nx.png,1,0,high,1,0,\n")
    args = _score_args(tiny_checkpoint, out, "--workers", "0", "--resume")
    assert cli.main([*args, str(oasis[0])]) == cli.EXIT_USAGE
    assert "columns" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["score", "nowhere/", "--out", "x.csv"], "does not exist"),
        (["score", ".", "--out", "x.parquet"], "must end in one of"),
        (["score", "EMPTY", "--out", "x.csv"], "no image files found"),
        (
            ["score", ".", "--out", "x.csv", "--workers", "2", "--decode-threads", "4"],
            "--decode-threads 4 applies only with --workers 0",
        ),
    ],
)
def test_usage_errors_exit_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "EMPTY").mkdir()
    assert cli.main(argv) == cli.EXIT_USAGE
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--batch-size", "0", "0 must be at least 1"),
        ("--batch-size", "two", "'two' is not an integer"),
        ("--workers", "-1", "-1 must be at least 0"),
        ("--decode-threads", "0", "0 must be at least 1"),
        ("--max-pixels", "0", "0 must be at least 1"),
    ],
)
def test_bad_option_values_exit_2(
    capsys: pytest.CaptureFixture[str], option: str, value: str, message: str
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["score", ".", "--out", "x.csv", option, value])
    assert info.value.code == cli.EXIT_USAGE
    assert f"{option}: {message}" in capsys.readouterr().err


def test_model_that_cannot_load_exits_3(
    tmp_path: Path, oasis: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s.csv"
    code = cli.main(
        ["score", str(oasis[0]), "--out", str(out), "--model", "artquant-apdd", "--offline"]
    )
    assert code == cli.EXIT_MODEL
    err = capsys.readouterr().err
    assert "Liuuuu123/ArtQuant" in err
    assert "artquant download artquant-apdd" in err
    code = cli.main(["score", str(oasis[0]), "--out", str(out), "--model", str(tmp_path)])
    assert code == cli.EXIT_MODEL


def test_models_lists_the_manifest(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["models"]) == 0
    text = capsys.readouterr().out
    for name in ("artquant-apdd", "one-align", "mplug-owl2-llama2-7b", "Liuuuu123/ArtQuant"):
        assert name in text
    assert "scale 1-10" in text
    assert cli.main(["models", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    names = [m["name"] for m in payload]
    assert names[:3] == ["artquant-apdd", "one-align", "mplug-owl2-llama2-7b"]
    # the Qwen bases used zero-shot, marked unverified (their hub ids could not be checked)
    qwen = [m for m in payload if m["name"].startswith("qwen")]
    assert {m["hub_repo"] for m in qwen} >= {"Qwen/Qwen2.5-VL-7B-Instruct", "Qwen/Qwen3.5-0.8B"}
    assert all(m["verified"] is False and m["prompt"] is None for m in qwen)
    assert payload[0]["local"] == "not downloaded" or Path(payload[0]["local"]).is_dir()


def test_models_into_a_closed_pipe_stops_quietly() -> None:
    # `artquant models | head -1`: the reader closes the pipe before the listing is written.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "artquant_sdk.cli", "models"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.returncode == cli.EXIT_FAILED
    assert done.stderr == ""


def test_download_fetches_the_model_and_its_base(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from huggingface_hub.errors import LocalEntryNotFoundError

    calls: list[tuple[str, Any]] = []

    def fake_snapshot(repo_id: str, **kwargs: Any) -> str:
        calls.append((repo_id, kwargs.get("local_dir")))
        if kwargs.get("local_files_only"):
            raise LocalEntryNotFoundError("empty cache")
        target = Path(kwargs["local_dir"])
        target.mkdir(parents=True)
        (target / "config.json").write_text("{}")
        (target / "model.safetensors").write_bytes(b"")
        return str(target)

    monkeypatch.setenv("ARTQUANT_MODELZOO", str(tmp_path))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    assert cli.main(["download", "artquant-apdd"]) == 0
    out = capsys.readouterr().out
    assert f"artquant-apdd: {tmp_path / 'artquant-apdd'}" in out
    assert f"mplug-owl2-llama2-7b: {tmp_path / 'mplug-owl2-llama2-7b'}" in out
    downloaded = [repo for repo, local_dir in calls if local_dir is not None]
    assert downloaded == ["Liuuuu123/ArtQuant", "MAGAer13/mplug-owl2-llama2-7b"]


def test_download_failure_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    # HF_HUB_OFFLINE=1 (autouse fixture): the real hub client refuses to connect
    assert cli.main(["download", "one-align"]) == cli.EXIT_MODEL
    assert "q-future/one-align" in capsys.readouterr().err


def test_describe_prints_text(
    tiny_checkpoint: Path, oasis: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["describe", str(oasis[0]), "--model", str(tiny_checkpoint), "--device", "cpu"]
    assert cli.main([*args, "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out.strip()
    assert cli.main(["describe", "missing.jpg", "--model", str(tiny_checkpoint)]) == 2
    capsys.readouterr()


def test_describe_of_a_broken_image_fails_with_one_line(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff garbage")
    args = ["describe", str(broken), "--model", str(tiny_checkpoint), "--device", "cpu"]
    assert cli.main(args) == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert "ImageLoadError" in err
    assert "broken.jpg" in err
    assert "Traceback" not in err


def _as_rank(monkeypatch: pytest.MonkeyPatch, rank: int, world_size: int = 2) -> None:
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", str(world_size))
    monkeypatch.setenv("LOCAL_RANK", str(rank))


@pytest.mark.slow
def test_two_processes_share_the_work_and_merge_in_input_order(
    tmp_path: Path,
    tiny_checkpoint: Path,
    inputs: tuple[list[str], dict[str, bool]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rank 1 runs as a real second process while rank 0 runs here; rank 0 merges."""
    paths, expected = inputs
    out = tmp_path / "sharded.jsonl"
    args = _score_args(tiny_checkpoint, out, "--batch-size", "2", "--workers", "0")
    other = _run_cli([*args, *paths], env={"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    _as_rank(monkeypatch, 0)
    code = cli.main([*args, "--merge-timeout", "600", *paths])
    _, stderr = other.communicate(timeout=600)
    assert other.returncode == 0, stderr
    assert code == 0
    rows = _rows(out)
    assert not parts_dir(out).exists()

    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    single = tmp_path / "single.jsonl"
    assert cli.main([*_score_args(tiny_checkpoint, single, "--workers", "0"), *paths]) == 0
    reference = _rows(single)
    assert [r["image"] for r in rows] == [r["image"] for r in reference]
    assert Counter(r["image"] for r in rows) == Counter(list(expected))
    for got, want in zip(rows, reference, strict=True):
        assert (got["error"] is None) == (want["error"] is None)
        if got["score"] is not None:
            assert got["score"] == pytest.approx(want["score"], abs=1e-6)


def test_sharded_resume_after_one_rank_was_killed(
    tmp_path: Path, tiny_checkpoint: Path, oasis: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "s.csv"
    paths = [str(p) for p in oasis[:7]]
    args = _score_args(tiny_checkpoint, out, "--batch-size", "1", "--workers", "0")
    # rank 1 finishes its share; rank 0 never ran (as if killed before starting)
    _as_rank(monkeypatch, 1)
    assert cli.main([*args, *paths]) == 0
    assert not out.exists()
    assert parts_dir(out).is_dir()
    # rerunning without --resume refuses to discard the finished share
    assert cli.main([*args, *paths]) == cli.EXIT_USAGE
    # both ranks with --resume: rank 1 has nothing left, rank 0 scores its share and merges
    assert cli.main([*args, "--resume", *paths]) == 0
    _as_rank(monkeypatch, 0)
    assert cli.main([*args, "--resume", *paths]) == 0
    assert [r["image"] for r in _rows(out)] == paths
    assert not parts_dir(out).exists()
    # a later single-process --resume finds everything done
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert cli.main([*args, "--resume", *paths]) == 0
    assert [r["image"] for r in _rows(out)] == paths


def test_sharded_rank0_gives_up_after_merge_timeout(
    tmp_path: Path, tiny_checkpoint: Path, oasis: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "s.csv"
    _as_rank(monkeypatch, 0)
    args = _score_args(tiny_checkpoint, out, "--workers", "0", "--merge-timeout", "0.2")
    assert cli.main([*args, *map(str, oasis[:3])]) == cli.EXIT_FAILED
    assert not out.exists()
    assert parts_dir(out).is_dir()


@pytest.mark.slow
def test_accelerate_launch_shards_and_merges(
    tmp_path: Path, tiny_checkpoint: Path, oasis: list[Path]
) -> None:
    """The documented launcher: ``accelerate launch --multi_gpu --num_processes 2 -m ...``.

    accelerate starts the processes through torch's elastic launcher (as torchrun does), which
    sets RANK/WORLD_SIZE/LOCAL_RANK; ``--device cpu`` lets this run without GPUs.
    """
    pytest.importorskip("accelerate")
    out = tmp_path / "launched.csv"
    paths = [str(p) for p in oasis[:6]]
    args = _score_args(tiny_checkpoint, out, "--workers", "0")
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
    launcher += ["--num_processes", "2", "--num_machines", "1", "--main_process_port", "0"]
    launcher += ["--mixed_precision", "no", "--dynamo_backend", "no"]
    proc = subprocess.run(
        [*launcher, "-m", "artquant_sdk.cli", *args, *paths],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "[rank 1/2]" in proc.stderr
    assert [r["image"] for r in _rows(out)] == paths
    assert not parts_dir(out).exists()


def _spy_on_tuning(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    from artquant_sdk import _malloc

    calls: list[bool] = []
    monkeypatch.setattr(_malloc, "keep_freed_memory", lambda: calls.append(True) or True)
    return calls


@pytest.mark.parametrize(("flag", "expected"), [([], [True]), (["--no-malloc-tuning"], [])])
def test_score_on_a_cpu_tunes_malloc_unless_told_not_to(
    tmp_path: Path,
    tiny_checkpoint: Path,
    oasis: list[Path],
    monkeypatch: pytest.MonkeyPatch,
    flag: list[str],
    expected: list[bool],
) -> None:
    calls = _spy_on_tuning(monkeypatch)
    out = tmp_path / "s.csv"
    argv = ["score", "--model", str(tiny_checkpoint), "--out", str(out), "--device", "cpu",
            "--no-progress", *flag, str(oasis[0])]  # fmt: skip
    assert cli.main(argv) == cli.EXIT_OK
    assert calls == expected


def test_decode_threads_with_default_workers_warn_and_still_score(
    tmp_path: Path,
    tiny_checkpoint: Path,
    oasis: list[Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # as on a GPU, where the default is worker processes
    monkeypatch.setattr(cli, "_default_workers", lambda scorer: 1)
    out = tmp_path / "s.csv"
    argv = [*_score_args(tiny_checkpoint, out, "--decode-threads", "2"), *map(str, oasis[:2])]
    with caplog.at_level("WARNING", logger="artquant_sdk.cli"):
        assert cli.main(argv) == cli.EXIT_OK
    assert "--decode-threads is ignored" in caplog.text
    assert len(_rows(out)) == 2


def test_serve_without_artquant_serve_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # None in sys.modules makes `import artquant_serve.cli` fail as if it were not installed.
    monkeypatch.setitem(sys.modules, "artquant_serve", None)
    monkeypatch.setitem(sys.modules, "artquant_serve.cli", None)
    assert cli.main(["serve", "--port", "8000"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "pip install artquant-serve" in err
    assert "artquant serve: error:" in err


def test_serve_dispatches_to_artquant_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    seen: dict[str, Any] = {}

    def fake_main(argv: list[str], *, prog: str) -> int:
        seen.update(argv=argv, prog=prog)
        return 0

    module = types.ModuleType("artquant_serve.cli")
    module.main = fake_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "artquant_serve", types.ModuleType("artquant_serve"))
    monkeypatch.setitem(sys.modules, "artquant_serve.cli", module)
    assert cli.main(["serve", "--port", "8123", "--no-describe"]) == 0
    assert seen == {"argv": ["--port", "8123", "--no-describe"], "prog": "artquant serve"}
