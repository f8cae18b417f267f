"""Each benchmark script end to end on the tiny size: JSON lines, the closing table, the checks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("artquant_model")

import flops
import load_memory
import preprocess_throughput
import score_throughput
import train_throughput
from _bench import SIZES

BENCHMARKS = Path(__file__).resolve().parents[1]


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_flops_script_prints_the_full_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert flops.main(["--size", "full", "--peak-tflops", "790"]) == 0
    [record] = _json_lines(capsys.readouterr().out)
    assert record["kind"] == "flops"
    assert record["total_tflop"] == pytest.approx(1.958, abs=0.001)
    assert record["ceiling_images_per_s"] == pytest.approx(403.5, abs=0.5)


@pytest.mark.slow
@pytest.mark.parametrize("pipeline", ["bench", "cli"])
def test_score_throughput_tiny(
    pipeline: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if pipeline == "cli":
        pytest.importorskip("artquant_sdk")
    log = tmp_path / "score.jsonl"
    argv = ["--size", "tiny", "--device", "cpu", "--batch-sizes", "1,2", "--num-images", "3",
            "--unique-images", "3", "--workers", "1", "--baseline-images", "3",
            "--image-dir", str(tmp_path / "pics"), "--log", str(log),
            "--pipeline", pipeline]  # fmt: skip
    assert score_throughput.main(argv) == 0
    out = capsys.readouterr().out
    records = _json_lines(out)
    assert records == [json.loads(line) for line in log.read_text().splitlines()]
    kinds = [r["kind"] for r in records]
    for kind in ("machine", "flops", "images", "build", "settings", "input_pipeline", "ratios"):
        assert kind in kinds
    (settings,) = [r for r in records if r["kind"] == "settings"]
    assert settings["workers"] == 1
    # cli: the SDK's CPU settings; bench: the model's own (the original's attention)
    expected = ("sdpa", 1) if pipeline == "cli" else ("eager", None)
    assert (settings["visual_attn"], settings["vision_batch_size"]) == expected
    e2e = {r["batch_size"]: r for r in records if r["kind"] == "e2e"}
    assert set(e2e) == {1, 2}
    assert all(r["images"] == 3 and r["images_per_s"] > 0 for r in e2e.values())
    parity = [r for r in records if r["kind"] == "parity"]
    assert {r["batch_size"] for r in parity} == {1, 2}
    assert all(r["compared"] == 3 and r["max_abs_score_diff"] < 1e-5 for r in parity)
    table = out.split("\n\n", 1)[1].splitlines()  # the table after the JSON lines
    assert table[0].split()[:5] == ["kind", "batch_size", "repeat", "workers", "images"]
    assert [row.split()[0] for row in table[2:]] == [
        "input_pipeline", "model_only", "e2e", "model_only", "e2e", "baseline_e2e"
    ]  # fmt: skip


def test_score_throughput_rejects_bad_batch_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        score_throughput.parse_args(["--batch-sizes", "8,x"])
    assert "--batch-sizes must be comma-separated integers, got '8,x'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        score_throughput.parse_args(["--batch-sizes", "0"])


def test_preprocess_throughput_outputs_identical(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--num-images", "4", "--rounds", "1", "--image-dir", str(tmp_path)]
    assert preprocess_throughput.main(argv) == 0
    records = _json_lines(capsys.readouterr().out)
    [compare] = [r for r in records if r["kind"] == "compare"]
    assert compare["identical"] == 4
    assert compare["max_abs_diff"] == 0.0
    assert compare["shape"] == [3, 448, 448]
    steps = {r["step"] for r in records if r["kind"] == "preprocess"}
    assert steps == {"decode", "ours", "clip", "decode+ours", "decode+clip"}


def test_checkpoint_config_reaches_the_target_size() -> None:
    config = load_memory.checkpoint_config(int(2.5e9))
    assert config["hidden_size"] == 2048
    assert config["visual_config"] == SIZES["full"]["visual_config"]
    one_less = load_memory.checkpoint_config(int(2.5e9) - 300_000_000)
    assert one_less["num_hidden_layers"] < config["num_hidden_layers"]
    with pytest.raises(ValueError, match="unknown base size 'huge'"):
        load_memory.checkpoint_config(1, base="huge")


@pytest.mark.slow
def test_load_memory_tiny_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Writes a ~12 MB checkpoint, loads it in fresh processes with both loaders."""
    argv = ["--target-gb", "0.012", "--base-size", "tiny", "--dir", str(tmp_path / "ckpt")]
    assert load_memory.main(argv) == 0
    records = _json_lines(capsys.readouterr().out)
    [checkpoint] = [r for r in records if r["kind"] == "checkpoint"]
    size = (tmp_path / "ckpt" / "model.safetensors").stat().st_size
    assert checkpoint["bytes"] == size
    assert 0.011e9 < size < 0.014e9
    loads = {r["loader"]: r for r in records if r["kind"] == "load"}
    assert set(loads) == {"load_model", "from_pretrained", "load_model_lora"}
    [release] = [r for r in records if r["kind"] == "lora_release"]
    assert loads["load_model_lora"]["disk_gib"] * 2**30 == pytest.approx(size + release["bytes"])
    for record in loads.values():
        assert record["param_dtypes"] == ["torch.bfloat16"]
        assert record["peak_rss_gib"] >= record["rss_before_load_gib"] > 0
    assert loads["load_model"]["params"] == loads["from_pretrained"]["params"]
    assert loads["load_model_lora"]["params"] == loads["load_model"]["params"]


