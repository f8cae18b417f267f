"""Attribute samples in training and validation: prompts, metrics, best/, the level spec."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from _attributes_synthetic import (
    attribute_records,
    grid_properties,
    make_attribute_images,
    random_properties,
    score_each_question,
)
from _train_synthetic import tiny_run_config
from scipy.stats import kendalltau, pearsonr, spearmanr

import artquant_data as aq
import artquant_eval as ae
from artquant_model import (
    APDDV2_ATTRIBUTE_QUESTIONS,
    Question,
    ScorerSpec,
    load_tokenizer,
    tokenizer_image_token,
)
from artquant_model.testing import tiny_tokenizer
from artquant_train import ConfigError, TemplateConfig, TrainError, load_config, train
from artquant_train.attributes import (
    LEVEL_SPEC_FILE,
    SPEC_FILE,
    attribute_metrics,
    attribute_prompt,
    check_attribute_ids,
    read_attribute_items,
)
from artquant_train.cli import resolve_config
from artquant_train.conversation import encode_conversation, level_token_ids
from artquant_train.errors import EmptyDatasetError
from artquant_train.validation import (
    default_validation_prompt,
    metrics_of,
    read_validation_items,
)


def test_model_zero_shot_questions_are_the_data_table() -> None:
    """artquant-model (and through it the SDK) may not import artquant-data: its zero-shot
    questions are a copy of the table, checked here."""
    table = {spec.id: (spec.question, spec.stem) for spec in aq.APDDV2_ATTRIBUTE_SPECS}
    copy = {k: (q.prompt, q.stem) for k, q in APDDV2_ATTRIBUTE_QUESTIONS.items()}
    assert list(copy.items()) == list(table.items())


def test_eval_and_data_list_the_same_attributes() -> None:
    """artquant-eval may not import artquant-data, so it keeps its own copy of the table."""
    table = {spec.id: spec.column for spec in aq.APDDV2_ATTRIBUTE_SPECS}
    assert list(ae.APDDV2_ATTRIBUTE_COLUMNS.items()) == list(table.items())
    for name in ("Light and shadow", "The sense of order", "Brush-work & 3D", "  x  "):
        assert ae.attribute_id(name) == aq.attribute_id(name)


SHARED = Path(
    os.environ.get("ARTQUANT_SHARED", Path(__file__).resolve().parents[3] / ".." / "shared")
)


def _tokenizer(name: str):
    if name == "tiny":
        return tiny_tokenizer()
    path = SHARED / "tokenizers" / "llama2" / "tokenizer.model"
    if not path.is_file():
        pytest.skip(f"../shared not found: {path} (set ARTQUANT_SHARED)")
    return load_tokenizer(path)


@pytest.mark.parametrize("tokenizer_name", ["tiny", "llama2"])
@pytest.mark.parametrize(
    "template",
    [TemplateConfig(), TemplateConfig(name="mplug_owl2", system="", image_first=False)],
    ids=["vicuna_v1", "mplug_owl2"],
)
def test_validation_reads_the_position_training_teaches(
    template: TemplateConfig, tokenizer_name: str
) -> None:
    """Each attribute's scoring prompt is exactly the training ids up to its level word."""
    tokenizer = _tokenizer(tokenizer_name)
    base = {"model.base": "b", "data.train": [{"path": "x"}]}
    _, level_ids = level_token_ids(tokenizer, load_config(overrides=base, environ={}).levels)
    for spec in aq.APDDV2_ATTRIBUTE_SPECS:
        record = aq.ArtRecord(
            image="a.png", score=5, attributes={spec.name: 8.0}, attribute_scale=(0, 10)
        )
        (sample,) = aq.build_attribute_samples([record], prompts=[aq.ATTRIBUTE_PROMPTS[1]])
        prefix_ids = tokenizer(spec.stem, add_special_tokens=False)["input_ids"]
        encoded = encode_conversation(
            sample.conversations, tokenizer, template, score_levels=(prefix_ids, level_ids)
        )
        prompt = attribute_prompt(spec.name, template)
        assert prompt.endswith(f"<|image|>\n{spec.question} ASSISTANT: {spec.stem}")
        assert list(tokenizer_image_token(prompt, tokenizer)) == list(
            encoded.input_ids[: encoded.level_index]
        ), spec.name
    custom = attribute_prompt("Color", template, "Q: <|image|> {question} A: {stem}")
    question = "How would you rate the color of this painting?"
    assert custom == f"Q: <|image|> {question} A: The color of the painting is"


def test_attribute_names_sharing_an_id_are_refused() -> None:
    check_attribute_ids(["Color", "Mood", "Brushwork"])
    with pytest.raises(ValueError, match="'Color' and 'color!' share the id 'color'"):
        check_attribute_ids(["Color", "color!"])
    with pytest.raises(ValueError, match="share the id 'attribute_mean'"):
        check_attribute_ids(["Attribute mean"])


