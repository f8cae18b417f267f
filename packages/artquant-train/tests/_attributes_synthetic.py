"""Pictures whose "color" follows saturation and whose "light and shadow" follows brightness.

The two properties are drawn independently, so a model that answers each question from the
property it names predicts one attribute without tracking the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

COLOR, LIGHT = "Color", "Light and shadow"


def _picture(
    saturation: float, brightness: float, rng: np.random.Generator, size: int
) -> Image.Image:
    """Grey level from ``brightness``; red and blue pushed apart by ``saturation``.

    The mean of the three channels is the grey level, whatever the saturation, and the spread
    between red and blue is the saturation, whatever the brightness: each label has its own
    visible property.
    """
    grey = 0.25 + 0.5 * brightness
    chroma = 0.22 * saturation
    tint = np.array([chroma, 0.0, -chroma])  # a warm tint, stronger with saturation
    texture = rng.normal(0.0, 0.04, size=(size, size, 1))  # the same in every channel
    pixels = np.clip(grey + tint[None, None, :] + texture, 0.0, 1.0)
    return Image.fromarray((pixels * 255).round().astype(np.uint8))


def make_attribute_images(
    root: Path, properties: list[tuple[float, float]], *, seed: int, size: int = 28
) -> list[tuple[str, float, float]]:
    """Write one PNG per ``(saturation, brightness)``; return ``(name, color, light)`` labels.

    Labels are ``1 + 9 * property``, on APDDv2's 0-10 attribute scale.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for index, (saturation, brightness) in enumerate(properties):
        name = f"attr_{seed}_{index:04d}.png"
        _picture(saturation, brightness, rng, size).save(root / name)
        out.append((name, 1.0 + 9.0 * saturation, 1.0 + 9.0 * brightness))
    return out


def random_properties(count: int, seed: int) -> list[tuple[float, float]]:
    """Saturation and brightness drawn independently and uniformly."""
    rng = np.random.default_rng(seed)
    return [(float(s), float(b)) for s, b in rng.uniform(0.0, 1.0, size=(count, 2))]


def grid_properties(side: int, seed: int) -> list[tuple[float, float]]:
    """A jittered ``side x side`` grid: every saturation band meets every brightness band, so
    the held-out labels of the two attributes are uncorrelated by construction."""
    rng = np.random.default_rng(seed)
    cells = [(i, j) for i in range(side) for j in range(side)]
    jitter = rng.uniform(0.0, 1.0, size=(len(cells), 2))
    return [
        (float((i + a) / side), float((j + b) / side))
        for (i, j), (a, b) in zip(cells, jitter, strict=True)
    ]


def attribute_records(labels: list[tuple[str, float, float]]) -> list[object]:
    """APDDv2-like records: the two attributes on 0-10, the total their mean."""
    from artquant_data import ArtRecord

    return [
        ArtRecord(
            image=name,
            score=(color + light) / 2,
            attributes={COLOR: color, LIGHT: light},
            attribute_scale=(0.0, 10.0),
            source="synthetic",
        )
        for name, color, light in labels
    ]


def attribute_run_data(
    root: Path, *, n_train: int, grid_side: int
) -> tuple[Path, list[tuple[str, float, float]], Path, Path]:
    """Training and held-out attribute files (artquant-data's attribute samples, picture first)
    over generated pictures: ``n_train`` random ones and a jittered ``grid_side`` square grid
    held out, so the held-out labels are uncorrelated.

    Returns:
        ``(images folder, held-out (name, color, light) labels, train file, validation file)``.
    """
    import artquant_data as aq

    images = root / "images"
    train_labels = make_attribute_images(images, random_properties(n_train, 21), seed=21)
    held_out = make_attribute_images(images, grid_properties(grid_side, 22), seed=22)
    train_file = aq.write_training_json(
        aq.build_attribute_samples(attribute_records(train_labels), seed=0), root / "t.json"
    )
    val_file = aq.write_training_json(
        aq.build_attribute_samples(attribute_records(held_out), seed=1), root / "v.json"
    )
    return images, held_out, train_file, val_file


def score_each_question(
    release: Path, base: Path, items: dict[str, list[Any]], levels: Any
) -> dict[str, np.ndarray]:
    """Score a release folder with every attribute question of its ``artquant_spec.json``.

    Args:
        release: ``final/`` or ``best/``.
        base: the base model the release's adapter sits on.
        items: attribute name -> the :class:`~artquant_train.validation.ValItem` to score.
        levels: the run's ``config.levels``.

    Returns:
        attribute id -> predicted scores, through the trainer's own ``score_items``.
    """
    from artquant_data import attribute_id
    from artquant_model import (
        MPLUGOwl2ImageProcessor,
        ScorerSpec,
        load_image,
        load_model,
        load_tokenizer,
        tokenizer_image_token,
    )
    from artquant_train import level_token_ids
    from artquant_train.attributes import SPEC_FILE
    from artquant_train.validation import score_items

    spec = ScorerSpec.from_file(release / SPEC_FILE)
    model = load_model(release, base=base).eval()
    tokenizer = load_tokenizer(release)
    processor = MPLUGOwl2ImageProcessor.from_pretrained(release)
    _, level_ids = level_token_ids(tokenizer, levels)
    names = {attribute_id(name): name for name in items}
    return {
        ident: score_items(
            model,
            items[names[ident]],
            prompt_ids=tokenizer_image_token(str(question.raw_prompt), tokenizer),
            level_ids=level_ids,
            values=levels.values,
            image_processor=processor,
            load_image=load_image,
            device=model.device,
            batch_size=32,
        )
        for ident, question in spec.questions.items()
        if ident != "total"
    }
