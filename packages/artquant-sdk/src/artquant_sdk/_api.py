"""The ``ArtQuant`` scorer: load once, then score and describe images."""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from tqdm.auto import tqdm

from artquant_sdk._devices import resolve_device, resolve_dtype
from artquant_sdk._errors import ManifestError
from artquant_sdk._inputs import ImageInput, ImagesInput, as_image_list
from artquant_sdk._types import AttributeScore, ScoreResult
from artquant_sdk._zoo import LEVEL_PRESETS, ModelCard, ResolvedWeights, resolve_weights

if TYPE_CHECKING:  # artquant_model (and transformers) load lazily: `artquant models` stays fast
    from artquant_model import Backbone, LevelSpec, MPLUGOwl2Processor, ScorerSpec

__all__ = ["ArtQuant", "attribute_key", "level_preset"]

logger = logging.getLogger(__name__)

_TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json")
_IMAGE_TOKEN = "<|image|>"
#: The spec question whose answer is the total score (``artquant_model.spec.TOTAL``).
_TOTAL = "total"

#: One image's read-out: ``(score, std, probs in level order)``.
Row = tuple[float, float, list[float]]
#: What ``ArtQuant.score`` accepts as ``attributes``.
AttributesInput = str | Sequence[str] | None


def attribute_key(name: str) -> str:
    """The column-safe id of an attribute name, as the spec and the score columns use it:
    lower-case, every run of other characters than ``a-z``/``0-9`` one ``_``, none at either end.

    Example:
        >>> attribute_key("Light and shadow"), attribute_key("the_sense_of_order")
        ('light_and_shadow', 'the_sense_of_order')
    """
    return re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_")


def _resolve_attribute_keys(
    spec: Any, name: str, attributes: AttributesInput, *, zero_shot: bool = False
) -> tuple[list[str], dict[str, Any]]:
    """What :meth:`ArtQuant.resolve_attributes` checks, from a model's scorer spec alone (the Ray
    driver has no model loaded): the attribute ids asked, and the zero-shot questions to add to
    the spec (id -> ``Question``)."""
    from artquant_model import APDDV2_ATTRIBUTE_QUESTIONS

    trained = [question for question in spec.questions if question != _TOTAL]
    if attributes is None:
        return [], {}
    if isinstance(attributes, str):
        attributes = [attributes]
    names = [str(a) for a in attributes]
    if names == ["all"]:
        if trained or not zero_shot:
            if not trained:
                raise ValueError(
                    f"model {name!r} was trained on no attributes (its spec asks only "
                    "the total); pass zero_shot_attributes=True (artquant score "
                    "--zero-shot-attributes) to ask APDDv2's ten with zero-shot prompts"
                )
            return trained, {}
        names = list(APDDV2_ATTRIBUTE_QUESTIONS)
    keys = list(dict.fromkeys(attribute_key(n) for n in names))
    if _TOTAL in keys or "" in keys:
        raise ValueError(
            f"attributes {names} name {'the total' if _TOTAL in keys else 'an empty name'}; "
            "the total is always scored, list attributes only"
        )
    missing = [key for key in keys if key not in spec.questions]
    if missing and not zero_shot:
        raise ValueError(
            f"model {name!r} has no attribute {missing[0]!r}"
            + (f" (nor {missing[1:]})" if len(missing) > 1 else "")
            + f"; it has {trained or 'none'}. Pass zero_shot_attributes=True "
            "(artquant score --zero-shot-attributes) to ask an APDDv2 attribute with a "
            f"zero-shot prompt: {list(APDDV2_ATTRIBUTE_QUESTIONS)}"
        )
    unknown = [key for key in missing if key not in APDDV2_ATTRIBUTE_QUESTIONS]
    if unknown:
        raise ValueError(
            f"attribute {unknown[0]!r} is neither one of model {name!r}'s "
            f"({trained or 'none'}) nor one of APDDv2's zero-shot questions "
            f"{list(APDDV2_ATTRIBUTE_QUESTIONS)}"
        )
    return keys, {k: APDDV2_ATTRIBUTE_QUESTIONS[k] for k in missing}


