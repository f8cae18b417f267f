"""Tokenizer, image processor and processor of mPLUG-Owl2, with the original's exact semantics.

* `load_tokenizer`: the LLaMA-2 SentencePiece tokenizer as a transformers tokenizer whose ids equal
  SentencePiece's (BOS added, no EOS, pad = unk).
* `tokenizer_image_token`: prompt string with `<|image|>` -> ids with -200, chunk by chunk.
* `MPLUGOwl2ImageProcessor`: pad to square with the mean colour, shortest edge -> S bicubic,
  centre crop, rescale, normalise (bit-identical to the original `CLIPImageProcessor` path).
* `MPLUGOwl2Processor`: both, batching prompts with left padding.

Example:
    >>> from artquant_model.testing import tiny_tokenizer
    >>> tokenizer = tiny_tokenizer()
    >>> ids = tokenizer_image_token("USER: <|image|>Describe this painting.", tokenizer)
    >>> ids[0], IMAGE_TOKEN_INDEX in ids
    (1, True)
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from transformers import BatchFeature, PreTrainedTokenizerBase

from artquant_model import _images
from artquant_model._images import (
    CLIP_MEAN,
    CLIP_STD,
    DEFAULT_MAX_PIXELS,
    ImageLoadError,
    load_image,
)
from artquant_model._prompts import (
    ARTQUANT_SCORE_PROMPT,
    DEFAULT_IMAGE_TOKEN,
    DESCRIBE_PROMPT,
    IMAGE_TOKEN_INDEX,
    QALIGN_AESTHETICS_PROMPT,
    QALIGN_SCORE_PROMPT,
)
from artquant_model.backbones.mplug_owl2 import _tokenizer

logger = logging.getLogger(__name__)

TOKENIZER_MODEL_FILE = "tokenizer.model"
TOKENIZER_JSON_FILE = "tokenizer.json"
PREPROCESSOR_CONFIG_FILE = "preprocessor_config.json"
MODEL_CONFIG_FILE = "config.json"

_RESAMPLE_NAMES = {
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
ResampleName = Literal["nearest", "lanczos", "bilinear", "bicubic", "box", "hamming"]


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------


def load_tokenizer(path: str | os.PathLike[str]) -> PreTrainedTokenizerBase:
    """Load the LLaMA SentencePiece tokenizer of mPLUG-Owl2 / Q-Align / ArtQuant.

    The folder may hold `tokenizer.model` (preferred: the SentencePiece model is the ground truth)
    and/or `tokenizer.json` (only its vocabulary is used: the merges are re-derived with LLaMA's
    piece order, so a file from any converter, transformers 5's included, gives SentencePiece's
    ids); `path` may also be the
    `tokenizer.model` or `tokenizer.json` file itself. Other files (`tokenizer_config.json`, ...)
    are ignored: the conventions below are the original ones.

    The result encodes exactly like `sentencepiece.SentencePieceProcessor.encode` with BOS in
    front: BOS `<s>` (1) added, EOS `</s>` (2) never added, pad = unk `<unk>` (0), `legacy`
    behaviour. *Legacy*: every stretch of text between special tokens written in the text (such
    as a literal "</s>") gets SentencePiece's dummy prefix "▁", as SentencePiece itself and the
    LLaMA-2 `tokenizer.json` do; transformers' slow tokenizer with `legacy=False` omits it right
    after a special token. No prompt of the original pipelines has text after a special token,
    so both agree on all of them (the fixtures check `legacy` true and false alike); to end a
    training answer, append EOS by id or write "</s>" last.

    Args:
        path: a folder, or a `tokenizer.model` / `tokenizer.json` file.

    Returns:
        A transformers `TokenizersBackend` (fast tokenizer); `save_pretrained` writes a
        `tokenizer.json` that `transformers.AutoTokenizer` also loads with the same ids.

    Raises:
        FileNotFoundError: if neither file is there.
        ValueError: if the file is not a LLaMA-style SentencePiece BPE tokenizer.

    Example:
        >>> tokenizer = load_tokenizer("../shared/tokenizers/llama2")  # doctest: +SKIP
        >>> tokenizer(" ASSISTANT:").input_ids  # doctest: +SKIP
        [1, 29871, 319, 1799, 9047, 13566, 29901]
    """
    location = Path(path)
    if location.is_dir():
        model_file = location / TOKENIZER_MODEL_FILE
        json_file = location / TOKENIZER_JSON_FILE
        if model_file.is_file():
            backend = _tokenizer.backend_from_sentencepiece(
                model_file.read_bytes(), source=str(model_file)
            )
        elif json_file.is_file():
            backend = _tokenizer.backend_from_tokenizer_json(json_file)
        else:
            raise FileNotFoundError(
                f"no tokenizer in {location}: expected {TOKENIZER_MODEL_FILE} or "
                f"{TOKENIZER_JSON_FILE}"
            )
    elif location.is_file():
        if location.suffix == ".json":
            backend = _tokenizer.backend_from_tokenizer_json(location)
        else:
            backend = _tokenizer.backend_from_sentencepiece(
                location.read_bytes(), source=str(location)
            )
    else:
        raise FileNotFoundError(f"no tokenizer at {location}: no such file or folder")
    tokenizer = _tokenizer.wrap_backend(backend, name_or_path=str(location))
    logger.debug("loaded tokenizer from %s (%d pieces)", location, len(tokenizer))
    return tokenizer


def tokenizer_image_token(
    prompt: str,
    tokenizer: PreTrainedTokenizerBase,
    image_token_index: int = IMAGE_TOKEN_INDEX,
) -> list[int]:
    """Tokenize a prompt holding `<|image|>` markers exactly as mPLUG-Owl2's `mm_utils` does.

    The prompt is split on `<|image|>`; each non-empty chunk is tokenized on its own (with BOS and
    SentencePiece's dummy prefix, so a chunk starting with a space or newline starts with the lone
    piece "▁" = 29871 for LLaMA); the chunks are joined with `image_token_index`. When the first
    chunk starts with BOS, that BOS is kept and the first token of every later chunk (its BOS) is
    dropped. Faithful quirk: a prompt that *starts* with `<|image|>` has an empty first chunk, so
    no BOS is kept or dropped at all (later chunks keep theirs).

    Args:
        prompt: the prompt string.
        tokenizer: a tokenizer from `load_tokenizer` (or any that adds BOS).
        image_token_index: the id placed at each image (-200).

    Returns:
        The ids, with `image_token_index` at each image.

    Example:
        >>> from artquant_model.testing import tiny_tokenizer
        >>> ids = tokenizer_image_token("USER: hi\\n<|image|> ASSISTANT:", tiny_tokenizer())
        >>> ids.count(IMAGE_TOKEN_INDEX)
        1
    """
    chunks = [
        list(tokenizer(chunk).input_ids) if chunk else []
        for chunk in prompt.split(DEFAULT_IMAGE_TOKEN)
    ]
    input_ids: list[int] = []
    offset = 0
    if chunks and chunks[0] and chunks[0][0] == tokenizer.bos_token_id:
        offset = 1
        input_ids.append(chunks[0][0])
    for position, chunk in enumerate(chunks):
        if position > 0:
            input_ids.append(image_token_index)
        input_ids.extend(chunk[offset:])
    return input_ids


# --------------------------------------------------------------------------------------------
# Image processor
# --------------------------------------------------------------------------------------------


class ImageProcessorConfig(BaseModel):
    """Settings of `MPLUGOwl2ImageProcessor` (the meaningful part of `preprocessor_config.json`).

    Attributes:
        image_size: S, the shortest edge after resizing (448 for the released models).
        crop_size: the centre-crop side; defaults to `image_size` (then the crop is a no-op).
            `None` also means `image_size`.
        image_mean: per-channel mean (also sets the padding colour `int(255 * mean)`).
        image_std: per-channel std.
        resample: the Pillow filter ("bicubic" in the original).
        rescale_factor: the byte -> [0, 1] factor.
        pad_to_square: pad to a square first (the original "pad" aspect-ratio mode).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    image_size: int = Field(default=448, gt=0)
    crop_size: int = Field(default=448, gt=0)
    image_mean: tuple[float, float, float] = CLIP_MEAN
    image_std: tuple[float, float, float] = CLIP_STD
    resample: ResampleName = "bicubic"
    rescale_factor: float = Field(default=1 / 255, gt=0)
    pad_to_square: bool = True

    @model_validator(mode="before")
    @classmethod
    def _default_crop(cls, data: Any) -> Any:
        # None means "the resized size"; store it so that equal settings compare equal
        if isinstance(data, dict) and data.get("crop_size") is None:
            data = {**data, "crop_size": data.get("image_size", 448)}
        return data

    @field_validator("image_mean")
    @classmethod
    def _mean_in_unit_range(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if not all(0.0 <= m <= 1.0 for m in value):
            raise ValueError(f"image_mean must lie in [0, 1] per channel, got {value}")
        return value

    @field_validator("image_std")
    @classmethod
    def _std_positive(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if not all(s > 0 for s in value):
            raise ValueError(f"image_std must be positive per channel, got {value}")
        return value

    @model_validator(mode="after")
    def _crop_fits(self) -> ImageProcessorConfig:
        if self.crop_size > self.image_size:
            raise ValueError(
                f"crop_size {self.crop_size} is larger than image_size {self.image_size}; "
                "the crop must fit inside the resized image"
            )
        return self

    @property
    def output_size(self) -> int:
        """The side of the model input (the crop size)."""
        return self.crop_size


def _side(value: Any, key: str, where: str) -> int:
    """Read `448`, `{"shortest_edge": 448}` or `{"height": 448, "width": 448}`."""
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        if "shortest_edge" in value:
            return int(value["shortest_edge"])
        if "height" in value and "width" in value and value["height"] == value["width"]:
            return int(value["height"])
    raise ValueError(
        f"{where}: unsupported {key} {value!r} (need an int, {{'shortest_edge': n}} or a square "
        "{'height': n, 'width': n})"
    )


class MPLUGOwl2ImageProcessor:
    """The original mPLUG-Owl2 scoring-path preprocessing, as fast pure-Pillow + numpy code.

    For each image: `load_image` (decode, EXIF orientation, first frame) -> `to_rgb` (documented
    mode rule) -> pad to a square with `int(255 * mean)` (pasted at floor offsets) -> shortest
    edge to S with Pillow bicubic -> centre crop -> `(float32(v / 255) - mean) / std` via a lookup
    table. The floats are bit-identical to the original `expand2square` + `CLIPImageProcessor`.

    Args:
        config: the settings; keyword arguments build one instead (`image_size=448`, ...).

    Example:
        >>> import numpy as np
        >>> processor = MPLUGOwl2ImageProcessor(image_size=28)
        >>> processor([np.zeros((10, 20, 3), dtype=np.uint8)]).shape
        torch.Size([1, 3, 28, 28])
    """

    def __init__(self, config: ImageProcessorConfig | None = None, **kwargs: Any) -> None:
        if config is not None and kwargs:
            raise TypeError("pass either config or keyword settings, not both")
        self.config = config if config is not None else ImageProcessorConfig(**kwargs)
        self.background = _images.background_color(self.config.image_mean)
        self._table = _images.normalization_table(
            self.config.image_mean, self.config.image_std, self.config.rescale_factor
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    @property
    def image_size(self) -> int:
        """The side S of the square model input."""
        return self.config.output_size

    # ---- persistence ----------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str]) -> MPLUGOwl2ImageProcessor:
        """Read `preprocessor_config.json`, or, when it is absent, the vision config.

        `preprocessor_config.json` is read the way transformers' CLIPImageProcessor reads it
        (`size` / `crop_size` as an int or a dict, `resample` as a Pillow code, `image_mean`,
        `image_std`, `rescale_factor`); other keys are ignored. Without it, `config.json`'s
        `visual_config.visual_model.image_size` gives S, with CLIP's mean and std.

        Args:
            path: a model or processor folder, or the json file itself.

        Returns:
            The image processor.

        Raises:
            FileNotFoundError: if neither file exists.
            ValueError: if a setting is invalid.
        """
        location = Path(path)
        preprocessor = location if location.is_file() else location / PREPROCESSOR_CONFIG_FILE
        if preprocessor.is_file() and preprocessor.name != MODEL_CONFIG_FILE:
            return cls(cls._config_from_preprocessor(_read_json(preprocessor), str(preprocessor)))
        model_config = location if location.is_file() else location / MODEL_CONFIG_FILE
        if model_config.is_file():
            data = _read_json(model_config)
            try:
                size = int(data["visual_config"]["visual_model"]["image_size"])
            except (KeyError, TypeError, ValueError) as error:
                raise ValueError(
                    f"{model_config} has no visual_config.visual_model.image_size to size images by"
                ) from error
            logger.info(
                "no %s in %s: image size %d from %s",
                PREPROCESSOR_CONFIG_FILE,
                location,
                size,
                MODEL_CONFIG_FILE,
            )
            return cls(image_size=size)
        raise FileNotFoundError(
            f"no {PREPROCESSOR_CONFIG_FILE} or {MODEL_CONFIG_FILE} in {location} to configure "
            "the image processor"
        )

    @staticmethod
    def _config_from_preprocessor(data: dict[str, Any], where: str) -> ImageProcessorConfig:
        settings: dict[str, Any] = {}
        if "size" in data:
            settings["image_size"] = _side(data["size"], "size", where)
        if data.get("do_center_crop", True) and "crop_size" in data:
            settings["crop_size"] = _side(data["crop_size"], "crop_size", where)
        for key in ("image_mean", "image_std"):
            if key in data:
                settings[key] = tuple(data[key])
        if "resample" in data:
            codes = {int(code): name for name, code in _RESAMPLE_NAMES.items()}
            resample = data["resample"]
            if isinstance(resample, int) and resample in codes:
                settings["resample"] = codes[resample]
            elif isinstance(resample, str):
                settings["resample"] = resample.lower()
            else:
                raise ValueError(f"{where}: unsupported resample {resample!r}")
        if "pad_to_square" in data:
            settings["pad_to_square"] = bool(data["pad_to_square"])
        if "rescale_factor" in data:
            settings["rescale_factor"] = float(data["rescale_factor"])
        for flag in ("do_resize", "do_rescale", "do_normalize"):
            if data.get(flag, True) is False:
                raise ValueError(f"{where}: {flag}=false is not supported by mPLUG-Owl2 models")
        try:
            return ImageProcessorConfig(**settings)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from error

    def to_dict(self) -> dict[str, Any]:
        """The settings as a CLIP-compatible `preprocessor_config.json` dictionary."""
        config = self.config
        return {
            "image_processor_type": "CLIPImageProcessor",
            "feature_extractor_type": "CLIPFeatureExtractor",
            "do_resize": True,
            "size": {"shortest_edge": config.image_size},
            "do_center_crop": True,
            "crop_size": {"height": config.output_size, "width": config.output_size},
            "resample": int(_RESAMPLE_NAMES[config.resample]),
            "do_rescale": True,
            "rescale_factor": config.rescale_factor,
            "do_normalize": True,
            "image_mean": list(config.image_mean),
            "image_std": list(config.image_std),
            "do_convert_rgb": True,
            "pad_to_square": config.pad_to_square,
        }

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write `preprocessor_config.json` into `directory` (created if needed).

        Returns:
            The written file.
        """
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / PREPROCESSOR_CONFIG_FILE
        target.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return target

    # ---- the pipeline -----------------------------------------------------------------------

    def to_rgb(self, image: Image.Image) -> Image.Image:
        """Convert any PIL mode to RGB, compositing transparency over the padding colour.

        See `artquant_model._images.to_rgb` for the full rule: alpha is blended over
        `int(255 * mean)`; 16-bit modes are scaled by 255/65535; float mode F must hold [0, 1] or
        [0, 255]; CMYK, YCbCr, LAB, HSV, P, 1 and L go through Pillow's `convert("RGB")`.
        """
        return _images.to_rgb(image, self.background)

    def preprocess_uint8(
        self, image: Any, *, max_pixels: int | None = DEFAULT_MAX_PIXELS
    ) -> np.ndarray:
        """One image up to the bytes after resize and crop (before rescale / normalise).

        Args:
            image: anything `load_image` accepts.
            max_pixels: decompression-bomb guard passed to `load_image`.

        Returns:
            A uint8 array of shape [S, S, 3].
        """
        rgb = self.to_rgb(load_image(image, max_pixels=max_pixels))
        config = self.config
        if config.pad_to_square:
            rgb = _images.expand_to_square(rgb, self.background)
        size = _images.shortest_edge_size(rgb.width, rgb.height, config.image_size)
        if size != rgb.size:
            rgb = rgb.resize(size, resample=_RESAMPLE_NAMES[config.resample], reducing_gap=None)
        rgb = _images.center_crop(rgb, config.output_size)
        return np.asarray(rgb, dtype=np.uint8)

    def normalize(self, pixels: np.ndarray) -> torch.Tensor:
        """Map [..., S, S, 3] uint8 pixels to the [..., 3, S, S] float32 model input."""
        array = np.asarray(pixels)
        if array.dtype != np.uint8 or array.shape[-1] != 3:
            raise ValueError(
                f"normalize expects uint8 pixels of shape [..., H, W, 3], got {array.dtype} "
                f"{tuple(array.shape)}"
            )
        flat = array.reshape(-1, *array.shape[-3:])
        out = np.stack([_images.apply_table(picture, self._table) for picture in flat])
        return torch.from_numpy(out.reshape(*array.shape[:-3], 3, *array.shape[-3:-1]))

    def __call__(
        self,
        images: Any,
        *,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        num_threads: int = 1,
    ) -> torch.Tensor:
        """Preprocess one image or a sequence of images.

        Args:
            images: one image or a list of images; each a path, bytes, numpy array or PIL image.
            max_pixels: decompression-bomb guard passed to `load_image`.
            num_threads: decode and resize this many images at once (Pillow releases the GIL
                while decoding and resampling); the output does not depend on it.

        Returns:
            A float32 tensor [N, 3, S, S].

        Raises:
            ImageLoadError: if an image cannot be read (the message names it).
            ValueError: for an empty list.
        """
        batch = list(images) if isinstance(images, list | tuple) else [images]
        if not batch:
            raise ValueError("no images given: pass one image or a non-empty list of images")
        if num_threads < 1:
            raise ValueError(f"num_threads must be at least 1, got {num_threads}")
        size = self.image_size
        out = torch.empty((len(batch), 3, size, size), dtype=torch.float32)
        target = out.numpy()

        def fill(index: int) -> None:
            pixels = self.preprocess_uint8(batch[index], max_pixels=max_pixels)
            for channel in range(3):
                np.take(self._table[channel], pixels[..., channel], out=target[index, channel])

        if num_threads == 1 or len(batch) == 1:
            for index in range(len(batch)):
                fill(index)
        else:
            with ThreadPoolExecutor(max_workers=min(num_threads, len(batch))) as pool:
                list(pool.map(fill, range(len(batch))))  # list() re-raises the first error
        return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read {path} as JSON: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


# --------------------------------------------------------------------------------------------
# Processor
# --------------------------------------------------------------------------------------------


class MPLUGOwl2Processor:
    """Tokenizer + image processor: prompt strings and images -> model inputs.

    Args:
        tokenizer: from `load_tokenizer`.
        image_processor: an `MPLUGOwl2ImageProcessor`.

    Example:
        >>> from artquant_model.testing import tiny_tokenizer
        >>> import numpy as np
        >>> processor = MPLUGOwl2Processor(tiny_tokenizer(), MPLUGOwl2ImageProcessor(image_size=28))
        >>> batch = processor(["USER: <|image|>hi", "USER: <|image|>a longer one"],
        ...                   images=[np.zeros((5, 5, 3), np.uint8)] * 2)
        >>> batch["input_ids"].shape[0], batch["images"].shape
        (2, torch.Size([2, 3, 28, 28]))
    """

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, image_processor: MPLUGOwl2ImageProcessor
    ) -> None:
        if tokenizer.bos_token_id is None or tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer needs a BOS and a pad token; use load_tokenizer")
        self.tokenizer = tokenizer
        self.image_processor = image_processor

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(tokenizer={type(self.tokenizer).__name__}"
            f"[{len(self.tokenizer)}], image_processor={self.image_processor!r})"
        )

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        tokenizer: PreTrainedTokenizerBase | str | os.PathLike[str] | None = None,
    ) -> MPLUGOwl2Processor:
        """Build from a folder with tokenizer files and `preprocessor_config.json` (or
        `config.json`, for the image size).

        Args:
            path: the folder.
            tokenizer: a tokenizer, or a path to load one from, when the folder has none (the
                ArtQuant LoRA release ships none; its tokenizer is the base model's).

        Returns:
            The processor.
        """
        if tokenizer is None:
            tokenizer = load_tokenizer(path)
        elif isinstance(tokenizer, str | os.PathLike):
            tokenizer = load_tokenizer(tokenizer)
        return cls(tokenizer, MPLUGOwl2ImageProcessor.from_pretrained(path))

    def save_pretrained(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Write the tokenizer files and `preprocessor_config.json` into `directory`.

        The SentencePiece `tokenizer.model` is copied too when the tokenizer was loaded from one.

        Returns:
            The written files.
        """
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        written = [Path(name) for name in self.tokenizer.save_pretrained(str(folder))]
        source = Path(getattr(self.tokenizer, "name_or_path", "") or "")
        model_file = source if source.suffix == ".model" else source / TOKENIZER_MODEL_FILE
        if str(source) and model_file.is_file():
            target = folder / TOKENIZER_MODEL_FILE
            if model_file.resolve() != target.resolve():
                target.write_bytes(model_file.read_bytes())
            written.append(target)
        written.append(self.image_processor.save_pretrained(folder))
        return written

    def tokenize(self, prompt: str) -> list[int]:
        """`tokenizer_image_token(prompt, self.tokenizer)`."""
        return tokenizer_image_token(prompt, self.tokenizer)

    def __call__(
        self,
        prompts: str | Sequence[str],
        images: Any = None,
        padding_side: Literal["left", "right"] = "left",
        *,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        num_threads: int = 1,
    ) -> BatchFeature:
        """Tokenize prompts (padding them to one length) and preprocess images.

        Args:
            prompts: one prompt or a list; each `<|image|>` takes the next image, in order.
            images: one image, a list of images, or None for text only.
            padding_side: "left" (for scoring and generation: the last position is every row's
                answer position) or "right".
            max_pixels: decompression-bomb guard passed to `load_image`.
            num_threads: images decoded and resized at once (see `MPLUGOwl2ImageProcessor`).

        Returns:
            `BatchFeature` with `input_ids` (int64 [B, L], -200 at images, pad id 0 in padding),
            `attention_mask` (int64 [B, L]) and `images` (float32 [N, 3, S, S] or None).

        Raises:
            ValueError: if the number of images differs from the number of `<|image|>` markers,
                or `padding_side` is unknown.
        """
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        texts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not texts:
            raise ValueError("no prompts given")
        image_list = (
            []
            if images is None
            else (list(images) if isinstance(images, list | tuple) else [images])
        )
        markers = sum(text.count(DEFAULT_IMAGE_TOKEN) for text in texts)
        if markers != len(image_list):
            raise ValueError(
                f"the prompts hold {markers} {DEFAULT_IMAGE_TOKEN} marker(s) but "
                f"{len(image_list)} image(s) were given; they must match one to one"
            )
        rows = [self.tokenize(text) for text in texts]
        length = max(len(row) for row in rows)
        pad = int(self.tokenizer.pad_token_id)  # type: ignore[arg-type]
        input_ids = torch.full((len(rows), length), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        for index, row in enumerate(rows):
            span = (
                slice(length - len(row), length) if padding_side == "left" else slice(0, len(row))
            )
            input_ids[index, span] = torch.tensor(row, dtype=torch.long)
            attention_mask[index, span] = 1
        pixel_values = (
            self.image_processor(image_list, max_pixels=max_pixels, num_threads=num_threads)
            if image_list
            else None
        )
        return BatchFeature(
            {"input_ids": input_ids, "attention_mask": attention_mask, "images": pixel_values}
        )

    def batch_decode(self, sequences: Any, **kwargs: Any) -> list[str]:
        """Decode generated ids, skipping image markers (-200) and, by default, special tokens."""
        kwargs.setdefault("skip_special_tokens", True)
        rows = sequences.tolist() if isinstance(sequences, torch.Tensor) else list(sequences)
        cleaned = [[int(i) for i in row if int(i) >= 0] for row in rows]
        return list(self.tokenizer.batch_decode(cleaned, **kwargs))


__all__ = [
    "ARTQUANT_SCORE_PROMPT",
    "DEFAULT_IMAGE_TOKEN",
    "DEFAULT_MAX_PIXELS",
    "DESCRIBE_PROMPT",
    "IMAGE_TOKEN_INDEX",
    "QALIGN_AESTHETICS_PROMPT",
    "QALIGN_SCORE_PROMPT",
    "ImageLoadError",
    "ImageProcessorConfig",
    "MPLUGOwl2ImageProcessor",
    "MPLUGOwl2Processor",
    "load_image",
    "load_tokenizer",
    "tokenizer_image_token",
]
