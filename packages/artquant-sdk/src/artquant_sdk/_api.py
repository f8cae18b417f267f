"""The ``ArtQuant`` scorer: load once, then score and describe images."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from tqdm.auto import tqdm

from artquant_sdk._devices import resolve_device, resolve_dtype
from artquant_sdk._errors import ManifestError
from artquant_sdk._inputs import ImageInput, ImagesInput, as_image_list
from artquant_sdk._types import ScoreResult
from artquant_sdk._zoo import LEVEL_PRESETS, ModelCard, ResolvedWeights, resolve_weights

if TYPE_CHECKING:  # artquant_model (and transformers) load lazily: `artquant models` stays fast
    from artquant_model import LevelSpec, MPLUGOwl2Processor

__all__ = ["ArtQuant", "level_preset"]

logger = logging.getLogger(__name__)

_TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json")
_IMAGE_TOKEN = "<|image|>"


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
    from artquant_model.backbones.mplug_owl2.configuration_mplug_owl2 import VISUAL_ATTN_IMPLEMENTATIONS

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


class ArtQuant:
    """An ArtQuant-family scorer: an mPLUG-Owl2 model, its processor and its level words.

    Build it with :meth:`from_pretrained`. Scores are read Q-Align style in one forward pass: the
    softmax over the logits of the level words at the answer position, dotted with the level
    values. The scale is the model's own and is named in every result (``ScoreResult.scale``):
    1–10 for ArtQuant, 1–5 for OneAlign, 0–1 for the Q-Align scorer prompt.

    Attributes:
        model: The ``MPLUGOwl2ForCausalLM`` (LoRA merged), in eval mode.
        processor: The ``MPLUGOwl2Processor`` (tokenizer and image processor).
        level_spec: The ``LevelSpec``: words, values, scale and scoring prompt.
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
        processor: MPLUGOwl2Processor,
        level_spec: LevelSpec,
        *,
        name: str = "",
    ) -> None:
        self.model = model
        self.processor = processor
        self.level_spec = level_spec
        self.name = name
        parameter = next(model.parameters())
        self.device: torch.device = parameter.device
        self.dtype: torch.dtype = parameter.dtype
        from artquant_model import tokenizer_image_token

        tokenizer = processor.tokenizer
        self._level_ids = torch.tensor(level_spec.token_ids(tokenizer), dtype=torch.long)
        self._values = torch.tensor(list(level_spec.values), dtype=torch.float64)
        # LevelSpec (frozen, validated) already holds exactly one <|image|> in its prompt.
        self._prompt_ids = torch.tensor(
            tokenizer_image_token(level_spec.prompt, tokenizer), dtype=torch.long
        )
        from artquant_model import PromptPrefixCache

        # The prompt's text before the image is the same for every image: its keys and values
        # are computed once (and again only if the prompt or a weight changes).
        self._prefix_cache = PromptPrefixCache()

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
        import artquant_model
        from artquant_model import (
            MPLUGOwl2Processor,
            detect_checkpoint_format,
            load_model,
            load_tokenizer,
            lora_base_folder,
        )

        torch_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, torch_device)
        # Checked before anything is read or downloaded.
        visual_attention, vision_steps = speed_options(
            torch_device, visual_attn_implementation, vision_batch_size
        )
        weights = resolve_weights(
            name_or_path, revision=revision, local_files_only=local_files_only
        )
        card = weights.card
        checkpoint_format = detect_checkpoint_format(weights.path)
        base_weights: ResolvedWeights | None = None
        if checkpoint_format == "lora":
            base_name = base if base is not None else (card.base if card else None)
            if base_name is None:
                base_name = lora_base_folder(weights.path)
            if base_name is None:
                raise ValueError(
                    f"{weights.path} is an ArtQuant LoRA release and its adapter_config.json "
                    "names no local base folder; pass base=<the full base checkpoint> (for "
                    "ArtQuant: 'mplug-owl2-llama2-7b' or its folder)"
                )
            base_weights = resolve_weights(base_name, local_files_only=local_files_only)
        elif base is not None:
            raise ValueError(
                f"base={os.fspath(base)!r} was given but {weights.path} is a full checkpoint; "
                "base is only for LoRA releases"
            )
        folders = [weights.path] + ([base_weights.path] if base_weights else [])
        if (
            tokenizer is None
            and card is not None
            and card.tokenizer_from is not None
            and not any(_has_tokenizer(f) for f in folders)
        ):
            folders.append(
                resolve_weights(card.tokenizer_from, local_files_only=local_files_only).path
            )
        tokenizer_path = _find_tokenizer(tokenizer, folders)

        if levels is None:
            level_spec = _card_levels(card) if card is not None else level_preset("artquant")
        elif isinstance(levels, str):
            level_spec = level_preset(levels)
        elif isinstance(levels, artquant_model.LevelSpec):
            level_spec = levels
        else:
            raise ValueError(
                f"levels must be a preset name {list(LEVEL_PRESETS)} or an "
                f"artquant_model.LevelSpec; got {type(levels).__name__}"
            )

        logger.info(
            "loading %s (%s%s) on %s in %s",
            weights.path,
            checkpoint_format,
            f" over {base_weights.path}" if base_weights else "",
            torch_device,
            torch_dtype,
        )
        model = load_model(
            weights.path,
            base=base_weights.path if base_weights else None,
            dtype=torch_dtype,
            device=torch_device,
            attn_implementation=attn_implementation,
        )
        model.config.visual_attn_implementation = visual_attention
        model.model.vision_batch_size = vision_steps
        model.eval()
        processor_dir = next(
            (f for f in folders if (f / "preprocessor_config.json").is_file()), weights.path
        )
        processor = MPLUGOwl2Processor.from_pretrained(
            processor_dir, tokenizer=load_tokenizer(tokenizer_path)
        )
        return cls(model, processor, level_spec, name=card.name if card else str(weights.path))

    @property
    def scale(self) -> tuple[float, float]:
        """``(min, max)`` of the scores of this model."""
        low, high = self.level_spec.scale
        return float(low), float(high)

    @property
    def level_words(self) -> list[str]:
        """The level words in level order (the order of ``ScoreResult.probs``)."""
        return list(self.level_spec.words)

    def preprocess(
        self, images: list[Any], *, max_pixels: int | None = None, num_threads: int = 1
    ) -> torch.Tensor:
        """Pixels ``[N, 3, S, S]`` (float32, CPU) for a list of images.

        Args:
            images: PIL images (or anything ``artquant_model.load_image`` reads).
            max_pixels: Decompression-bomb limit; None for ``artquant_model``'s default.
            num_threads: Images decoded and resized at once; the pixels do not depend on it.
        """
        limit = {} if max_pixels is None else {"max_pixels": max_pixels}
        return self.processor.image_processor(images, num_threads=num_threads, **limit)

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

    @torch.inference_mode()
    def score_pixel_values(
        self, pixel_values: torch.Tensor
    ) -> list[tuple[float, float, list[float]]]:
        """Score preprocessed pixels.

        Args:
            pixel_values: ``[N, 3, S, S]`` as returned by :meth:`preprocess`.

        Returns:
            Per image ``(score, std, probs)`` with probs in level order, all computed in float64
            from the level logits.
        """
        from artquant_model.scoring import score_pixel_values

        n = pixel_values.shape[0]
        input_ids = self._prompt_ids.unsqueeze(0).expand(n, -1).to(self.device)
        result = score_pixel_values(
            self.model,
            input_ids,
            # pinned pixels (from the decode workers) copy asynchronously; then cast on device
            pixel_values.to(self.device, non_blocking=True).to(self.dtype),
            self._level_ids.to(self.device),
            self._values,
            open_set=False,
            prefix_cache=self._prefix_cache,
        )
        scores = result.score.double().cpu().reshape(n).tolist()
        stds = result.std.double().cpu().reshape(n).tolist()
        probs = result.probs.double().cpu().reshape(n, -1).tolist()
        return list(zip(scores, stds, probs, strict=True))

    def to_result(self, image: str, score: float, std: float, probs: list[float]) -> ScoreResult:
        """Wrap one row of :meth:`score_pixel_values` as a :class:`ScoreResult`."""
        words = self.level_words
        best = max(range(len(words)), key=probs.__getitem__)
        return ScoreResult(
            image=image,
            score=score,
            std=std,
            probs=dict(zip(words, probs, strict=True)),
            level=words[best],
            scale=self.scale,
        )

    def score(
        self,
        images: ImagesInput,
        *,
        batch_size: int = 8,
        progress: bool | None = None,
        decode_threads: int | None = None,
    ) -> list[ScoreResult]:
        """Score one image or many.

        Pictures are decoded and preprocessed by ``decode_threads`` threads, a batch at a time:
        on a CPU between forward passes, elsewhere one batch ahead while the model runs.

        Args:
            images: One image or a list: paths, PIL images, ``HxW(xC)`` uint8 arrays, or
                encoded bytes.
            batch_size: Images per forward pass; results do not depend on it.
            progress: Show a progress bar (None: only when there is more than one batch).
            decode_threads: Decoding threads; None for :meth:`default_decode_threads`. Results
                do not depend on it.

        Returns:
            One :class:`ScoreResult` per image, in input order.

        Raises:
            ValueError: ``batch_size`` or ``decode_threads`` is not a positive integer.
            TypeError: An image is of an unsupported kind.
            ImageLoadError: An image cannot be read (from ``artquant_model``; names the image).

        Example:
            >>> scorer.score(["a.jpg", "b.png"], batch_size=2)  # doctest: +SKIP
        """
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
                for (image_id, _), (score, std, probs) in zip(
                    chunk, self.score_pixel_values(pixels), strict=True
                ):
                    results.append(self.to_result(image_id, score, std, probs))
                bar.update(len(chunk))
        return results

    def describe_ids(
        self, image: ImageInput, *, max_new_tokens: int = 512, prompt: str | None = None
    ) -> list[int]:
        """The token ids of :meth:`describe`'s answer (greedy decoding)."""
        from artquant_model import DESCRIBE_PROMPT, load_image, tokenizer_image_token

        if (
            not isinstance(max_new_tokens, int)
            or isinstance(max_new_tokens, bool)
            or (max_new_tokens < 1)
        ):
            raise ValueError(f"max_new_tokens must be a positive integer; got {max_new_tokens!r}")
        text = DESCRIBE_PROMPT if prompt is None else prompt
        if text.count(_IMAGE_TOKEN) != 1:
            raise ValueError(
                f"prompt must hold {_IMAGE_TOKEN!r} exactly once, where the image goes; "
                f"got {text!r}"
            )
        if isinstance(image, list | tuple):
            raise TypeError("describe takes one image, not a list; call it once per image")
        ((_, source),) = as_image_list(image)
        pixels = self.preprocess([load_image(source)])
        ids = torch.tensor([tokenizer_image_token(text, self.processor.tokenizer)])
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=ids.to(self.device),
                images=pixels.to(self.device, self.dtype),
                attention_mask=torch.ones_like(ids).to(self.device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
            )
        return [int(t) for t in out[0, ids.shape[1] :].tolist()]

    def describe(
        self, image: ImageInput, *, max_new_tokens: int = 512, prompt: str | None = None
    ) -> str:
        """Describe an image: the hierarchical perception / cognition / emotion answer.

        Args:
            image: One image (path, PIL image, array or bytes).
            max_new_tokens: The most tokens to generate.
            prompt: The full prompt with ``<|image|>`` where the image goes; default
                ``artquant_model.DESCRIBE_PROMPT``.

        Returns:
            The generated text (greedy decoding), without the prompt.

        Raises:
            ValueError: Bad ``max_new_tokens`` or a prompt without exactly one ``<|image|>``.

        Example:
            >>> print(scorer.describe("painting.jpg"))  # doctest: +SKIP
        """
        ids = self.describe_ids(image, max_new_tokens=max_new_tokens, prompt=prompt)
        return str(self.processor.tokenizer.decode(ids, skip_special_tokens=True)).strip()

    def __repr__(self) -> str:
        return (
            f"ArtQuant(name={self.name!r}, device={self.device}, dtype={self.dtype}, "
            f"levels={self.level_words}, scale={self.scale})"
        )