def level_preset(name: str) -> LevelSpec:
    """The ``artquant_model`` level spec called ``name`` ("artquant", "qalign", "onealign").

    Args:
        name: The preset's name.

    Returns:
        The ``artquant_model.LevelSpec`` (words, values, scale, prompt).

    Raises:
        ValueError: Unknown name; the message lists the presets.

    Example:
        >>> level_preset("artquant").scale
        (1.0, 10.0)
    """
    from artquant_model.levels import LEVEL_PRESETS as presets

    if name not in presets:
        raise ValueError(f"unknown level preset {name!r}; use one of {list(LEVEL_PRESETS)}")
    return presets[name]


def _card_levels(card: ModelCard) -> LevelSpec:
    spec = level_preset(card.levels)
    if tuple(map(float, spec.scale)) != tuple(card.scale) or spec.prompt != card.prompt:
        raise ManifestError(
            f"ModelZoo entry {card.name!r} says scale {card.scale} and prompt {card.prompt!r}, "
            f"but level preset {card.levels!r} has scale {tuple(spec.scale)} and prompt "
            f"{spec.prompt!r}; fix the manifest"
        )
    return spec


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def speed_options(
    device: torch.device, visual_attn_implementation: object, vision_batch_size: object
) -> tuple[str, int | None]:
    """The scorer's attention in the vision tower and vision batch size, defaults resolved.

    What :meth:`ArtQuant.from_pretrained` applies (benchmarks apply the same to random models).

    Raises:
        ValueError: Either value is not allowed; the message lists what is.
    """
    from artquant_model.backbones.mplug_owl2.configuration_mplug_owl2 import (
        VISUAL_ATTN_IMPLEMENTATIONS,
    )

    attention = "sdpa" if visual_attn_implementation is None else visual_attn_implementation
    if attention not in VISUAL_ATTN_IMPLEMENTATIONS:
        raise ValueError(
            f"visual_attn_implementation must be one of {list(VISUAL_ATTN_IMPLEMENTATIONS)}; "
            f"got {visual_attn_implementation!r}"
        )
    if vision_batch_size == "auto":
        return str(attention), (1 if device.type == "cpu" else None)
    if vision_batch_size is None or _is_positive_int(vision_batch_size):
        return str(attention), vision_batch_size  # type: ignore[return-value]
    raise ValueError(
        f"vision_batch_size must be 'auto', None or a positive int; got {vision_batch_size!r}"
    )


def _has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in _TOKENIZER_FILES)


def _find_tokenizer(
    explicit: str | os.PathLike[str] | None,
    candidates: Sequence[Path],
) -> Path:
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.exists():
            raise FileNotFoundError(
                f"tokenizer {os.fspath(explicit)!r} does not exist; pass a folder holding "
                "tokenizer.model or tokenizer.json, or the tokenizer.model file"
            )
        return path
    for folder in candidates:
        if _has_tokenizer(folder):
            return folder
    raise FileNotFoundError(
        f"no tokenizer.model or tokenizer.json in {[str(c) for c in candidates]}; pass "
        "tokenizer=<folder> (the LLaMA-2 tokenizer of mPLUG-Owl2, e.g. a downloaded "
        "mplug-owl2-llama2-7b folder)"
    )


def _levels_spec(levels: object) -> ScorerSpec | None:
    """The ``levels=`` argument as a ``ScorerSpec`` (None: not given)."""
    import artquant_model
    from artquant_model.backbones.mplug_owl2.backbone import spec_from_level_spec

    if levels is None:
        return None
    if isinstance(levels, str):
        level_preset(levels)  # an unknown name fails here, listing the presets
        return artquant_model.SPEC_PRESETS[levels]
    if isinstance(levels, artquant_model.ScorerSpec):
        return levels
    if isinstance(levels, artquant_model.LevelSpec):
        return spec_from_level_spec(levels)
    raise ValueError(
        f"levels must be a preset name {list(LEVEL_PRESETS)}, an artquant_model.LevelSpec or "
        f"an artquant_model.ScorerSpec; got {type(levels).__name__}"
    )