def test_lora_release_merges_into_the_base(tmp_path: Path) -> None:
    """The written release loads over the base and moves q_proj by B @ A * alpha / r."""
    import torch

    from artquant_model import load_model

    base = tmp_path / "base"
    load_memory.write_random_checkpoint(base, load_memory.checkpoint_config(1, base="tiny"))
    release = tmp_path / "release"
    load_memory.write_random_lora_release(release, base)
    plain = load_model(base, dtype="float32")
    merged = load_model(release, base=base, dtype="float32")
    adapter = torch.load(release / "adapter_model.bin", weights_only=True)
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    delta = adapter[f"{prefix}.lora_B.weight"].float() @ adapter[f"{prefix}.lora_A.weight"].float()
    scale = load_memory.LORA_ALPHA / load_memory.LORA_RANK
    got = (
        merged.model.layers[0].self_attn.q_proj.weight
        - plain.model.layers[0].self_attn.q_proj.weight
    )
    torch.testing.assert_close(got, delta * scale, atol=2e-3, rtol=0)  # bf16 inputs
    # the release's vision tower replaces the base's
    assert not torch.equal(
        merged.model.vision_model.embeddings.patch_embed.weight,
        plain.model.vision_model.embeddings.patch_embed.weight,
    )


def test_written_checkpoint_is_valid_safetensors(tmp_path: Path) -> None:
    """The hand-written file reads back with safetensors and matches the model's state dict."""
    from safetensors import safe_open

    config = load_memory.checkpoint_config(1, base="tiny")
    size = load_memory.write_random_checkpoint(tmp_path, config)
    import torch

    from artquant_model import MPLUGOwl2Config, MPLUGOwl2ForCausalLM

    with torch.device("meta"):
        expected = MPLUGOwl2ForCausalLM(MPLUGOwl2Config(**config)).state_dict()
    with safe_open(tmp_path / "model.safetensors", "pt") as handle:
        assert set(handle.keys()) == set(expected)
        for name in list(expected)[:20]:
            tensor = handle.get_tensor(name)
            assert tuple(tensor.shape) == tuple(expected[name].shape)
            assert tensor.dtype == torch.bfloat16
            assert float(tensor.float().std()) == pytest.approx(0.02, rel=0.3)
    assert size == (tmp_path / "model.safetensors").stat().st_size
    assert json.loads((tmp_path / "config.json").read_text())["num_hidden_layers"] == 1


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_script_dry_run(tmp_path: Path) -> None:
    """gpu.sh runs every step on the CPU (tiny size) from the source tree."""
    env = {**os.environ, "DRY_RUN": "1", "OUT": str(tmp_path / "out"), "PYTHON": sys.executable,
           "TMPDIR": str(tmp_path), "NUM_IMAGES": "4", "LOAD_GB": "0.012",
           "WORKERS": "1"}  # fmt: skip
    done = subprocess.run(
        ["bash", str(BENCHMARKS / "gpu.sh")], env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "out"
    for name in (
        "gpu.log",
        "flops.txt",
        "preprocess.jsonl",
        "score.jsonl",
        "score_visual_eager.jsonl",
        "load.jsonl",
    ):
        assert (out / name).is_file(), name
    kinds = {json.loads(line)["kind"] for line in (out / "score.jsonl").read_text().splitlines()}
    assert {"e2e", "model_only", "baseline_e2e", "parity", "ratios"} <= kinds
    qwen = out / "score_qwen_tiny.jsonl"
    if (BENCHMARKS.parent.parent / "shared" / "tokenizers" / "qwen2_vl").is_dir():
        records = [json.loads(line) for line in qwen.read_text().splitlines()]
        assert {"product", "plain", "ratios"} <= {r["kind"] for r in records}
        (ratios,) = [r for r in records if r["kind"] == "ratios"]
        assert ratios["max_score_difference"] < 1e-5
    else:
        assert "Qwen backbone: skipped" in (out / "gpu.log").read_text()


def test_plot_summarises_medians_and_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    import plot

    base = {"script": "score_throughput", "device": "cuda"}
    rows = [
        {**base, "kind": "flops", "ceiling_images_per_s": 400.0},
        {**base, "kind": "e2e", "batch_size": 8, "images_per_s": 10.0},
        {**base, "kind": "e2e", "batch_size": 8, "images_per_s": 30.0},
        {**base, "kind": "e2e", "batch_size": 8, "images_per_s": 20.0},
        {**base, "kind": "e2e", "batch_size": 1, "images_per_s": 5.0},
        {**base, "kind": "model_only", "batch_size": 1, "images_per_s": 6.0},
        {**base, "kind": "baseline_e2e", "batch_size": 1, "images_per_s": 2.0},
    ]
    summary = plot.summarise(rows)
    assert summary["e2e"] == {1: 5.0, 8: 20.0}  # the median of the three repeats
    assert summary["model_only"] == {1: 6.0}
    assert summary["baseline"] == 2.0
    assert summary["ceiling"] == 400.0
    log = tmp_path / "run.jsonl"
    log.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "plot.png"
    assert plot.main([str(log), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"script": "other"}) + "\n")
    with pytest.raises(ValueError, match="holds no score_throughput records"):
        plot.read_runs([empty])


