"""The ModelZoo: which checkpoints exist (a TOML manifest) and where their weights live.

Where things are found, in this order:

1. ``$ARTQUANT_MODELZOO`` if set: a folder holding ``manifest.toml`` (optional: the bundled copy
   is used when it has none) and the downloaded weights, one sub-folder per model name.
2. The repository's ``ModelZoo/`` folder, when the SDK runs from a checkout (an editable install,
   as ``uv sync`` makes): found by walking up from this file.
3. Otherwise the manifest copy shipped inside the package (``artquant_sdk/_data/manifest.toml``,
   byte-identical to ``ModelZoo/manifest.toml``) and the Hugging Face cache for weights.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from artquant_sdk._errors import ManifestError, ModelNotFoundError
from artquant_sdk._hub import fetch_snapshot

__all__ = [
    "LEVEL_PRESETS",
    "Manifest",
    "ModelCard",
    "ReportedResult",
    "ResolvedWeights",
    "get_model_card",
    "list_models",
    "load_manifest",
    "manifest_path",
    "modelzoo_dir",
    "resolve_weights",
]

ENV_MODELZOO = "ARTQUANT_MODELZOO"
LEVEL_PRESETS = ("artquant", "qalign", "onealign")
_BUNDLED_MANIFEST = Path(__file__).resolve().parent / "_data" / "manifest.toml"
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_IMAGE_TOKEN = "<|image|>"


class ReportedResult(BaseModel):
    """One result a model's authors report, with where it comes from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: str
    split: str | None = None
    metric: str
    value: float
    source: str = Field(min_length=1)


class ModelCard(BaseModel):
    """One ModelZoo entry (a ``[models.<name>]`` table of the manifest).

    Example:
        >>> card = get_model_card("artquant-apdd")
        >>> card.hub_repo, card.scale
        ('Liuuuu123/ArtQuant', (1.0, 10.0))
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str
    hub_repo: str
    revision: str = "main"
    format: Literal["full", "lora"]
    base: str | None = None
    tokenizer_from: str | None = None
    levels: Literal["artquant", "qalign", "onealign"]
    scale: tuple[float, float]
    prompt: str | None = None
    licence: str
    paper: str | None = None
    code: str | None = None
    allow_patterns: tuple[str, ...] = ()
    reported: tuple[ReportedResult, ...] = ()
    reported_note: str | None = None
    verified: bool = True

    @model_validator(mode="after")
    def _check(self) -> ModelCard:
        if not _HUB_ID.match(self.hub_repo):
            raise ValueError(f"hub_repo {self.hub_repo!r} is not an 'owner/name' repository id")
        if self.format == "lora" and self.base is None:
            raise ValueError(f"model {self.name!r} has format 'lora' but no 'base'")
        if self.format == "full" and self.base is not None:
            raise ValueError(
                f"model {self.name!r} has format 'full' and a 'base'; only lora has one"
            )
        if not self.scale[0] < self.scale[1]:
            raise ValueError(f"scale {self.scale} of {self.name!r} must be [min, max], min < max")
        if self.prompt is not None and self.prompt.count(_IMAGE_TOKEN) != 1:
            raise ValueError(f"prompt of {self.name!r} must hold {_IMAGE_TOKEN!r} exactly once")
        if not self.reported and not self.reported_note:
            raise ValueError(f"model {self.name!r} reports no results; say why in 'reported_note'")
        return self


class Manifest(BaseModel):
    """The whole ModelZoo manifest: ``schema_version`` and the model cards by name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1]
    models: dict[str, ModelCard]

    @model_validator(mode="after")
    def _check_links(self) -> Manifest:
        for name, card in self.models.items():
            if card.name != name:
                raise ValueError(f"model table {name!r} holds a card named {card.name!r}")
            for field in ("base", "tokenizer_from"):
                target = getattr(card, field)
                if target is None:
                    continue
                if target not in self.models:
                    raise ValueError(
                        f"{name}.{field} = {target!r} is not a model of the manifest "
                        f"(known: {sorted(self.models)})"
                    )
                if field == "base" and self.models[target].format != "full":
                    raise ValueError(f"{name}.base = {target!r} must be a 'full' checkpoint")
        return self


def modelzoo_dir() -> Path | None:
    """The ModelZoo folder: ``$ARTQUANT_MODELZOO``, else the checkout's ``ModelZoo/``, else None.

    Returns:
        The folder where downloaded weights go (``<dir>/<name>/``), or None when the SDK is
        installed from a wheel and no override is set (weights then go to the Hugging Face cache).
    """
    env = os.environ.get(ENV_MODELZOO)
    if env:
        return Path(env).expanduser()
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "ModelZoo"
        if (candidate / "manifest.toml").is_file() and (parent / "pyproject.toml").is_file():
            return candidate
    return None


def manifest_path() -> Path:
    """The manifest file in use: the ModelZoo folder's ``manifest.toml`` or the bundled copy."""
    zoo = modelzoo_dir()
    if zoo is not None and (zoo / "manifest.toml").is_file():
        return zoo / "manifest.toml"
    return _BUNDLED_MANIFEST


def load_manifest(path: str | os.PathLike[str] | None = None) -> Manifest:
    """Read and validate a ModelZoo manifest.

    Args:
        path: A manifest file; default :func:`manifest_path`.

    Returns:
        The validated manifest.

    Raises:
        ManifestError: The file is missing, not TOML, or breaks the schema (the message says
            which entry and field).
    """
    file = Path(path) if path is not None else manifest_path()
    return _load_manifest_cached(file.resolve())