def _card_spec(card: ModelCard) -> ScorerSpec:
    """The spec a ModelZoo entry names (its ``levels`` preset, checked against its fields)."""
    import artquant_model

    if card.prompt is None:  # a chat-template base: the preset's question and stem
        preset = artquant_model.SPEC_PRESETS[card.levels]
        if tuple(map(float, preset.scale)) != tuple(card.scale):
            raise ManifestError(
                f"ModelZoo entry {card.name!r} says scale {card.scale}, but level preset "
                f"{card.levels!r} has scale {tuple(preset.scale)}; fix the manifest"
            )
        return preset
    _card_levels(card)  # an mPLUG-Owl2 entry's prompt must be its preset's
    return artquant_model.SPEC_PRESETS[card.levels]


def _load_mplug_owl2(
    path: Path,
    base: Path | None,
    card: ModelCard | None,
    tokenizer: str | os.PathLike[str] | None,
    *,
    local_files_only: bool,
    dtype: torch.dtype,
    device: torch.device,
    attn_implementation: str,
    spec: ScorerSpec | None,
    visual_attention: str,
    vision_steps: int | None,
) -> Backbone:
    """An mPLUG-Owl2 backbone as the SDK has always loaded it (tokenizer search, speed options)."""
    from artquant_model import (
        ARTQUANT_SPEC,
        MPLUGOwl2Backbone,
        MPLUGOwl2Processor,
        detect_checkpoint_format,
        load_model,
        load_tokenizer,
        read_spec,
    )

    detect_checkpoint_format(path)  # a clear error for a folder that is no checkpoint
    folders = [path] + ([base] if base is not None else [])
    if (
        tokenizer is None
        and card is not None
        and card.tokenizer_from is not None
        and not any(_has_tokenizer(f) for f in folders)
    ):
        folders.append(resolve_weights(card.tokenizer_from, local_files_only=local_files_only).path)
    tokenizer_path = _find_tokenizer(tokenizer, folders)
    if spec is None:
        spec = next((s for s in map(read_spec, folders[:2]) if s is not None), ARTQUANT_SPEC)
    model = load_model(
        path, base=base, dtype=dtype, device=device, attn_implementation=attn_implementation
    )
    model.config.visual_attn_implementation = visual_attention
    model.model.vision_batch_size = vision_steps
    model.eval()
    processor_dir = next((f for f in folders if (f / "preprocessor_config.json").is_file()), path)
    processor = MPLUGOwl2Processor.from_pretrained(
        processor_dir, tokenizer=load_tokenizer(tokenizer_path)
    )
    return MPLUGOwl2Backbone(model, processor, spec)


def _rows(result: Any) -> list[Row]:
    """``LevelScores`` -> per image ``(score, std, probs)`` in float64."""
    n = len(result.score)
    scores = result.score.double().cpu().reshape(n).tolist()
    stds = result.std.double().cpu().reshape(n).tolist()
    probs = result.probs.double().cpu().reshape(n, -1).tolist()
    return list(zip(scores, stds, probs, strict=True))


def _top_level(words: Sequence[str], probs: Sequence[float]) -> str:
    return words[max(range(len(words)), key=probs.__getitem__)]


@dataclass(frozen=True)
class _ProcessorView:
    """``scorer.processor`` of a backbone without an mPLUG-Owl2 processor object."""

    tokenizer: Any
    image_processor: Any


