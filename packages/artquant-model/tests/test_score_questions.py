"""Several questions at once (the total and attributes) equal one question at a time.

``Backbone.score_questions`` computes each picture once (and, where the prompt puts the picture
first, everything before the question), then only each question's own tokens. Tolerance 1e-5
(fp32): the shared part runs once for all questions instead of once per question, so rows
differ from ``score`` only by float32 reordering inside matrix products (observed ~1e-6); a
wrong position, mask, cache row or read index moves a 1-10 score by far more than 1e-3.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from artquant_model import MPLUGOwl2Backbone, load_backbone
from artquant_model.spec import ARTQUANT_SPEC, Question, Resolution, ScorerSpec
from artquant_model.testing import TINY_VLM_MODEL_TYPES, save_tiny_checkpoint

ATOL = 1e-5
TILE_MODEL_TYPES = ("gemma3", "internvl")
TILE_SIZE = 32
SIZES = [(40, 60), (64, 64), (100, 50), (260, 220)]
ATTRIBUTES = {
    "color": ("How would you rate the color of this painting?", "The color of the painting is"),
    "light_and_shadow": (
        "How would you rate the light and shadow of this painting?",
        "The light and shadow of the painting is",
    ),
    "mood": ("How would you rate the mood of this painting?", "The mood of the painting is"),
}


def _spec(*, picture_first_raw: bool = False, resolution: Resolution | None = None) -> ScorerSpec:
    """ArtQuant's total (question first on mPLUG-Owl2) and three attributes (picture first on
    mPLUG-Owl2 with ``picture_first_raw``, as the trainer writes them)."""
    questions = {"total": ARTQUANT_SPEC.question()}
    for name, (prompt, stem) in ATTRIBUTES.items():
        raw = f"A chat. USER: <|image|>\n{prompt} ASSISTANT: {stem}" if picture_first_raw else None
        questions[name] = Question(prompt=prompt, stem=stem, raw_prompt=raw)
    update: dict[str, object] = {"questions": questions}
    if resolution is not None:
        update["resolution"] = resolution
    return ARTQUANT_SPEC.model_copy(update=update)


def _pictures() -> list[Image.Image]:
    rng = np.random.default_rng(11)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in SIZES]


def _check_equal_one_at_a_time(backbone, pixels, names=None) -> dict[str, np.ndarray]:
    together = backbone.score_questions(pixels, names)
    assert list(together) == (list(backbone.spec.questions) if names is None else names)
    for name, result in together.items():
        alone = backbone.score(pixels, question=name)
        np.testing.assert_allclose(result.score.numpy(), alone.score.numpy(), rtol=0, atol=ATOL)
        np.testing.assert_allclose(result.std.numpy(), alone.std.numpy(), rtol=0, atol=ATOL)
        np.testing.assert_allclose(result.probs.numpy(), alone.probs.numpy(), rtol=0, atol=ATOL)
    scores = {name: result.score.numpy() for name, result in together.items()}
    # random weights: the questions really differ, so equality per question is not vacuous
    spread = np.ptp(np.stack(list(scores.values())), axis=0)
    assert spread.max() > 1e-3
    return scores


@pytest.mark.parametrize("picture_first", [True, False], ids=["picture_first", "question_first"])
def test_mplug_owl2_questions_together_equal_one_at_a_time(tmp_path, picture_first):
    folder = save_tiny_checkpoint(tmp_path / "tiny")
    backbone = load_backbone(folder, spec=_spec(picture_first_raw=picture_first))
    assert isinstance(backbone, MPLUGOwl2Backbone)
    pixels = backbone.image_processor(_pictures())
    calls = []
    vision = backbone.model.model.vision_model
    handle = vision.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    try:
        backbone.score_questions(pixels)
    finally:
        handle.remove()
    assert sum(calls) == len(SIZES)  # every picture through the vision tower once, not 4 times
    _check_equal_one_at_a_time(backbone, pixels)
    _check_equal_one_at_a_time(backbone, pixels, ["mood", "total"])  # a subset, in that order


@pytest.mark.parametrize(
    ("model_type", "mode"),
    # Qwen3.5 asks one question after the other through level_logits (whose native-resolution
    # batches are tested in test_backbone_hf_vlm.py); fixed only, to keep its slow CPU path short.
    [
        (kind, mode)
        for kind in TINY_VLM_MODEL_TYPES
        for mode in ("native", "fixed")
        if (kind, mode) != ("qwen3_5", "native")
    ],
)
def test_hf_vlm_questions_together_equal_one_at_a_time(model_type, mode, tiny_vlm_dirs):
    # tile models take fixed pictures at their tile size (the tiny ones: 32 px)
    size = TILE_SIZE if model_type in TILE_MODEL_TYPES else 56
    resolution = Resolution(mode="fixed", size=size) if mode == "fixed" else None
    backbone = load_backbone(tiny_vlm_dirs(model_type), spec=_spec(resolution=resolution))
    pixels = backbone.image_processor(_pictures())
    counts = set(pixels.token_counts(backbone.merge_size))
    # native mixes lengths, except on Gemma 3 (one tile per picture whatever its size) and
    # InternVL (tile counts follow the aspect ratio: 3 distinct among these 4 pictures)
    native = {"gemma3": 1, "internvl": 3}.get(model_type, len(SIZES))
    assert len(counts) == (1 if mode == "fixed" else native)
    shared_runs = []
    shared_prefix = backbone._shared_prefix_logits

    def spy(*args, **kwargs):
        shared_runs.append(1)
        return shared_prefix(*args, **kwargs)

    backbone._shared_prefix_logits = spy
    _check_equal_one_at_a_time(backbone, pixels)
    # the prefix really was shared (Qwen3.5 asks one question at a time, by design)
    assert len(shared_runs) == (0 if backbone.recurrent else 1)
    # a picture alone gives its row of the batch
    together = backbone.score_questions(pixels)
    first = backbone.score_questions(type(pixels).stack([pixels[0]]))
    for name, result in first.items():
        assert abs(float(result.score[0]) - float(together[name].score[0])) < ATOL


def test_an_unknown_question_names_the_spec_questions(tmp_path):
    backbone = load_backbone(save_tiny_checkpoint(tmp_path / "tiny"), spec=_spec())
    pixels = backbone.image_processor(_pictures()[:1])
    with pytest.raises(KeyError, match=r"no question 'colour'; it has \['color', 'light_and"):
        backbone.score_questions(pixels, ["total", "colour"])
