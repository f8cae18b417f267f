"""The loop on the tiny model: outputs, exact resume, NaN stop, data errors, freezing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _train_synthetic import tiny_run_config, write_json

import artquant_train.loop as loop_module
from artquant_model.testing import tiny_model, tiny_tokenizer
from artquant_train import (
    AnswerFormatError,
    EmptyDatasetError,
    MissingImageError,
    NonFiniteLossError,
    StepInfo,
    TrainConfig,
    TrainError,
    complete_checkpoints,
    latest_checkpoint,
    lr_multiplier,
    plot_training,
    prepare_for_training,
    train,
)
from artquant_train.loop import build_training_items


def _trainable(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_run_writes_logs_checkpoints_and_a_final_release(
    tiny_base: Path, small_data: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    config = tiny_run_config(
        tiny_base, small_data, out, **{"data.val": str(small_data["val"]), "validation.every": 2}
    )
    steps: list[StepInfo] = []
    result = train(config, on_step_end=steps.append)
    assert result.global_step == 4
    assert [s.step for s in steps] == [1, 2, 3, 4]
    assert all(s.loss > 0 for s in steps)
    # warm-up 3 % of 4 steps = 1 step at lr 0, then cosine
    assert steps[0].lr == 0.0
    assert steps[1].lr == pytest.approx(1e-3)
    assert [p.name for p in complete_checkpoints(out)] == [
        "checkpoint-00000002",
        "checkpoint-00000004",
    ]

    def strict(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant}")

    lines = (out / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line, parse_constant=strict) for line in lines]
    assert {"step", "loss", "lr", "samples_per_s", "ce_description", "ce_score", "kl"} <= set(
        records[0]
    )
    assert len(result.validations) == 2
    assert {"srcc", "plcc", "mae"} <= set(result.validations[0])
    from artquant_train.backbones import training_backbone_class

    saved = __import__("yaml").safe_load((out / "train_config.yaml").read_text())
    # saved resolved: the backbone's defaults filled in where the configuration left None
    assert TrainConfig.model_validate(saved) == training_backbone_class("mplug_owl2")().resolve(
        config
    )
    assert saved["lora"]["targets"] == ["q_proj", "v_proj.multiway.1"]
    for folder in (out / "final", out / "best"):
        names = {p.name for p in folder.iterdir()}
        assert {
            "adapter_config.json",
            "adapter_model.safetensors",
            "non_lora_trainables.bin",
            "config.json",
            "tokenizer.json",
            "preprocessor_config.json",
            "train_config.yaml",
        } <= names
    try:
        import matplotlib  # noqa: F401
    except ImportError:  # the isolated environment has no plot extra: no figure, no error
        assert not (out / "training_curves.png").exists()
    else:
        assert (out / "training_curves.png").stat().st_size > 10_000
        figure = plot_training(out)
        assert [a.get_title() for a in figure.axes[:3]] == [
            "training loss",
            "learning rate",
            "validation",
        ]
        with pytest.raises(TrainError, match=r"no metrics\.jsonl"):
            plot_training(tmp_path / "empty")
    adapter = json.loads((out / "final" / "adapter_config.json").read_text())
    assert adapter["r"] == 4
    assert adapter["lora_alpha"] == 8
    assert sorted(adapter["target_modules"]) == sorted(
        f"model.layers.{i}.self_attn.{m}" for i in range(2) for m in ("q_proj", "v_proj.multiway.1")
    )
    assert adapter["base_model_name_or_path"] == str(tiny_base)
    non_lora = torch.load(out / "final" / "non_lora_trainables.bin", weights_only=True)
    assert all(
        k.startswith(
            ("base_model.model.model.vision_model.", "base_model.model.model.visual_abstractor.")
        )
        for k in non_lora
    )
    assert not any("lora_" in k for k in non_lora)


def test_resume_after_interruption_reproduces_the_uninterrupted_weights(
    tiny_base: Path, small_data: dict[str, Path], tmp_path: Path
) -> None:
    # 24 score + 24 description samples, batch 4 x accumulation 2: 6 steps per epoch. Eight
    # steps cross an epoch boundary; LoRA dropout on, so the RNG state matters too.
    overrides = {"run.max_steps": 8, "checkpoint.every": 3, "lora.dropout": 0.1}
    final: dict[str, torch.Tensor] = {}

    def keep_last(info: StepInfo) -> None:
        final.clear()
        final.update(_trainable(info.model))

    train(
        tiny_run_config(tiny_base, small_data, tmp_path / "straight", **overrides),
        on_step_end=keep_last,
    )
    reference = dict(final)

    class Interrupted(Exception):
        pass

    def interrupt(info: StepInfo) -> None:
        if info.step == 7:  # after the checkpoint of step 6, before step 8
            raise Interrupted

    cut = tmp_path / "cut"
    with pytest.raises(Interrupted):
        train(tiny_run_config(tiny_base, small_data, cut, **overrides), on_step_end=interrupt)
    assert latest_checkpoint(cut) == cut / "checkpoint-00000006"
    # a crash while writing the next checkpoint leaves a temporary folder that resume ignores
    (cut / ".tmp-checkpoint-00000009-dead").mkdir()
    # a newer folder without the COMPLETE marker (a half copy): resume must not pick it
    (cut / "checkpoint-00000009").mkdir()
    (cut / "checkpoint-00000009" / "trainer_state.json").write_text("{}")
    resumed_steps: list[int] = []

    def record(info: StepInfo) -> None:
        resumed_steps.append(info.step)
        keep_last(info)

    train(
        tiny_run_config(tiny_base, small_data, cut, **overrides, **{"run.resume": True}),
        on_step_end=record,
    )
    assert resumed_steps == [7, 8]
    assert not (cut / ".tmp-checkpoint-00000009-dead").exists()
    assert set(final) == set(reference)
    for name, tensor in reference.items():
        assert torch.equal(final[name], tensor), name


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(
    tiny_base: Path, small_data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = loop_module.combine_losses
    calls = {"n": 0}

    def poisoned(*args: object, **kwargs: object) -> torch.Tensor:
        calls["n"] += 1
        loss = real(*args, **kwargs)  # type: ignore[arg-type]
        return loss * float("nan") if calls["n"] > 4 else loss  # step 3 (2 micro-batches/step)

    monkeypatch.setattr(loop_module, "combine_losses", poisoned)
    out = tmp_path / "nan"
    config = tiny_run_config(tiny_base, small_data, out, **{"checkpoint.every": 2})
    with pytest.raises(NonFiniteLossError, match="loss is nan at step 3"):
        train(config)
    assert latest_checkpoint(out) == out / "checkpoint-00000002"
    assert not (out / "final").exists()


def test_data_errors_are_clear(
    tiny_base: Path, small_data: dict[str, Path], tmp_path: Path
) -> None:
    tok = tiny_tokenizer()
    rows = json.loads(small_data["score"].read_text())
    missing = write_json(tmp_path / "missing.json", [{**rows[0], "image": "nope.png"}])
    config = tiny_run_config(
        tiny_base, small_data, tmp_path, **{"data.train": [{"path": str(missing)}]}
    )
    with pytest.raises(MissingImageError, match=r"1 of 1 images .*nope\.png"):
        build_training_items(config, tok)

    empty = write_json(tmp_path / "empty.json", [])
    config = tiny_run_config(
        tiny_base, small_data, tmp_path, **{"data.train": [{"path": str(empty)}]}
    )
    with pytest.raises(EmptyDatasetError, match="holds no samples"):
        build_training_items(config, tok)

    bad_answer = {
        **rows[0],
        "conversations": [rows[0]["conversations"][0], {"from": "gpt", "value": "Lovely."}],
    }
    bad = write_json(tmp_path / "bad.json", [bad_answer])
    config = tiny_run_config(
        tiny_base, small_data, tmp_path, **{"data.train": [{"path": str(bad)}]}
    )
    with pytest.raises(AnswerFormatError, match=r"bad\.json: sample .*level prefix"):
        build_training_items(config, tok)

    config = tiny_run_config(
        tiny_base,
        small_data,
        tmp_path / "tiny",
        **{"data.train": [{"path": str(small_data["score"]), "weight": 0.1}], "run.batch_size": 8},
    )
    with pytest.raises(EmptyDatasetError, match="fewer than grad_accum"):
        train(config)


def test_score_samples_without_level_probs_get_the_estimated_distribution(
    tiny_base: Path, small_data: dict[str, Path], tmp_path: Path
) -> None:
    from artquant_data import estimate_level_distribution

    rows = json.loads(small_data["score"].read_text())
    stripped = write_json(
        tmp_path / "s.json", [{k: v for k, v in r.items() if k != "level_probs"} for r in rows[:3]]
    )
    config = tiny_run_config(
        tiny_base, small_data, tmp_path, **{"data.train": [{"path": str(stripped)}]}
    )
    items, _ = build_training_items(config, tiny_tokenizer())
    assert len(items) == 3
    assert len({row["gt_score"] for row in rows[:3]}) == 3
    for item, row in zip(items, rows[:3], strict=True):
        # each sample gets the estimate of its own score, the same as a call for it alone
        expected = estimate_level_distribution(row["gt_score"])
        assert item.level_probs == pytest.approx(tuple(expected), abs=1e-12)


def test_recipe_trains_lora_vision_and_abstractor_only(
    tiny_base: Path,
    small_data: dict[str, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = tiny_run_config(tiny_base, small_data, tmp_path)
    with caplog.at_level("INFO", logger="artquant_train.modeling"):
        prepared = prepare_for_training(tiny_model(), config)
    assert "LoRA r=4 alpha=8 (scale 2) on 4 modules" in caplog.text  # resolved, at start
    trainable = {n for n, p in prepared.named_parameters() if p.requires_grad}
    lora = {n for n in trainable if "lora_" in n}
    assert len(lora) == 2 * 2 * 2  # 2 layers x (q_proj, v_proj.multiway.1) x (A, B)
    assert all(".q_proj." in n or ".v_proj.multiway.1." in n for n in lora)
    rest = trainable - lora
    assert rest
    assert all(".vision_model." in n or ".visual_abstractor." in n for n in rest)
    frozen = {n for n, p in prepared.named_parameters() if not p.requires_grad}
    assert any(n.endswith("lm_head.weight") for n in frozen)
    assert any("embed_tokens" in n for n in frozen)
    assert any("v_proj.multiway.0" in n for n in frozen)
    assert all(p.dtype == torch.float32 for p in prepared.parameters() if p.requires_grad)
    checkpointed = prepare_for_training(
        tiny_model(),
        tiny_run_config(tiny_base, small_data, tmp_path, **{"model.gradient_checkpointing": True}),
    )
    assert any(getattr(m, "gradient_checkpointing", False) for m in checkpointed.modules())
    assert not any(getattr(m, "gradient_checkpointing", False) for m in prepared.modules())

    full = tiny_run_config(
        tiny_base, small_data, tmp_path, **{"lora.enabled": False, "freeze.train_llm": True}
    )
    plain = prepare_for_training(tiny_model(), full)
    assert not any("lora_" in n for n, _ in plain.named_parameters())
    assert all(p.requires_grad for n, p in plain.named_parameters() if ".layers." in n)

    with pytest.raises(ValueError, match=r"match no nn\.Linear"):
        prepare_for_training(
            tiny_model(),
            tiny_run_config(tiny_base, small_data, tmp_path, **{"lora.targets": ["nothing"]}),
        )
    with pytest.raises(ValueError, match="trains nothing"):
        prepare_for_training(
            tiny_model(),
            tiny_run_config(
                tiny_base,
                small_data,
                tmp_path,
                **{
                    "lora.enabled": False,
                    "freeze.train_vision_model": False,
                    "freeze.train_abstractor": False,
                },
            ),
        )


def test_lr_schedule_warmup_and_cosine() -> None:
    assert [lr_multiplier(s, 100, 3, "cosine") for s in (0, 1, 3)] == [
        0.0,
        pytest.approx(1 / 3),
        1.0,
    ]
    assert lr_multiplier(51, 100, 3, "cosine") == pytest.approx(0.5, abs=0.02)
    assert lr_multiplier(99, 100, 0, "linear") == pytest.approx(0.01)
    assert lr_multiplier(50, 100, 0, "constant") == 1.0
    with pytest.raises(ValueError, match="scheduler"):
        lr_multiplier(1, 10, 0, "step")


def test_attribute_samples_train_like_score_samples_with_their_own_prefix(
    tiny_base: Path, small_data: dict[str, Path], tmp_path: Path
) -> None:
    rows = json.loads(small_data["score"].read_text())[:2]
    attribute = [
        {
            **rows[0],
            "task_type": "attribute",
            "attribute": "Color",
            "conversations": [
                {"from": "human", "value": "Rate the colour of this painting.\n<|image|>"},
                {"from": "gpt", "value": "The colour of the painting is fair."},
            ],
        },
        {
            **rows[1],
            "task_type": "attribute",
            "attribute": "Color",
            "conversations": [
                {"from": "human", "value": "Rate the colour.\n<|image|>"},
                {"from": "gpt", "value": "Colour: superb."},
            ],
        },
    ]
    tok = tiny_tokenizer()
    good = write_json(tmp_path / "attr.json", attribute[:1])
    config = tiny_run_config(
        tiny_base, small_data, tmp_path, **{"data.train": [{"path": str(good)}]}
    )
    (item,), level_ids = build_training_items(config, tok)
    assert item.is_score
    assert item.encoded.level_index is not None
    assert item.encoded.input_ids[item.encoded.level_index] == level_ids[2]  # "fair"
    as_text = tiny_run_config(
        tiny_base,
        small_data,
        tmp_path,
        **{"data.train": [{"path": str(good)}], "data.attribute_samples": "description"},
    )
    (plain,), _ = build_training_items(as_text, tok)
    assert not plain.is_score
    bad = write_json(tmp_path / "attr_bad.json", attribute[1:])
    config = tiny_run_config(
        tiny_base, small_data, tmp_path, **{"data.train": [{"path": str(bad)}]}
    )
    with pytest.raises(AnswerFormatError, match="must end with a level word"):
        build_training_items(config, tok)


@pytest.mark.parametrize(
    ("key", "value"), [("model.gradient_checkpointing", True), ("data.num_workers", 2)]
)
def test_checkpointing_and_loader_workers_do_not_change_training(
    tiny_base: Path, small_data: dict[str, Path], tmp_path: Path, key: str, value: object
) -> None:
    finals = []
    for setting in (None, value):
        last: dict[str, torch.Tensor] = {}
        train(
            tiny_run_config(
                tiny_base,
                small_data,
                tmp_path / str(setting),
                **{
                    **({} if setting is None else {key: setting}),
                    "run.max_steps": 2,
                    "lora.dropout": 0.0,
                    "checkpoint.every": 0,
                },
            ),
            on_step_end=lambda info, last=last: last.update(_trainable(info.model)),
        )
        finals.append(last)
    for name, tensor in finals[0].items():
        torch.testing.assert_close(finals[1][name], tensor, rtol=1e-5, atol=1e-7)


def test_run_level_errors(
    tiny_base: Path, small_data: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from artquant_train import TrainError

    with pytest.raises(TrainError, match="is not a checkpoint folder"):
        train(tiny_run_config(tmp_path / "no-base", small_data, tmp_path / "a"))
    release = tmp_path / "release"
    train(tiny_run_config(tiny_base, small_data, release, **{"run.max_steps": 1}))
    with pytest.raises(TrainError, match="is a LoRA release"):
        train(tiny_run_config(release / "final", small_data, tmp_path / "a2"))
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(TrainError, match=r"artquant-train\[tensorboard\]"):
            train(
                tiny_run_config(
                    tiny_base,
                    small_data,
                    tmp_path / "b",
                    **{"logging.tensorboard": "on", "run.max_steps": 1},
                )
            )
    out = tmp_path / "c"
    train(tiny_run_config(tiny_base, small_data, out, **{"run.max_steps": 2}))
    with caplog.at_level("WARNING", logger="artquant_train.loop"):
        train(
            tiny_run_config(
                tiny_base,
                small_data,
                out,
                **{"run.max_steps": 3, "run.resume": True, "optim.lr": 5e-4},
            )
        )
    changed = caplog.text.split("exact continuation:")[-1]
    assert "optim.lr" in changed
    assert "run.max_steps" in changed  # it stretches the learning-rate schedule
    assert "run.resume" not in changed
