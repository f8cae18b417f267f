"""The generic backbone's shared prompt prefix: the text before the picture runs once per batch.

For every family without linear-attention layers (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Gemma 3,
InternVL), in native and fixed resolution, scores through the shared prefix must equal the
full-sequence path (``share_prefix`` off: one left-padded pass per batch) at batch sizes 1, 2
and 5 with pictures of different sizes, and in fixed resolution the plain transformers procedure
(``reference_vlm_scores``, one picture per forward). In native resolution the plain procedure is
the reference of the full-sequence path (``share_prefix`` is off by default) in
test_backbone_hf_vlm.py and test_backbone_tiled_vlm.py, which the shared path equals here.
Tolerance 1e-5 on 1-10 scores and probabilities (fp32): the prefix runs as a batch of one and
the rest as a right-padded continuation, so rows differ from the full pass only by float32
reordering inside matrix products; a wrong position, mask, picture mark or read index moves a
score by far more than 1e-3.

The tests also count what the language model receives (a forward pre-hook on it): one row of the
prefix's length, then rows without it, so the shared path is really taken; and what the vision
tower receives: every picture once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from artquant_model.backbones import load_backbone, stack_pixels
from artquant_model.backbones.hf_vlm.backbone import HFVisionLanguageBackbone
from artquant_model.spec import ARTQUANT_SPEC, Question, Resolution
from artquant_model.testing import TINY_VLM_MODEL_TYPES, reference_vlm_scores

ATOL = 1e-5
#: every family but Qwen3.5 (linear-attention layers keep the full-sequence path)
SHARED_TYPES = [t for t in TINY_VLM_MODEL_TYPES if t != "qwen3_5"]
TILED = ("gemma3", "internvl")
#: width x height: token counts differ within a batch in native resolution (Qwen, InternVL)
SIZES = [(40, 60), (64, 64), (100, 50), (30, 90), (260, 220)]


def _fixed_size(model_type: str) -> int:
    """A fixed side the published processor keeps as it is: the tiled models' tile (32 px);
    on Qwen three merged patches (84 / 96 px), inside the tiny processors' pixel limits."""
    if model_type in TILED:
        return 32
    return 3 * 2 * (16 if model_type.startswith("qwen3") else 14)


@pytest.fixture(scope="module")
def pictures() -> list[Image.Image]:
    rng = np.random.default_rng(5)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in SIZES]


