"""Configuration: defaults = the recipe, precedence file < environment < command line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from artquant_train import ConfigError, LoraConfig, TrainConfig, load_config
from artquant_train.cli import parse_overrides, resolve_config
from artquant_train.config import environment_overrides, parse_data_sources, parse_value

MINIMAL = {"model": {"base": "base"}, "data": {"train": [{"path": "score.json"}]}}


def test_defaults_are_the_paper_recipe() -> None:
    from artquant_train.backbones import training_backbone_class

    plain = TrainConfig.model_validate(MINIMAL)
    # LoRA targets and the fully trained parts are the backbone's (None until the run starts)
    assert plain.lora.targets is None
    assert plain.freeze.train_vision_model is None
    cfg = training_backbone_class("mplug_owl2")().resolve(plain)
    assert cfg.lora.targets == ("q_proj", "v_proj.multiway.1")
    assert cfg.lora.exclude == ("model.vision_model", "model.visual_abstractor")
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout) == (128, 256, 0.05)
    assert cfg.freeze.train_vision_model
    assert cfg.freeze.train_abstractor
    assert not cfg.freeze.train_llm
    assert (cfg.loss.weight_description, cfg.loss.weight_next_token, cfg.loss.weight_kl) == (
        1.0,
        0.05,
        1.0,
    )
    assert cfg.loss.kl == "open"
    assert (cfg.optim.lr, cfg.optim.warmup_ratio, cfg.optim.scheduler) == (2e-5, 0.03, "cosine")
    assert (cfg.run.batch_size, cfg.run.grad_accum, cfg.run.epochs) == (4, 4, 3.0)
    assert cfg.levels.values == (10.0, 7.5, 5.0, 3.5, 1.0)
    assert cfg.data.template.name == "vicuna_v1"
    assert cfg.data.template.image_first
    assert cfg.data.template.system.startswith("A chat between a curious user")


def test_qwen_defaults_fill_only_what_the_configuration_leaves_open() -> None:
    from artquant_train.backbones import training_backbone_class

    qwen = training_backbone_class("hf_vlm")()
    cfg = qwen.resolve(TrainConfig.model_validate(MINIMAL))
    attention_and_mlp = (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    )
    assert cfg.lora.targets == (*attention_and_mlp, "in_proj_qkv", "in_proj_z", "out_proj")
    assert cfg.lora.exclude == ("model.visual",)
    assert cfg.freeze.train_vision_model is False
    assert cfg.freeze.train_abstractor is True
    assert cfg.model.resolution is not None
    assert (cfg.model.resolution.mode, cfg.model.resolution.size) == ("fixed", 448)
    given = {**MINIMAL, "lora": {"targets": ["q_proj"]}, "freeze": {"train_vision_model": True}}
    cfg = qwen.resolve(TrainConfig.model_validate(given))
    assert cfg.lora.targets == ("q_proj",)
    assert cfg.freeze.train_vision_model is True


def test_unknown_keys_and_bad_values_fail_with_their_names() -> None:
    with pytest.raises(ConfigError, match=r"optim\.lrr"):
        load_config(overrides={**MINIMAL, "optim.lrr": 1.0}, environ={})
    with pytest.raises(ConfigError, match=r"loss\.kl"):
        load_config(overrides={**MINIMAL, "loss.kl": "sideways"}, environ={})
    with pytest.raises(ConfigError, match=r"data\.train"):
        load_config(overrides={"model.base": "b", "data.train": []}, environ={})
    with pytest.raises(ConfigError, match="same length"):
        load_config(overrides={**MINIMAL, "levels.values": [1.0, 2.0]}, environ={})


def test_configs_are_frozen() -> None:
    cfg = TrainConfig.model_validate(MINIMAL)
    with pytest.raises(ValueError, match="frozen"):
        cfg.optim.lr = 1.0  # type: ignore[misc]


def test_precedence_file_then_environment_then_command_line(tmp_path: Path) -> None:
    file = tmp_path / "train.yaml"
    file.write_text(
        "model: {base: from_file}\n"
        "data: {train: [{path: a.json}]}\n"
        "optim: {lr: 0.1, warmup_ratio: 0.2}\n"
        "lora: {r: 8}\n",
        encoding="utf-8",
    )
    env = {"ARTQUANT_TRAIN_OPTIM__LR": "0.01", "ARTQUANT_TRAIN_LORA__R": "16", "OTHER": "x"}
    cfg = load_config(file, overrides={"lora.r": 32}, environ=env)
    assert cfg.optim.lr == 0.01  # environment beats the file
    assert cfg.optim.warmup_ratio == 0.2  # file beats the default
    assert cfg.lora.r == 32  # command line beats the environment
    assert cfg.model.base == "from_file"


def _clear_train_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("ARTQUANT_TRAIN_")]:
        monkeypatch.delenv(name)


def _cli_lora(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, int, float]:
    _clear_train_environment(monkeypatch)
    cfg, _ = resolve_config(["--base", "b", "--train-data", "s.json", *argv])
    return cfg.lora.r, cfg.lora.alpha, cfg.lora.scale


def test_lora_alpha_follows_the_rank_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    # The recipe's scale alpha / r = 256 / 128 = 2 survives a smaller rank (issue 11: --lora-r 8
    # used to keep alpha 256, a 16 times larger scale).
    assert _cli_lora([], monkeypatch) == (128, 256, 2.0)
    assert _cli_lora(["--lora-r", "8"], monkeypatch) == (8, 16, 2.0)
    assert _cli_lora(["--lora.r", "8"], monkeypatch) == (8, 16, 2.0)
    assert _cli_lora(["--lora-r", "8", "--lora-alpha", "32"], monkeypatch) == (8, 32, 4.0)
    assert _cli_lora(["--lora-alpha", "32"], monkeypatch) == (128, 32, 0.25)
    assert _cli_lora(["--lora-r", "8", "--lora.alpha", "8"], monkeypatch) == (8, 8, 1.0)
    # the named flag and the dotted one are the same field; the dotted one is applied last
    assert _cli_lora(["--lora-alpha", "4", "--lora.alpha", "64"], monkeypatch)[1] == 64
    # python API: an explicit None means "derive it", like an absent alpha
    assert LoraConfig(r=4, alpha=None).alpha == 8  # type: ignore[arg-type]
    assert LoraConfig(r="6").alpha == 12  # type: ignore[arg-type]


def test_lora_alpha_precedence_file_environment_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def write(name: str, lora: str) -> Path:
        file = tmp_path / name
        file.write_text(
            f"model: {{base: b}}\ndata: {{train: [{{path: a.json}}]}}\nlora: {lora}\n",
            encoding="utf-8",
        )
        return file

    only_r = write("only_r.yaml", "{r: 8}")
    explicit = write("explicit.yaml", "{r: 8, alpha: 64}")

    def lora(file: Path | None, env: dict[str, str], **overrides: object) -> tuple[int, int]:
        cfg = load_config(file, overrides=overrides, environ=env)
        return cfg.lora.r, cfg.lora.alpha

    # a file that sets only the rank gets 2r; one that sets alpha keeps it
    assert lora(only_r, {}) == (8, 16)
    assert lora(explicit, {}) == (8, 64)
    # a rank from a later source re-derives alpha only where no source set alpha
    assert lora(only_r, {"ARTQUANT_TRAIN_LORA__R": "16"}) == (16, 32)
    assert lora(only_r, {}, **{"lora.r": 4}) == (4, 8)
    assert lora(explicit, {"ARTQUANT_TRAIN_LORA__R": "16"}) == (16, 64)
    assert lora(explicit, {}, **{"lora.r": 4}) == (4, 64)
    # alpha itself: environment beats the file, the command line beats the environment
    env_alpha = {"ARTQUANT_TRAIN_LORA__ALPHA": "12"}
    assert lora(explicit, env_alpha) == (8, 12)
    assert lora(only_r, env_alpha) == (8, 12)
    assert lora(explicit, env_alpha, **{"lora.alpha": 24}) == (8, 24)
    assert lora(None, {"ARTQUANT_TRAIN_LORA__R": "32"}, **MINIMAL) == (32, 64)
    # the CLI's named flags sit on top of the same order
    _clear_train_environment(monkeypatch)
    monkeypatch.setenv("ARTQUANT_TRAIN_LORA__ALPHA", "12")
    cfg, _ = resolve_config(["--config", str(only_r), "--lora-r", "4"])
    assert (cfg.lora.r, cfg.lora.alpha) == (4, 12)
    cfg, _ = resolve_config(["--config", str(explicit), "--lora-alpha", "2"])
    assert (cfg.lora.r, cfg.lora.alpha) == (8, 2)
    # the resolved file written beside checkpoints holds alpha explicitly and reloads as is
    saved = load_config(only_r, environ={}).save(tmp_path / "resolved.yaml")
    assert "alpha: 16" in saved.read_text(encoding="utf-8")
    assert lora(saved, {}, **{"lora.r": 4}) == (4, 16)


def test_bad_lora_sizes_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"lora\.r: .*greater than or equal to 1") as info:
        load_config(overrides={**MINIMAL, "lora.r": 0}, environ={})
    assert "lora.alpha" not in str(info.value)  # no second, derived complaint
    with pytest.raises(ConfigError, match=r"lora\.r: .*integer"):
        load_config(overrides={**MINIMAL, "lora.r": "eight"}, environ={})
    with pytest.raises(ConfigError, match=r"lora\.alpha: .*greater than or equal to 1"):
        load_config(overrides={**MINIMAL, "lora.r": 8, "lora.alpha": 0}, environ={})


def test_json_files_and_environment_lists(tmp_path: Path) -> None:
    file = tmp_path / "train.json"
    file.write_text(json.dumps(MINIMAL), encoding="utf-8")
    env = {"ARTQUANT_TRAIN_LORA__TARGETS": "[q_proj, o_proj]"}
    cfg = load_config(file, environ=env)
    assert cfg.lora.targets == ("q_proj", "o_proj")


def test_bad_sources_raise_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml", environ={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad, environ={})
    with pytest.raises(ConfigError, match="SECTION"):
        environment_overrides({"ARTQUANT_TRAIN_LR": "1"})


def test_parse_value_reads_scientific_notation_and_yaml() -> None:
    assert parse_value("1e-4") == 1e-4
    assert parse_value("true") is True
    assert parse_value("[a, b]") == ["a", "b"]
    assert parse_value("runs/x") == "runs/x"
    assert parse_value("") == ""
    assert parse_value("null") is None


def test_train_data_weights_inline_or_separate() -> None:
    assert parse_data_sources(["score.json:1", "desc.json:0.5"]) == [
        {"path": "score.json", "weight": 1.0},
        {"path": "desc.json", "weight": 0.5},
    ]
    assert parse_data_sources(["a.json", "b.json"], [2, 0.25])[1] == {
        "path": "b.json",
        "weight": 0.25,
    }
    assert parse_data_sources(["C:/data/a.json"])[0]["path"] == "C:/data/a.json"
    with pytest.raises(ConfigError, match="3 --train-data"):
        parse_data_sources(["a", "b", "c"], [1.0])
    with pytest.raises(ConfigError, match="must be > 0"):
        parse_data_sources(["a.json:0"])
    with pytest.raises(ConfigError, match="inline weight"):
        parse_data_sources(["a.json:2"], [1.0])


def test_command_line_flags_and_dotted_overrides(tmp_path: Path) -> None:
    cfg, _ = resolve_config(
        [
            "--base",
            "b",
            "--tokenizer",
            "t",
            "--train-data",
            "s.json:1",
            "d.json:0.5",
            "--image-root",
            "imgs",
            "--val-data",
            "v.json",
            "--output-dir",
            str(tmp_path),
            "--max-steps",
            "7",
            "--epochs",
            "2",
            "--batch-size",
            "3",
            "--grad-accum",
            "2",
            "--lr",
            "1e-3",
            "--lora-r",
            "4",
            "--seed",
            "5",
            "--resume",
            "--loss.kl",
            "closed",
            "--freeze.train_llm=true",
        ]
    )
    assert cfg.model.tokenizer == "t"
    assert [s.weight for s in cfg.data.train] == [1.0, 0.5]
    assert (cfg.data.image_root, cfg.data.val) == ("imgs", "v.json")
    assert (cfg.run.max_steps, cfg.run.epochs, cfg.run.batch_size, cfg.run.grad_accum) == (
        7,
        2,
        3,
        2,
    )
    assert (cfg.optim.lr, cfg.lora.r, cfg.run.seed, cfg.run.resume) == (1e-3, 4, 5, True)
    assert cfg.loss.kl == "closed"
    assert cfg.freeze.train_llm


def test_bad_command_lines_exit_with_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    from artquant_train.cli import main

    assert main(["--base", "b", "--train-data", "s.json", "--bogus", "1"]) == 2
    assert "unrecognised argument '--bogus'" in capsys.readouterr().err
    assert main(["--base", "b"]) == 2
    assert "data" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="needs a value"):
        parse_overrides(["--optim.lr"])


def test_print_config_prints_resolved_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    from artquant_train.cli import main

    assert main(["--base", "b", "--train-data", "s.json", "--lr", "0.5", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "lr: 0.5" in out
    assert "null = the backbone's default" in out  # no base folder "b" to read defaults from


def test_print_config_fills_in_the_bases_backbone_defaults(
    tiny_base: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from artquant_train.cli import main

    assert main(["--base", str(tiny_base), "--train-data", "s.json", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "(mplug_owl2 backbone)" in out
    assert "v_proj.multiway.1" in out


def test_yaml_round_trip(tmp_path: Path) -> None:
    cfg = load_config(overrides={**MINIMAL, "lora.r": 7}, environ={})
    path = cfg.save(tmp_path / "c.yaml")
    assert load_config(path, environ={}) == cfg


def test_every_model_type_the_sdk_scores_with_trains_and_others_are_refused(
    tmp_path: Path,
) -> None:
    from artquant_model.backbones import supported_model_types
    from artquant_train import TrainError
    from artquant_train.backbones import training_backbone

    for model_type in supported_model_types():
        (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
        assert model_type in training_backbone(tmp_path).model_types
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(TrainError, match="not supported"):
        training_backbone(tmp_path)
