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


def test_the_fsdp_launch_config_is_what_the_fsdp_test_runs() -> None:
    """accelerate launch turns fsdp_config keys into FSDP_* variables; test_fsdp.py sets them."""
    from test_fsdp import FSDP_LAUNCH

    fsdp = yaml.safe_load(config_path("accelerate_fsdp.yaml").read_text())["fsdp_config"]
    assert "fsdp_transformer_layer_cls_to_wrap" not in fsdp  # the model's own no-split modules
    for key, value in FSDP_LAUNCH.items():
        if key.startswith("FSDP_"):
            assert str(fsdp[f"fsdp_{key[5:].lower()}"]).lower() == value.lower(), key


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"ACCELERATE_USE_DEEPSPEED": "true"}, "DeepSpeed to GPUs only"),
        ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "1"}, "FSDP version 1 runs on GPUs"),
    ],
)
def test_sharded_launches_accelerate_would_turn_into_ddp_on_cpu_are_handled(
    variables: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On CPU processes accelerate keeps MULTI_CPU (DDP) whatever the launch asked for."""
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from artquant_train.errors import TrainError
    from artquant_train.loop import _sharding_on_cpu_processes

    for name in ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_FSDP", "FSDP_VERSION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    cpu = SimpleNamespace(distributed_type=DistributedType.MULTI_CPU, mixed_precision="no")
    with pytest.raises(TrainError, match=message):
        _sharding_on_cpu_processes(cpu)
    gpu = SimpleNamespace(distributed_type=DistributedType.MULTI_GPU)
    _sharding_on_cpu_processes(gpu)  # accelerate's own business there