def test_attribute_prompt_setting_is_checked() -> None:
    base = {"model.base": "b", "data.train": [{"path": "x"}]}
    good = "USER: <|image|>\n{question} ASSISTANT: {stem}"
    cfg = load_config(overrides={**base, "validation.attribute_prompt": good}, environ={})
    assert cfg.validation.attribute_prompt == good
    for bad in ("USER: {question} ASSISTANT: {stem}", "USER: <|image|> ASSISTANT: {stem}",
                "USER: <|image|>{question} ASSISTANT: {stem}."):  # fmt: skip
        with pytest.raises(ConfigError, match="attribute_prompt"):
            load_config(overrides={**base, "validation.attribute_prompt": bad}, environ={})


def test_best_on_flag_environment_and_file(tmp_path: Path) -> None:
    file = tmp_path / "t.yaml"
    file.write_text("model: {base: b}\ndata: {train: [{path: a}]}\nvalidation: {best_on: total}\n")
    assert load_config(file, environ={}).validation.best_on == "total"
    env = {"ARTQUANT_TRAIN_VALIDATION__BEST_ON": "attribute_mean"}
    assert load_config(file, environ=env).validation.best_on == "attribute_mean"
    cfg, _ = resolve_config(["--config", str(file), "--best-on", "attribute_mean"])
    assert cfg.validation.best_on == "attribute_mean"
    with pytest.raises(ConfigError, match="best_on"):
        load_config(file, overrides={"validation.best_on": "mean"}, environ={})


def test_attribute_metrics_against_scipy() -> None:
    rng = np.random.default_rng(0)
    target = {"a": rng.uniform(1, 10, 30), "b": rng.uniform(1, 10, 20)}
    pred = {k: v + rng.normal(0, 2, v.size) for k, v in target.items()}
    metrics = attribute_metrics(pred, target)
    for key in ("a", "b"):
        assert metrics[f"{key}/srcc"] == pytest.approx(
            spearmanr(pred[key], target[key])[0], abs=1e-12
        )
        assert metrics[f"{key}/plcc"] == pytest.approx(
            pearsonr(pred[key], target[key])[0], abs=1e-12
        )
        assert metrics[f"{key}/krcc"] == pytest.approx(
            kendalltau(pred[key], target[key])[0], abs=1e-12
        )
        assert metrics[f"{key}/n"] == target[key].size
    for name in ("srcc", "plcc", "krcc", "mae"):
        expected = (metrics[f"a/{name}"] + metrics[f"b/{name}"]) / 2
        assert metrics[f"attribute_mean/{name}"] == pytest.approx(expected, abs=1e-15)
    constant = attribute_metrics({**pred, "c": np.full(5, 3.0)}, {**target, "c": np.arange(5.0)})
    assert np.isnan(constant["c/srcc"])
    assert np.isnan(constant["attribute_mean/srcc"])  # never wins best/


def _write_attribute_data(root: Path, n_train: int, side: int) -> dict[str, Path]:
    images = root / "images"
    train_labels = make_attribute_images(images, random_properties(n_train, 1), seed=1)
    val_labels = make_attribute_images(images, grid_properties(side, 2), seed=2)
    train_records, val_records = attribute_records(train_labels), attribute_records(val_labels)
    train_samples = aq.build_score_samples(train_records) + aq.build_attribute_samples(
        train_records
    )
    val_samples = aq.build_score_samples(val_records) + aq.build_attribute_samples(val_records)
    return {
        "images": images,
        "score": aq.write_training_json(train_samples, root / "train.json"),
        "description": aq.write_training_json(train_samples, root / "train.json"),
        "val": aq.write_training_json(val_samples, root / "val.json"),
        "val_scores_only": aq.write_training_json(
            aq.build_score_samples(val_records), root / "val_scores.json"
        ),
    }


def test_reading_attribute_validation_items(tmp_path: Path) -> None:
    data = _write_attribute_data(tmp_path, 4, 2)
    totals = read_validation_items(data["val"], data["images"])
    grouped = read_attribute_items(data["val"], data["images"])
    assert len(totals) == 4  # the attribute samples are not read as totals
    assert list(grouped) == ["Color", "Light and shadow"]
    assert [len(v) for v in grouped.values()] == [4, 4]
    assert read_attribute_items(data["val_scores_only"], data["images"]) == {}
    rows = json.loads(data["val"].read_text())
    few = [r for r in rows if r.get("attribute") != "Color"] + [
        r for r in rows if r.get("attribute") == "Color"
    ][:2]
    (tmp_path / "few.json").write_text(json.dumps(few))
    with pytest.raises(EmptyDatasetError, match=r"\{'Color': 2\} have fewer than 3"):
        read_attribute_items(tmp_path / "few.json", data["images"])