@pytest.mark.slow
def test_serve_throughput_tiny(shared_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("artquant_serve")
    import serve_throughput

    argv = ["--size", "tiny", "--num-images", "4", "--unique-images", "2", "--clients", "2",
            "--batch-size", "2", "--no-plain",
            "--tokenizer", str(shared_dir / "tokenizers" / "llama2")]  # fmt: skip
    assert serve_throughput.main(argv) == 0
    records = _json_lines(capsys.readouterr().out)
    kinds = [r["kind"] for r in records]
    assert kinds == ["machine", "direct", "server", "direct", "summary"]
    server = records[2]
    assert server["images"] == 4
    assert server["p99_ms"] >= server["p50_ms"] > 0
    # the same files through the server and through ArtQuant.score: the same scores
    assert server["max_score_diff_vs_direct"] < 1e-5
    assert records[3]["max_score_diff_vs_direct"] < 1e-5
    assert records[4]["server_over_direct"] > 0


@pytest.mark.slow
def test_attributes_cost_tiny(
    shared_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompt = "picture-first"  # the question-first path is tested in artquant-model
    pytest.importorskip("artquant_sdk")
    import attributes_cost

    log = tmp_path / "attributes.jsonl"
    argv = ["--size", "tiny", "--num-images", "3", "--unique-images", "2", "--batch-size", "2",
            "--repeats", "2", "--prompt", prompt, "--log", str(log),
            "--tokenizer", str(shared_dir / "tokenizers" / "llama2")]  # fmt: skip
    assert attributes_cost.main(argv) == 0
    records = _json_lines(capsys.readouterr().out)
    assert records == [json.loads(line) for line in log.read_text().splitlines()]
    kinds = [r["kind"] for r in records]
    assert kinds == ["machine", "total", "attributes", "total", "attributes", "one_at_a_time",
                     "summary"]  # fmt: skip
    assert {r["prompt"] for r in records} == {prompt}
    shared = records[5]
    assert (shared["questions"], shared["images"]) == (11, 2)
    # sharing the picture among the questions gives the one-at-a-time scores
    assert shared["max_score_diff"] < 1e-5
    summary = records[6]
    medians = [sorted(r["ms_per_image"] for r in records if r["kind"] == k)
               for k in ("total", "attributes")]  # fmt: skip
    want = ((medians[1][0] + medians[1][1]) / 2) / ((medians[0][0] + medians[0][1]) / 2)
    assert summary["attributes_over_total"] == pytest.approx(want)
    assert summary["met"] == (summary["attributes_over_total"] <= 1.5)
    assert summary["cpu_attributes_over_total"] > 0


def test_attributes_cost_rejects_bad_counts(capsys: pytest.CaptureFixture[str]) -> None:
    import attributes_cost

    with pytest.raises(SystemExit):
        attributes_cost.main(["--repeats", "0"])
    assert "--repeats must be at least 1" in capsys.readouterr().err


def test_attributes_cost_spec_layouts() -> None:
    import attributes_cost

    from artquant_model import ARTQUANT_SCORE_PROMPT

    first = attributes_cost.attribute_spec("picture-first")
    assert len(first.questions) == 11
    assert first.question("color").raw_prompt == (
        f"{attributes_cost.SYSTEM} USER: <|image|>\nHow would you rate the color of this "
        "painting? ASSISTANT: The color of the painting is"
    )
    try:  # the trainer's own attribute prompt, with its default template
        from artquant_train.attributes import attribute_prompt
        from artquant_train.config import TemplateConfig
    except ImportError:  # pragma: no cover
        pass
    else:
        want = attribute_prompt("Light and shadow", TemplateConfig())
        assert first.question("light_and_shadow").raw_prompt == want
    assert attributes_cost.attribute_spec("question-first").question().raw_prompt == (
        ARTQUANT_SCORE_PROMPT
    )


def test_serve_throughput_rejects_bad_counts(capsys: pytest.CaptureFixture[str]) -> None:
    import serve_throughput

    with pytest.raises(SystemExit):
        serve_throughput.parse_args(["--clients", "0"])
    assert "--clients must be at least 1" in capsys.readouterr().err


@pytest.mark.slow
def test_train_throughput_tiny(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("artquant_train")
    log = tmp_path / "train.jsonl"
    argv = ["--backbone", "mplug", "--size", "tiny", "--steps", "1", "--warmup", "1",
            "--batch-size", "2", "--log", str(log)]  # fmt: skip
    assert train_throughput.main(argv) == 0
    records = _json_lines(capsys.readouterr().out)
    assert records == [json.loads(line) for line in log.read_text().splitlines()]
    (row,) = [r for r in records if r["kind"] == "throughput"]
    assert row["backbone"] == "mplug"
    assert row["trainer_samples_per_s"] > 0
    assert row["plain_samples_per_s"] > 0
    assert row["ratio"] == pytest.approx(
        row["trainer_samples_per_s"] / row["plain_samples_per_s"], rel=1e-2
    )
    assert row["cpu_ratio"] == pytest.approx(
        row["trainer_samples_per_cpu_s"] / row["plain_samples_per_cpu_s"], rel=1e-2
    )