def _inputs_length(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[int, int]:
    embeds = kwargs.get("inputs_embeds")
    if embeds is None:
        embeds = kwargs.get("input_ids", args[0] if args else None)
    return int(embeds.shape[0]), int(embeds.shape[1])


def _first_tensor(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    return next(v for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor))


@contextmanager
def _watch(backbone: HFVisionLanguageBackbone) -> Iterator[tuple[list[Any], list[int]]]:
    """``(rows, columns)`` of each language-model call and the leading size (Qwen patches,
    tiles) of each vision-tower call, while the block runs."""
    base = backbone.model.base_model
    vision = getattr(base, "visual", None) or base.vision_tower
    language: list[tuple[int, int]] = []
    pictures: list[int] = []
    hooks = [
        base.language_model.register_forward_pre_hook(
            lambda _m, args, kwargs: language.append(_inputs_length(args, kwargs)),
            with_kwargs=True,
        ),
        vision.register_forward_pre_hook(
            lambda _m, args, kwargs: pictures.append(int(_first_tensor(args, kwargs).shape[0])),
            with_kwargs=True,
        ),
    ]
    try:
        yield language, pictures
    finally:
        for hook in hooks:
            hook.remove()


def _units(pixels: Any) -> int:
    """What the vision tower takes for a batch: Qwen patches or tiles."""
    return int(pixels.pixel_values.shape[0])


@pytest.mark.parametrize("mode", ["native", "fixed"])
@pytest.mark.parametrize("model_type", SHARED_TYPES)
def test_shared_prefix_equals_the_full_sequence_and_the_plain_procedure(
    model_type, mode, tiny_vlm_dirs, pictures
):
    folder = tiny_vlm_dirs(model_type)
    resolution = Resolution(mode="fixed", size=_fixed_size(model_type)) if mode == "fixed" else None
    spec = ARTQUANT_SPEC.model_copy(update={"resolution": resolution or Resolution()})
    backbone = load_backbone(folder, spec=spec)
    assert isinstance(backbone, HFVisionLanguageBackbone)
    assert not backbone.share_prefix  # the default (see the class docstring)
    backbone.share_prefix = True
    question = spec.question()
    before, after = backbone.prompt_ids(question.prompt, stem=question.stem)
    assert backbone.shares_prefix(before)
    assert len(before) >= 3
    pixels = backbone.image_processor(pictures)
    counts = pixels.token_counts(backbone.merge_size)
    if mode == "native" and model_type != "gemma3":  # Gemma 3: one tile whatever the size
        assert len(set(counts)) > 2  # the batch mixes lengths: right padding is exercised

    plain: list[tuple[float, list[float]]] = []
    if mode == "fixed":
        prepared = [backbone.image_processor.prepare(p) for p in pictures]
        if model_type == "internvl":
            # prepare pads to a square; the resize to one tile happens in the published
            # processor, which for InternVL would cut a larger square into tiles instead:
            # resize first, as it does (bicubic, its resample)
            side = _fixed_size(model_type)
            prepared = [p.resize((side, side), Image.Resampling.BICUBIC) for p in prepared]
        plain = reference_vlm_scores(
            folder,
            prepared,
            question=question.prompt,
            stem=question.stem,
            words=spec.words,
            values=spec.values,
        )
    backbone.share_prefix = False
    with _watch(backbone) as (language, _):
        full = backbone.score(pixels)
    assert language == [(len(pictures), len(before) + max(counts) + len(after))]
    backbone.share_prefix = True

    for batch_size in (1, 2, 5):
        scores: list[float] = []
        probs: list[list[float]] = []
        for start in range(0, len(pictures), batch_size):
            chunk = stack_pixels(list(pixels)[start : start + batch_size])
            with _watch(backbone) as (language, vision):
                result = backbone.score(chunk)
            scores += result.score.tolist()
            probs += result.probs.tolist()
            rows = len(chunk)
            longest = max(chunk.token_counts(backbone.merge_size)) + len(after)
            # the prefix once as one row, then only picture + text per picture
            assert language == [(1, len(before)), (rows, longest)]
            assert sum(vision) == _units(chunk)  # every picture through the tower once
        np.testing.assert_allclose(scores, full.score.numpy(), rtol=0, atol=ATOL)
        np.testing.assert_allclose(probs, full.probs.numpy(), rtol=0, atol=ATOL)
        if plain:
            np.testing.assert_allclose(scores, [r[0] for r in plain], rtol=0, atol=ATOL)
            np.testing.assert_allclose(probs, [r[1] for r in plain], rtol=0, atol=ATOL)
    assert np.ptp(full.score.numpy()) > 1e-3  # random weights: not vacuous


ATTRIBUTES = {
    "color": ("How would you rate the color of this painting?", "The color of the painting is"),
    "mood": ("How would you rate the mood of this painting?", "The mood of the painting is"),
}


# Qwen (multimodal rotary positions) and Gemma 3 (picture marks, sliding layers); every family's
# score_questions equals its score in test_score_questions.py, and score's shared path equals
# the full sequence above
@pytest.mark.parametrize("model_type", ["qwen2_5_vl", "gemma3"])
def test_score_questions_shares_the_prefix_and_equals_the_full_sequence(
    model_type, tiny_vlm_dirs, pictures
):
    questions = {"total": ARTQUANT_SPEC.question()}
    questions |= {n: Question(prompt=p, stem=s) for n, (p, s) in ATTRIBUTES.items()}
    spec = ARTQUANT_SPEC.model_copy(update={"questions": questions})
    backbone = load_backbone(tiny_vlm_dirs(model_type), spec=spec)
    pixels = backbone.image_processor(pictures)
    counts = pixels.token_counts(backbone.merge_size)
    parts = [backbone.prompt_ids(q.prompt, stem=q.stem) for q in questions.values()]
    before = parts[0][0]
    assert all(b == before for b, _ in parts)
    afters = [a for _, a in parts]
    common = 0  # the text after the picture that every question shares
    while all(len(a) > common + 1 and a[common] == afters[0][common] for a in afters):
        common += 1
    assert common >= 3  # "<|im_start|>user" ... "How would you rate the"

    backbone.share_prefix = False
    full = backbone.score_questions(pixels)
    backbone.share_prefix = True
    with _watch(backbone) as (language, vision):
        shared = backbone.score_questions(pixels)
    # prefix once (one row), the pictures and the questions' shared text (one row each), then
    # each question's own tokens (pictures x questions rows)
    assert language == [
        (1, len(before)),
        (len(pictures), max(counts) + common),
        (len(pictures) * len(questions), max(len(a) for a in afters) - common),
    ]
    assert sum(vision) == _units(pixels)  # every picture through the tower once
    for name in questions:
        alone = backbone.score(pixels, question=name)
        for other in (full[name], alone):
            np.testing.assert_allclose(
                shared[name].score.numpy(), other.score.numpy(), rtol=0, atol=ATOL
            )
            np.testing.assert_allclose(
                shared[name].probs.numpy(), other.probs.numpy(), rtol=0, atol=ATOL
            )
    spread = np.ptp(np.stack([shared[n].score.numpy() for n in questions]), axis=0)
    assert spread.max() > 1e-3  # the questions really differ


def test_a_short_sliding_window_with_padded_rows_runs_the_pictures_left_padded(
    tiny_vlm_dirs, pictures
):
    # With a shared prefix, rows of different lengths leave a hole (right padding) before the
    # questions' own tokens; a sliding window shorter than the rows would count it. Gemma 3
    # (the family with sliding layers) gives every picture one tile, hence no hole; so the
    # guard is exercised on InternVL's mixed lengths with a short window set on the backbone:
    # the picture part must run left-padded, prefix included, and equal the full sequence.
    backbone = load_backbone(tiny_vlm_dirs("internvl"))
    pixels = backbone.image_processor(pictures)
    assert len(set(pixels.token_counts(backbone.merge_size))) > 1
    questions = {"total": ARTQUANT_SPEC.question()}
    questions |= {n: Question(prompt=p, stem=s) for n, (p, s) in ATTRIBUTES.items()}
    backbone.spec = ARTQUANT_SPEC.model_copy(update={"questions": questions})
    backbone.share_prefix = False
    full = backbone.score_questions(pixels)
    backbone.share_prefix = True
    backbone.sliding_window = 8  # shorter than the rows: a hole would hide real tokens
    try:
        with _watch(backbone) as (language, _):
            guarded = backbone.score_questions(pixels)
    finally:
        backbone.sliding_window = None
    assert [rows for rows, _ in language] == [len(pictures), len(pictures) * len(questions)]
    for name in questions:
        np.testing.assert_allclose(
            guarded[name].score.numpy(), full[name].score.numpy(), rtol=0, atol=ATOL
        )


def test_qwen3_5_keeps_the_full_sequence_path(tiny_vlm_dirs, pictures):
    spec = ARTQUANT_SPEC.model_copy(update={"resolution": Resolution(mode="fixed", size=64)})
    backbone = load_backbone(tiny_vlm_dirs("qwen3_5"), spec=spec)
    question = spec.question()
    before, after = backbone.prompt_ids(question.prompt, stem=question.stem)
    assert backbone.recurrent
    assert not backbone.shares_prefix(before)
    pixels = backbone.image_processor(pictures[:2])
    with _watch(backbone) as (language, _):
        backbone.score(pixels)
    count = pixels.token_counts(backbone.merge_size)[0]
    assert language == [(2, len(before) + count + len(after))]