@pytest.fixture(scope="module")
def attribute_run(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One tiny run on attribute samples, validated twice; ``best/`` on the attribute mean."""
    root = tmp_path_factory.mktemp("attribute_run")
    data = _write_attribute_data(root / "data", 16, 3)
    out = root / "run"
    config = tiny_run_config(
        tiny_base,
        data,
        out,
        **{
            "data.train": [{"path": str(data["score"])}],
            "data.val": str(data["val"]),
            "validation.every": 2,
            "validation.best_on": "attribute_mean",
            "logging.plot": "auto",
        },
    )
    return SimpleNamespace(data=data, out=out, config=config, result=train(config))


def test_run_validates_each_attribute_and_keeps_best_on_their_mean(
    tiny_base: Path, attribute_run: Any
) -> None:
    data, out, config, result = (
        attribute_run.data, attribute_run.out, attribute_run.config, attribute_run.result
    )  # fmt: skip
    assert len(result.validations) == 2
    last = result.validations[-1]
    for ident in ("color", "light_and_shadow"):
        assert {f"{ident}/{m}" for m in ("srcc", "plcc", "krcc", "mae", "n")} <= set(last)
        assert last[f"{ident}/n"] == 9
    assert {"srcc", "plcc", "attribute_mean/srcc", "attribute_mean/plcc"} <= set(last)
    means = [v["attribute_mean/srcc"] for v in result.validations]
    assert result.best_metric == max(means)
    lines = (out / "validation.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["color/srcc"] == pytest.approx(last["color/srcc"])

    # artquant_spec.json: the total and the trained attributes, each with the prompt validation
    # scored with (no level_spec.json any more)
    for folder in (out / "final", out / "best"):
        assert not (folder / LEVEL_SPEC_FILE).exists()
        spec = ScorerSpec.from_file(folder / SPEC_FILE)
        assert spec.words == ("excellent", "good", "fair", "poor", "bad")
        assert spec.values == (10.0, 7.5, 5.0, 3.5, 1.0)
        assert spec.scale == (1.0, 10.0)
        assert list(spec.questions) == ["total", "light_and_shadow", "color"]
        assert spec.question().raw_prompt == default_validation_prompt(config.levels.prefix)
        assert spec.question("color") == Question(
            prompt="How would you rate the color of this painting?",
            stem="The color of the painting is",
            raw_prompt="USER: <|image|>\nHow would you rate the color of this painting? "
            "ASSISTANT: The color of the painting is",
        )

    # the release, scored outside the trainer with each question, gives the same SRCC
    grouped = read_attribute_items(data["val"], data["images"])
    predictions = score_each_question(out / "final", tiny_base, grouped, config.levels)
    for name, items in grouped.items():
        ident = aq.attribute_id(name)
        srcc = spearmanr(predictions[ident], [i.score for i in items]).statistic
        assert srcc == pytest.approx(last[f"{ident}/srcc"], abs=1e-6)

    try:
        from artquant_train import plot_training
    except ImportError:  # pragma: no cover
        return
    try:
        figure = plot_training(out)
    except TrainError:  # no matplotlib in the isolated environment
        return
    assert figure.axes[3].get_title() == "validation SRCC per attribute"
    assert [line.get_label() for line in figure.axes[3].get_lines()] == [
        "light_and_shadow", "color", "mean"
    ]  # fmt: skip


def test_the_release_scores_in_the_sdk_as_validation_did(
    tiny_base: Path, attribute_run: Any
) -> None:
    """``final/``, loaded with ``ArtQuant.from_pretrained`` and scored with
    ``score(attributes="all")``, gives the trainer's own last validation: SRCC, PLCC and MAE of
    the total and of each attribute (1e-5: the SDK shares the picture among the questions,
    which reorders float32 sums; MAE moves with every score, so this checks values, not only
    ranks)."""
    sdk = pytest.importorskip(
        "artquant_sdk",
        reason="artquant-sdk is not a dependency of artquant-train (its isolated environment); "
        "the workspace suite runs this",
    )
    data, out, last = attribute_run.data, attribute_run.out, attribute_run.result.validations[-1]
    scorer = sdk.ArtQuant.from_pretrained(out / "final", base=tiny_base, device="cpu")
    assert scorer.attributes == ["light_and_shadow", "color"]
    totals = read_validation_items(data["val"], data["images"])
    results = scorer.score([item.image for item in totals], attributes="all", batch_size=4)
    got = metrics_of(np.array([r.score for r in results]), np.array([i.score for i in totals]))
    for metric in ("srcc", "plcc", "mae"):
        assert got[metric] == pytest.approx(last[metric], abs=1e-5)
    by_image = {r.image: r for r in results}
    for name, items in read_attribute_items(data["val"], data["images"]).items():
        ident = aq.attribute_id(name)
        predictions = [by_image[str(item.image)].attributes[ident].score for item in items]
        got = metrics_of(np.array(predictions), np.array([i.score for i in items]))
        for metric in ("srcc", "plcc", "mae"):
            assert got[metric] == pytest.approx(last[f"{ident}/{metric}"], abs=1e-5)


def test_best_on_needs_what_it_reads(tiny_base: Path, tmp_path: Path) -> None:
    data = _write_attribute_data(tmp_path / "data", 8, 2)
    config = tiny_run_config(
        tiny_base, data, tmp_path / "run",
        **{"data.train": [{"path": str(data["score"])}], "data.val": str(data["val_scores_only"]),
           "validation.best_on": "attribute_mean"},
    )  # fmt: skip
    with pytest.raises(TrainError, match="holds no attribute samples"):
        train(config)
