"""The shipped launch and recipe configurations parse and say what the docs say."""

from __future__ import annotations

import json

import pytest
import yaml

from artquant_train import TrainConfig, load_config
from artquant_train.configs import available_configs, config_path
from artquant_train.configs.__main__ import main as configs_main


def test_deepspeed_configs_have_their_stage_and_auto_fields() -> None:
    for stage in (1, 2, 3):
        config = json.loads(config_path(f"zero{stage}").read_text())
        assert config["zero_optimization"]["stage"] == stage
        for key in (
            "train_micro_batch_size_per_gpu",
            "gradient_accumulation_steps",
            "gradient_clipping",
            "train_batch_size",
        ):
            assert config[key] == "auto"  # filled by the trainer from its own config


def test_accelerate_configs_name_their_strategy() -> None:
    expected = {
        "accelerate_ddp.yaml": "MULTI_GPU",
        "accelerate_zero1.yaml": "DEEPSPEED",
        "accelerate_zero2.yaml": "DEEPSPEED",
        "accelerate_zero3.yaml": "DEEPSPEED",
        "accelerate_fsdp.yaml": "FSDP",
        "accelerate_cpu_gloo.yaml": "MULTI_CPU",
    }
    for name, strategy in expected.items():
        assert yaml.safe_load(config_path(name).read_text())["distributed_type"] == strategy
    assert set(expected) <= set(available_configs())


def test_apddv2_recipe_is_the_default_recipe() -> None:
    from artquant_train.backbones import training_backbone_class

    mplug = training_backbone_class("mplug_owl2")()  # the recipe's base is mPLUG-Owl2
    recipe = mplug.resolve(load_config(config_path("apddv2_recipe"), environ={}))
    defaults = mplug.resolve(
        TrainConfig.model_validate(
            {"model": {"base": recipe.model.base}, "data": recipe.data.model_dump()}
        )
    )
    for section in ("lora", "freeze", "loss", "optim", "levels"):
        assert getattr(recipe, section) == getattr(defaults, section), section
    assert recipe.run.batch_size * recipe.run.grad_accum * 2 == 32


def test_config_lookup_errors_and_cli(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(FileNotFoundError, match="available"):
        config_path("zero9")
    assert configs_main(["zero2"]) == 0
    assert capsys.readouterr().out.strip().endswith("zero2.json")
    assert configs_main(["nope"]) == 1