@lru_cache(maxsize=8)
def _load_manifest_cached(file: Path) -> Manifest:
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ManifestError(f"ModelZoo manifest {file} does not exist") from error
    except tomllib.TOMLDecodeError as error:
        raise ManifestError(f"ModelZoo manifest {file} is not valid TOML: {error}") from error
    models = raw.get("models")
    if isinstance(models, dict):
        raw["models"] = {
            name: {"name": name, **entry} if isinstance(entry, dict) else entry
            for name, entry in models.items()
        }
    try:
        return Manifest.model_validate(raw)
    except ValidationError as error:
        raise ManifestError(f"ModelZoo manifest {file} is invalid:\n{error}") from error


def list_models() -> list[ModelCard]:
    """Every model of the manifest in use, in manifest order.

    Example:
        >>> [card.name for card in list_models()][:3]
        ['artquant-apdd', 'one-align', 'mplug-owl2-llama2-7b']
    """
    return list(load_manifest().models.values())


def get_model_card(name: str) -> ModelCard:
    """The manifest entry called ``name``.

    Args:
        name: A ModelZoo name (``artquant models`` lists them).

    Returns:
        The entry's :class:`ModelCard`.

    Raises:
        ModelNotFoundError: No such entry; the message lists the known names.

    Example:
        >>> get_model_card("one-align").levels
        'onealign'
    """
    models = load_manifest().models
    if name not in models:
        raise ModelNotFoundError(f"{name!r} is not a ModelZoo model; known: {sorted(models)}")
    return models[name]


@dataclass(frozen=True)
class ResolvedWeights:
    """Where a model's files are on this machine.

    Attributes:
        path: The folder holding ``config.json`` and the weights.
        card: The ModelZoo entry when the name was a ModelZoo name, else None.
        source: ``"local"`` (a folder given by path), ``"modelzoo"`` (already in the ModelZoo
            folder), ``"hub"`` (downloaded or found in the hub cache).
    """

    path: Path
    card: ModelCard | None
    source: Literal["local", "modelzoo", "hub"]


_INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_SINGLE_FILES = ("model.safetensors", "pytorch_model.bin")
_ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")


def _has_weights(folder: Path) -> bool:
    """Whether ``folder`` holds a complete checkpoint download.

    ``config.json`` arrives first, so it alone does not count: an interrupted download (a shard
    of the index or the adapter weights missing) is fetched again, where ``snapshot_download``
    resumes it, instead of failing at load time.
    """
    if not (folder / "config.json").is_file():
        return False
    if (folder / "adapter_config.json").is_file():
        return any((folder / name).is_file() for name in _ADAPTER_FILES)
    for index_name in _INDEX_FILES:
        if (folder / index_name).is_file():
            try:
                weight_map = json.loads((folder / index_name).read_text(encoding="utf-8"))
                shards = set(weight_map["weight_map"].values())
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                return False
            return all(isinstance(s, str) and (folder / s).is_file() for s in shards)
    return any((folder / name).is_file() for name in _SINGLE_FILES)


def resolve_weights(
    name_or_path: str | os.PathLike[str],
    *,
    revision: str | None = None,
    local_files_only: bool = False,
) -> ResolvedWeights:
    """Find (and, only when needed and allowed, download) a model's folder.

    Order: an existing local folder; a ModelZoo name (its ``ModelZoo/<name>/`` folder, else the
    hub cache, else a download into ``ModelZoo/<name>/`` or the cache); an ``owner/name`` hub id
    (the cache, else a download). Nothing is downloaded for a local folder or when
    ``local_files_only`` is set.

    Args:
        name_or_path: A folder, a ModelZoo name (see :func:`list_models`) or a hub id.
        revision: Hub branch, tag or commit; default the manifest's (or ``main``).
        local_files_only: Never touch the network.

    Returns:
        The resolved folder, with the ModelZoo card when there is one.

    Raises:
        ModelNotFoundError: The name is none of the three.
        ModelUnavailableError: A download is needed and impossible; says what to fetch and where.
    """
    text = os.fspath(name_or_path)
    candidate = Path(text).expanduser()
    if candidate.is_dir():
        return ResolvedWeights(candidate, None, "local")
    if candidate.exists():
        raise ModelNotFoundError(
            f"{text!r} is a file; pass the checkpoint folder that holds config.json"
        )
    models = load_manifest().models
    if text in models:
        card = models[text]
        zoo = modelzoo_dir()
        target = zoo / card.name if zoo is not None else None
        if target is not None and _has_weights(target):
            return ResolvedWeights(target, card, "modelzoo")
        path = fetch_snapshot(
            card.hub_repo,
            revision=revision or card.revision,
            local_dir=target,
            local_files_only=local_files_only,
            allow_patterns=list(card.allow_patterns) or None,
            label=card.name,
            hint=(
                f"It is applied over its base {card.base!r}, needed too (`artquant download "
                f"{card.name}` fetches both)."
                if card.base
                else ""
            ),
        )
        return ResolvedWeights(path, card, "hub")
    if _HUB_ID.match(text):
        path = fetch_snapshot(
            text,
            revision=revision,
            local_dir=None,
            local_files_only=local_files_only,
            allow_patterns=None,
            label=text,
        )
        return ResolvedWeights(path, None, "hub")
    raise ModelNotFoundError(
        f"{text!r} is not a local folder, not a ModelZoo name (known: {sorted(models)}) and not "
        "an 'owner/name' hub repository id"
    )
