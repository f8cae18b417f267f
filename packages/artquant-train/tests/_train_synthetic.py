"""A generated dataset whose score follows a visible property (brightness) and a tiny base."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

LEVEL_WORDS = ("excellent", "good", "fair", "poor", "bad")
SCORE_PROMPT = "How would you rate the quality of this painting?\n<|image|>"


def hard_level(score: float) -> str:
    """The original's threshold rule (reference §3.3)."""
    for bound, word in ((1.0, "bad"), (3.5, "poor"), (5.0, "fair"), (7.5, "good")):
        if score <= bound:
            return word
    return "excellent"


def make_images(root: Path, count: int, *, seed: int, size: int = 28) -> list[tuple[str, float]]:
    """Write ``count`` PNGs of random texture at a random brightness; score = 1 + 9·brightness."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for index in range(count):
        brightness = float(rng.uniform(0.0, 1.0))
        texture = rng.normal(0.0, 0.08, size=(size, size, 3))
        tint = rng.uniform(-0.05, 0.05, size=3)
        pixels = np.clip(brightness + texture + tint, 0.0, 1.0)
        name = f"img_{seed}_{index:04d}.png"
        Image.fromarray((pixels * 255).astype(np.uint8)).save(root / name)
        out.append((name, 1.0 + 9.0 * brightness))
    return out


def score_samples(images: list[tuple[str, float]]) -> list[dict[str, Any]]:
    """Score samples in the original format (level_probs from artquant-data's estimator)."""
    from artquant_data import estimate_level_distribution

    probs = estimate_level_distribution(np.array([s for _, s in images]))
    return [
        {
            "id": f"{name}->{score:.3f}",
            "image": name,
            "gt_score": score,
            "level_probs": [float(x) for x in p],
            "conversations": [
                {"from": "human", "value": SCORE_PROMPT},
                {"from": "gpt", "value": f"The quality of the painting is {hard_level(score)}."},
            ],
        }
        for (name, score), p in zip(images, probs, strict=True)
    ]


def description_samples(images: list[tuple[str, float]]) -> list[dict[str, Any]]:
    """Description samples that talk about the light (also tied to brightness)."""
    return [
        {
            "id": f"{name}->description",
            "image": name,
            "task_type": "description",
            "conversations": [
                {"from": "human", "value": "Describe this painting.\n<|image|>"},
                {
                    "from": "gpt",
                    "value": "The light of the painting is "
                    + ("good and the colour is light." if score > 5.5 else "poor."),
                },
            ],
        }
        for name, score in images
    ]


def write_json(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def make_dataset(root: Path, *, n_train: int, n_val: int, seed: int = 0) -> dict[str, Path]:
    """Images plus ``score.json``, ``description.json`` and ``val.json`` under ``root``."""
    images = root / "images"
    train = make_images(images, n_train, seed=seed)
    val = make_images(images, n_val, seed=seed + 1000)
    return {
        "images": images,
        "score": write_json(root / "score.json", score_samples(train)),
        "description": write_json(root / "description.json", description_samples(train)),
        "val": write_json(root / "val.json", score_samples(val)),
    }


def tiny_run_config(base: Path, data: dict[str, Path], output_dir: Path, **overrides: Any) -> Any:
    """A :class:`~artquant_train.TrainConfig` for the tiny model on the synthetic data.

    The template is the inference layout (no system prompt, image after the question) so that
    validation, which scores with ArtQuant's inference prompt, reads the position training
    taught; the rest is the recipe except for sizes and ``overrides`` (dotted keys).
    """
    from artquant_train import load_config

    values: dict[str, Any] = {
        "model.base": str(base),
        "model.gradient_checkpointing": False,
        "data.train": [{"path": str(data["score"])}, {"path": str(data["description"])}],
        "data.image_root": str(data["images"]),
        "data.template.name": "mplug_owl2",
        "data.template.system": "",
        "data.template.image_first": False,
        "run.output_dir": str(output_dir),
        "run.batch_size": 4,
        "run.grad_accum": 2,
        "run.max_steps": 4,
        "run.seed": 7,
        "lora.r": 4,
        "lora.alpha": 8,
        "optim.lr": 1e-3,
        "checkpoint.every": 2,
        "validation.every": 0,
        "logging.progress_bar": False,
        "logging.tensorboard": "off",
    }
    config_file = Path(base) / "config.json"
    model_type = (
        json.loads(config_file.read_text()).get("model_type") if config_file.is_file() else None
    )
    if model_type not in (None, "mplug_owl2"):
        # Qwen bases: the tiny pictures at their native size (a few tokens, not 448 px's 256)
        values["model.resolution"] = {"mode": "native"}
    values.update(overrides)
    return load_config(overrides=values, environ={})