class ArtQuant:
    """An ArtQuant-family scorer on any supported backbone.

    Build it with :meth:`from_pretrained`, which picks the backbone from the checkpoint's
    ``config.json`` (``model_type``): mPLUG-Owl2 (ArtQuant, Q-Align / OneAlign, DeQA-Score) or a
    transformers image-text-to-text model (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5). Scores are
    read Q-Align style in one forward pass: the softmax over the logits of the level words at
    the answer position, dotted with the level values. The scale is the model's own and is named
    in every result (``ScoreResult.scale``): 1–10 for ArtQuant, 1–5 for OneAlign, 0–1 for the
    Q-Align scorer prompt.

    Attributes:
        backbone: The ``artquant_model.Backbone`` (model, tokenizer, preprocessing, spec).
        model: The backbone's model (LoRA merged), in eval mode.
        processor: ``.tokenizer`` and ``.image_processor`` (for mPLUG-Owl2 its
            ``MPLUGOwl2Processor``).
        spec: The ``artquant_model.ScorerSpec``: words, values, scale, questions.
        device: Where the model runs.
        dtype: The compute dtype.

    Example:
        >>> scorer = ArtQuant.from_pretrained("artquant-apdd")  # doctest: +SKIP
        >>> result = scorer.score("painting.jpg")[0]  # doctest: +SKIP
        >>> 1.0 <= result.score <= 10.0, result.scale  # doctest: +SKIP
        (True, (1.0, 10.0))
    """

    def __init__(
        self,
        model: Any,
        processor: MPLUGOwl2Processor | None = None,
        level_spec: LevelSpec | None = None,
        *,
        name: str = "",
    ) -> None:
        """Wrap a loaded backbone, or (the older form) an mPLUG-Owl2 model, its processor and
        a ``LevelSpec``."""
        from artquant_model import Backbone, MPLUGOwl2Backbone
        from artquant_model.backbones.mplug_owl2.backbone import spec_from_level_spec

        if isinstance(model, Backbone):
            if processor is not None or level_spec is not None:
                raise ValueError("processor and level_spec are part of a Backbone; pass none")
            backbone = model
        else:
            if processor is None:
                raise ValueError("an mPLUG-Owl2 model needs its MPLUGOwl2Processor")
            spec = spec_from_level_spec(level_spec) if level_spec is not None else None
            backbone = MPLUGOwl2Backbone(model, processor, *([spec] if spec else []))
        self.backbone: Backbone = backbone
        self.model = backbone.model
        self.processor = getattr(backbone, "processor", None) or _ProcessorView(
            backbone.tokenizer, backbone.image_processor
        )
        self.spec: ScorerSpec = backbone.spec
        self.name = name
        self.device: torch.device = backbone.device
        self.dtype: torch.dtype = backbone.dtype

    @property
    def level_spec(self) -> Any:
        """mPLUG-Owl2: the ``LevelSpec`` of the score (with its full prompt); other backbones:
        the ``ScorerSpec`` (both have ``name``, ``words``, ``values`` and ``scale``)."""
        getter = getattr(self.backbone, "level_spec", None)
        return getter() if callable(getter) else self.spec

    @property
    def _prefix_cache(self) -> Any:
        """mPLUG-Owl2's cache of the prompt's text before the picture."""
        return getattr(self.backbone, "prefix_cache", None)

    @property
    def _prompt_ids(self) -> torch.Tensor:
        """mPLUG-Owl2: the scoring prompt's ids (with -200 where the picture goes)."""
        return self.backbone.prompt_ids()  # type: ignore[attr-defined,no-any-return]

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        base: str | os.PathLike[str] | None = None,
        tokenizer: str | os.PathLike[str] | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        revision: str | None = None,
        local_files_only: bool = False,
        levels: str | LevelSpec | None = None,
        attn_implementation: str = "sdpa",
        visual_attn_implementation: str | None = None,
        vision_batch_size: int | Literal["auto"] | None = "auto",
    ) -> ArtQuant:
        """Load a scorer from a folder, a ModelZoo name or a hub id.

        Args:
            name_or_path: A checkpoint folder (full, or an ArtQuant LoRA release), a ModelZoo
                name (``artquant models`` lists them) or an ``owner/name`` hub id.
            base: For a LoRA release: the base checkpoint (folder, ModelZoo name or hub id);
                default the ModelZoo entry's base.
            tokenizer: A folder with ``tokenizer.model``/``tokenizer.json`` (or the file) when
                the checkpoint has none; default the checkpoint, then the base, then the
                ModelZoo entry's ``tokenizer_from``.
            device: ``"cuda"``, ``"cuda:N"``, ``"mps"``, ``"cpu"`` or None/``"auto"`` (cuda,
                else mps, else cpu).
            dtype: ``"float32"``, ``"bfloat16"``, ``"float16"`` (or ``fp32``/``bf16``/``fp16``),
                a torch dtype, or None/``"auto"``: bfloat16 on CUDA, float32 on CPU and MPS.
            revision: Hub branch, tag or commit (hub downloads only).
            local_files_only: Never download; fail with instructions instead.
            levels: A preset name (``"artquant"``, ``"qalign"``, ``"onealign"``) or a
                ``LevelSpec``; default the ModelZoo entry's, else ``"artquant"``.
            attn_implementation: ``"sdpa"`` (default), ``"eager"`` or ``"flash_attention_2"``.
            visual_attn_implementation: Attention in the vision tower and abstractor:
                ``"sdpa"`` (fused; no score matrices held) or ``"eager"`` (the original's
                arithmetic, bit for bit). None means ``"sdpa"``: faster on every device
                (1.1x per picture on a 2-core CPU, 1.5x at batch 8) and lighter; float32 scores
                move by about 5e-6. Pass ``"eager"`` to reproduce the original's float32
                outputs exactly.
            vision_batch_size: Pictures per pass through the vision tower (see
                ``MPLUGOwl2Model.vision_batch_size``); scores do not depend on it. ``"auto"``:
                1 on a CPU, where a batch's large transient tensors page-fault under glibc's
                malloc, else the whole batch (None).

        Returns:
            The scorer, on ``device``, in eval mode.

        Raises:
            ModelNotFoundError: ``name_or_path`` (or ``base``) is not a folder, ModelZoo name or
                hub id.
            ModelUnavailableError: Weights must be downloaded but cannot be; the message says
                what to download and where to put it.
            ValueError: Bad ``device``/``dtype``/``levels``/``vision_batch_size``, or ``base``
                given for a full checkpoint, or a LoRA release without a base.
            FileNotFoundError: No tokenizer could be found.
        """
        from artquant_model import lora_base_folder
        from artquant_model.backbones import checkpoint_model_type, family_of

        torch_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, torch_device)
        # Checked before anything is read or downloaded.
        visual_attention, vision_steps = speed_options(
            torch_device, visual_attn_implementation, vision_batch_size
        )
        spec = _levels_spec(levels)
        weights = resolve_weights(
            name_or_path, revision=revision, local_files_only=local_files_only
        )
        card = weights.card
        base_weights: ResolvedWeights | None = None
        if (weights.path / "adapter_config.json").is_file():
            base_name = base if base is not None else (card.base if card else None)
            if base_name is None:
                base_name = lora_base_folder(weights.path)
            if base_name is None:
                raise ValueError(
                    f"{weights.path} is a LoRA release / adapter and its adapter_config.json "
                    "names no local base folder; pass base=<the full base checkpoint> (for "
                    "ArtQuant: 'mplug-owl2-llama2-7b' or its folder)"
                )
            base_weights = resolve_weights(base_name, local_files_only=local_files_only)
        elif base is not None:
            raise ValueError(
                f"base={os.fspath(base)!r} was given but {weights.path} is a full checkpoint; "
                "base is only for LoRA releases"
            )
        base_path = base_weights.path if base_weights else None
        # An unknown model_type fails here, naming the supported ones.
        family = family_of(checkpoint_model_type(weights.path, base_path))
        if spec is None and card is not None:
            spec = _card_spec(card)
        name = card.name if card else str(weights.path)
        logger.info(
            "loading %s (%s%s) on %s in %s",
            weights.path,
            family,
            f" over {base_path}" if base_path else "",
            torch_device,
            torch_dtype,
        )
        if family != "mplug_owl2":
            from artquant_model import load_backbone

            if tokenizer is not None:
                raise ValueError(
                    "tokenizer= applies to mPLUG-Owl2 checkpoints only; a "
                    f"{family} checkpoint carries its tokenizer and chat template"
                )
            backbone = load_backbone(
                weights.path,
                base=base_path,
                dtype=torch_dtype,
                device=torch_device,
                attn_implementation=attn_implementation,
                spec=spec,
            )
            return cls(backbone, name=name)
        return cls(
            _load_mplug_owl2(
                weights.path,
                base_path,
                card,
                tokenizer,
                local_files_only=local_files_only,
                dtype=torch_dtype,
                device=torch_device,
                attn_implementation=attn_implementation,
                spec=spec,
                visual_attention=visual_attention,
                vision_steps=vision_steps,
            ),
            name=name,
        )

    @property
    def scale(self) -> tuple[float, float]:
        """``(min, max)`` of the scores of this model."""
        low, high = self.spec.scale
        return float(low), float(high)

    @property
    def level_words(self) -> list[str]:
        """The level words in level order (the order of ``ScoreResult.probs``)."""
        return list(self.spec.words)

    def preprocess(
        self, images: list[Any], *, max_pixels: int | None = None, num_threads: int = 1
    ) -> Any:
        """The backbone's pixels for a list of images: mPLUG-Owl2 ``[N, 3, S, S]`` float32,
        the Qwen-VL families an ``artquant_model.VisionBatch`` (patches and grids), on the CPU.

        Args:
            images: PIL images (or anything ``artquant_model.load_image`` reads).
            max_pixels: Decompression-bomb limit; None for ``artquant_model``'s default.
            num_threads: Images decoded and resized at once; the pixels do not depend on it.
        """
        limit = {} if max_pixels is None else {"max_pixels": max_pixels}
        return self.backbone.image_processor(images, num_threads=num_threads, **limit)

    def default_decode_threads(self) -> int:
        """Threads :meth:`score` decodes with by default.

        On a CPU, as many as the model's threads: decoding then runs between forward passes on
        every core, a batch's pictures side by side (decoding *during* the forward passes only
        takes cores from the model: measured slower on 2 cores). On an accelerator, one per core
        up to 16, ahead of the model.
        """
        if self.device.type == "cpu":
            return max(1, torch.get_num_threads())
        return max(1, min(16, os.cpu_count() or 1))

    @property
    def attributes(self) -> list[str]:
        """The attributes this model was trained on (its spec's questions besides the total)."""
        return [name for name in self.spec.questions if name != _TOTAL]

    def resolve_attributes(
        self, attributes: AttributesInput, *, zero_shot: bool = False
    ) -> list[str]:
        """The attribute ids :meth:`score` asks for ``attributes``, checked against the model.

        Args:
            attributes: None (none), ``"all"`` (every attribute the model has; with
                ``zero_shot`` and a model without any, APDDv2's ten), one name or a list of
                names; a name may be an id (``"light_and_shadow"``) or APDDv2's name
                (``"Light and shadow"``).
            zero_shot: Ask an attribute the model was not trained on with APDDv2's question
                and answer stem (``artquant_model.APDDV2_ATTRIBUTE_QUESTIONS``) instead of
                refusing it. Such scores come from a prompt the model never learnt.

        Returns:
            Attribute ids in the order asked, without repeats.

        Raises:
            ValueError: An attribute the model does not have (the message names it and lists
                the model's attributes), without ``zero_shot``; with it, one that APDDv2 does
                not have either; ``"total"`` asked as an attribute.

        Example:
            >>> scorer.resolve_attributes("Color, mood".split(","))  # doctest: +SKIP
            ['color', 'mood']
        """
        keys, added = _resolve_attribute_keys(self.spec, self.name, attributes, zero_shot=zero_shot)
        if added:
            logger.info("zero-shot attribute questions: %s", list(added))
            spec = self.backbone.spec
            self.backbone.spec = spec.model_copy(update={"questions": {**spec.questions, **added}})
        return keys

    def score_pixel_values(self, pixel_values: Any) -> list[Row]:
        """Score preprocessed pixels (one forward pass; only the level rows of the LM head).

        Args:
            pixel_values: As returned by :meth:`preprocess` (pinned memory copies to a GPU
                asynchronously).

        Returns:
            Per image ``(score, std, probs)`` with probs in level order, all computed in float64
            from the level logits.
        """
        return _rows(self.backbone.score(pixel_values))

    def score_batch(
        self, pixel_values: Any, attributes: Sequence[str] = ()
    ) -> list[tuple[Row, dict[str, Row]]]:
        """Score preprocessed pixels with the total and attributes (each picture computed once
        for all questions, see ``artquant_model.Backbone.score_questions``).

        Args:
            pixel_values: As returned by :meth:`preprocess`.
            attributes: Attribute ids from :meth:`resolve_attributes` (none: the total only,
                as :meth:`score_pixel_values`).

        Returns:
            Per image the total's ``(score, std, probs)`` and ``{attribute: (score, std,
            probs)}``.
        """
        if not attributes:
            return [(row, {}) for row in self.score_pixel_values(pixel_values)]
        scored = self.backbone.score_questions(pixel_values, [_TOTAL, *attributes])
        per_question = {name: _rows(result) for name, result in scored.items()}
        return [
            (total, {name: per_question[name][index] for name in attributes})
            for index, total in enumerate(per_question[_TOTAL])
        ]

    def to_result(
        self,
        image: str,
        score: float,
        std: float,
        probs: list[float],
        attributes: Mapping[str, Row] | None = None,
    ) -> ScoreResult:
        """Wrap one row of :meth:`score_pixel_values` (and its attributes' rows from
        :meth:`score_batch`) as a :class:`ScoreResult`."""
        words = self.level_words
        return ScoreResult(
            image=image,
            score=score,
            std=std,
            probs=dict(zip(words, probs, strict=True)),
            level=_top_level(words, probs),
            scale=self.scale,
            attributes={
                name: AttributeScore(
                    score=a_score,
                    std=a_std,
                    probs=dict(zip(words, a_probs, strict=True)),
                    level=_top_level(words, a_probs),
                )
                for name, (a_score, a_std, a_probs) in (attributes or {}).items()
            },
        )

    def score(
        self,
        images: ImagesInput,
        *,
        attributes: AttributesInput = None,
        zero_shot_attributes: bool = False,
        batch_size: int = 8,
        progress: bool | None = None,
        decode_threads: int | None = None,
    ) -> list[ScoreResult]:
        """Score one image or many: the total and, when asked, attributes.

        Pictures are decoded and preprocessed by ``decode_threads`` threads, a batch at a time:
        on a CPU between forward passes, elsewhere one batch ahead while the model runs. With
        attributes, each picture is computed once for all questions (where the model's prompts
        put the picture first, also everything before the question), so the total plus ten
        attributes costs far less than eleven scores (README: the measured ratio).

        Args:
            images: One image or a list: paths, PIL images, ``HxW(xC)`` uint8 arrays, or
                encoded bytes.
            attributes: None (the total only), ``"all"`` (every attribute the model was trained
                on) or names/ids (``["color", "Light and shadow"]``); see
                :meth:`resolve_attributes`. Results carry them in ``ScoreResult.attributes``,
                by id.
            zero_shot_attributes: Ask attributes the model was not trained on with APDDv2's
                zero-shot questions instead of refusing them.
            batch_size: Images per forward pass; results do not depend on it.
            progress: Show a progress bar (None: only when there is more than one batch).
            decode_threads: Decoding threads; None for :meth:`default_decode_threads`. Results
                do not depend on it.

        Returns:
            One :class:`ScoreResult` per image, in input order.

        Raises:
            ValueError: ``batch_size`` or ``decode_threads`` is not a positive integer, or an
                attribute the model does not have (without ``zero_shot_attributes``).
            TypeError: An image is of an unsupported kind.
            ImageLoadError: An image cannot be read (from ``artquant_model``; names the image).

        Example:
            >>> scorer.score(["a.jpg", "b.png"], batch_size=2)  # doctest: +SKIP
            >>> [result] = scorer.score("a.jpg", attributes="all")  # doctest: +SKIP
            >>> result.attributes["color"].score  # doctest: +SKIP
        """
        asked = self.resolve_attributes(attributes, zero_shot=zero_shot_attributes)
        if not _is_positive_int(batch_size):
            raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
        if decode_threads is None:
            decode_threads = self.default_decode_threads()
        elif not _is_positive_int(decode_threads):
            raise ValueError(f"decode_threads must be a positive integer; got {decode_threads!r}")
        items = as_image_list(images)
        chunks = [items[start : start + batch_size] for start in range(0, len(items), batch_size)]
        threads = decode_threads

        def decode(chunk: list[tuple[str, ImageInput]]) -> torch.Tensor:
            return self.preprocess([source for _, source in chunk], num_threads=threads)

        show = progress if progress is not None else len(items) > batch_size
        results: list[ScoreResult] = []
        # Decoding ahead pays only where the model does not need the host's cores.
        ahead = self.device.type != "cpu" and len(chunks) > 1
        with (
            ThreadPoolExecutor(max_workers=1) if ahead else contextlib.nullcontext() as background,
            tqdm(total=len(items), unit="img", disable=not show, desc="scoring") as bar,
        ):
            pending: Future[torch.Tensor] | None = None
            for position, chunk in enumerate(chunks):
                if background is None:
                    pixels = decode(chunk)
                else:
                    pixels = (pending or background.submit(decode, chunk)).result()
                    if position + 1 < len(chunks):
                        pending = background.submit(decode, chunks[position + 1])
                for (image_id, _), ((score, std, probs), extra) in zip(
                    chunk, self.score_batch(pixels, asked), strict=True
                ):
                    results.append(self.to_result(image_id, score, std, probs, extra))
                bar.update(len(chunk))
        return results

    def describe_ids(
        self, image: ImageInput, *, max_new_tokens: int = 512, prompt: str | None = None
    ) -> list[int]:
        """The token ids of :meth:`describe`'s answer (greedy decoding)."""
        from artquant_model import MPLUGOwl2Backbone, load_image

        if (
            not isinstance(max_new_tokens, int)
            or isinstance(max_new_tokens, bool)
            or (max_new_tokens < 1)
        ):
            raise ValueError(f"max_new_tokens must be a positive integer; got {max_new_tokens!r}")
        if (
            isinstance(self.backbone, MPLUGOwl2Backbone)
            and prompt is not None
            and prompt.count(_IMAGE_TOKEN) != 1
        ):
            raise ValueError(
                f"prompt must hold {_IMAGE_TOKEN!r} exactly once, where the image goes; "
                f"got {prompt!r}"
            )
        if isinstance(image, list | tuple):
            raise TypeError("describe takes one image, not a list; call it once per image")
        ((_, source),) = as_image_list(image)
        pixels = self.preprocess([load_image(source)])
        return self.backbone.generate(pixels, prompt, max_new_tokens=max_new_tokens)

    def describe(
        self, image: ImageInput, *, max_new_tokens: int = 512, prompt: str | None = None
    ) -> str:
        """Describe an image: the hierarchical perception / cognition / emotion answer.

        Args:
            image: One image (path, PIL image, array or bytes).
            max_new_tokens: The most tokens to generate.
            prompt: mPLUG-Owl2: the full prompt with ``<|image|>`` where the image goes
                (default ``artquant_model.DESCRIBE_PROMPT``); chat-template backbones: the
                user's question, rendered with the picture by the model's chat template
                (default "Describe this painting.").

        Returns:
            The generated text (greedy decoding), without the prompt.

        Raises:
            ValueError: Bad ``max_new_tokens`` or a prompt without exactly one ``<|image|>``.

        Example:
            >>> print(scorer.describe("painting.jpg"))  # doctest: +SKIP
        """
        ids = self.describe_ids(image, max_new_tokens=max_new_tokens, prompt=prompt)
        return self.backbone.decode(ids)

    def __repr__(self) -> str:
        return (
            f"ArtQuant(name={self.name!r}, device={self.device}, dtype={self.dtype}, "
            f"levels={self.level_words}, scale={self.scale})"
        )
