"""ModelZoo manifest, its discovery, and name resolution (local, ModelZoo, hub, offline)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import huggingface_hub
import pytest
from huggingface_hub.errors import LocalEntryNotFoundError

from artquant_sdk import (
    ManifestError,
    ModelNotFoundError,
    ModelUnavailableError,
    get_model_card,
    list_models,
    load_manifest,
    manifest_path,
    modelzoo_dir,
    resolve_weights,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
REPO_MANIFEST = REPO_ROOT / "ModelZoo" / "manifest.toml"
BUNDLED = REPO_ROOT / "packages/artquant-sdk/src/artquant_sdk/_data/manifest.toml"


def test_bundled_manifest_equals_modelzoo_manifest() -> None:
    assert REPO_MANIFEST.is_file(), "the repository's ModelZoo/manifest.toml is missing"
    assert BUNDLED.read_bytes() == REPO_MANIFEST.read_bytes(), (
        "artquant_sdk/_data/manifest.toml must be a copy of ModelZoo/manifest.toml: "
        "cp ModelZoo/manifest.toml packages/artquant-sdk/src/artquant_sdk/_data/"
    )


def test_checkout_modelzoo_is_found() -> None:
    assert modelzoo_dir() == REPO_ROOT / "ModelZoo"
    assert manifest_path() == REPO_MANIFEST


def test_env_override_without_manifest_uses_bundled_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARTQUANT_MODELZOO", str(tmp_path))
    assert modelzoo_dir() == tmp_path
    assert manifest_path() == BUNDLED


def test_known_models_and_their_facts() -> None:
    cards = {c.name: c for c in list_models()}
    assert list(cards)[:3] == ["artquant-apdd", "one-align", "mplug-owl2-llama2-7b"]
    # then the zero-shot bases of the generic backbone, unverified hub ids
    bases = list(cards)[3:]
    assert [n for n in bases if not n.startswith("qwen")] == ["gemma-3-4b-it", "internvl3-1b"]
    assert cards["gemma-3-4b-it"].hub_repo == "google/gemma-3-4b-it"
    assert cards["internvl3-1b"].hub_repo == "OpenGVLab/InternVL3-1B-hf"
    assert not any(cards[n].verified for n in bases)
    apdd = cards["artquant-apdd"]
    assert apdd.hub_repo == "Liuuuu123/ArtQuant"
    assert apdd.format == "lora"
    assert apdd.base == "mplug-owl2-llama2-7b"
    assert cards["mplug-owl2-llama2-7b"].hub_repo == "MAGAer13/mplug-owl2-llama2-7b"
    assert cards["one-align"].hub_repo == "q-future/one-align"
    assert apdd.scale == (1.0, 10.0)
    assert cards["one-align"].scale == (1.0, 5.0)
    # the exact inference prompt of ArtQuant's iqa_eval.py (reference-artquant.md §2.3)
    assert apdd.prompt == (
        "USER: How would you rate the quality of this painting?\n<|image|> ASSISTANT: "
        "The quality of the painting is"
    )
    for card in cards.values():
        # nothing reported may appear without a source; none could be sourced so far
        assert card.reported or card.reported_note
        assert all(r.source for r in card.reported)


def test_manifest_prompts_match_the_fixture_tokenizer_reference(shared: Path) -> None:
    ref = json.loads(
        (shared / "fixtures/mplug_owl2_tiny_vocab32k/tokenizer_reference.json").read_text()
    )
    prompts = {p["prompt"] for p in ref["prompts"].values() if isinstance(p, dict)}
    for card in list_models():
        if card.prompt is not None:  # mPLUG-Owl2 entries; chat-template bases have none
            assert card.prompt in prompts, card.name


def _write_manifest(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _valid_entry(**changes: Any) -> str:
    data = tomllib.loads(REPO_MANIFEST.read_text(encoding="utf-8"))
    entry = dict(data["models"]["one-align"])
    entry.update(changes)
    lines = ["schema_version = 1", "", "[models.one-align]"]
    for key, value in entry.items():
        lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format": "lora"}, "no 'base'"),
        ({"scale": [5.0, 1.0]}, "min < max"),
        ({"prompt": "no image token"}, "exactly once"),
        ({"reported_note": ""}, "reported_note"),
        ({"hub_repo": "not a repo id"}, "owner/name"),
        ({"levels": "stars"}, "levels"),
        ({"tokenizer_from": "nowhere"}, "not a model of the manifest"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_manifests_are_rejected_with_the_reason(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    path = _write_manifest(tmp_path / "manifest.toml", _valid_entry(**changes))
    with pytest.raises(ManifestError, match=message):
        load_manifest(path)


def test_manifest_not_toml_or_missing(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not valid TOML"):
        load_manifest(_write_manifest(tmp_path / "bad.toml", "models = [\n"))
    with pytest.raises(ManifestError, match="does not exist"):
        load_manifest(tmp_path / "absent.toml")


def test_valid_custom_manifest_round_trip(tmp_path: Path) -> None:
    manifest = load_manifest(_write_manifest(tmp_path / "m.toml", _valid_entry()))
    assert list(manifest.models) == ["one-align"]


def test_get_model_card_unknown_name_lists_known() -> None:
    assert get_model_card("one-align").levels == "onealign"
    with pytest.raises(ModelNotFoundError, match="artquant-apdd"):
        get_model_card("artquant-xl")


# ---------------------------------------------------------------- resolution


_INDEX = json.dumps(
    {
        "weight_map": {
            "a": "model-00001-of-00002.safetensors",
            "b": "model-00002-of-00002.safetensors",
        }
    }
)


def _fake_checkpoint(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    return folder


def test_local_folder_wins_and_never_downloads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> str:
        raise AssertionError("a local folder must not touch the hub")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", forbidden)
    folder = _fake_checkpoint(tmp_path / "ckpt")
    resolved = resolve_weights(folder)
    assert (resolved.path, resolved.card, resolved.source) == (folder, None, "local")


def test_a_file_is_not_a_checkpoint(tmp_path: Path) -> None:
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match="is a file"):
        resolve_weights(file)


def test_unknown_name_explains_the_three_options() -> None:
    with pytest.raises(ModelNotFoundError, match="not a local folder, not a ModelZoo name"):
        resolve_weights("no such model")


def test_modelzoo_folder_is_used_when_present(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARTQUANT_MODELZOO", str(tmp_path))
    folder = _fake_checkpoint(tmp_path / "one-align")
    resolved = resolve_weights("one-align", local_files_only=True)
    assert resolved.path == folder
    assert resolved.source == "modelzoo"
    assert resolved.card is not None
    assert resolved.card.hub_repo == "q-future/one-align"


@pytest.mark.parametrize(
    ("files", "complete"),
    [
        ({"config.json": "{}"}, False),
        ({"config.json": "{}", "model.safetensors": ""}, True),
        ({"config.json": "{}", "pytorch_model.bin": ""}, True),
        ({"config.json": "{}", "adapter_config.json": "{}"}, False),
        ({"config.json": "{}", "adapter_config.json": "{}", "adapter_model.bin": ""}, True),
        (
            {
                "config.json": "{}",
                "model.safetensors.index.json": _INDEX,
                "model-00001-of-00002.safetensors": "",
            },
            False,
        ),
        (
            {
                "config.json": "{}",
                "model.safetensors.index.json": _INDEX,
                "model-00001-of-00002.safetensors": "",
                "model-00002-of-00002.safetensors": "",
            },
            True,
        ),
        ({"config.json": "{}", "model.safetensors.index.json": "not json"}, False),
    ],
)
def test_interrupted_download_in_modelzoo_is_fetched_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str], complete: bool
) -> None:
    monkeypatch.setenv("ARTQUANT_MODELZOO", str(tmp_path))
    folder = tmp_path / "one-align"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    if complete:
        assert resolve_weights("one-align", local_files_only=True).source == "modelzoo"
    else:
        with pytest.raises(ModelUnavailableError, match="artquant download one-align"):
            resolve_weights("one-align", local_files_only=True)


def test_offline_error_says_what_to_download_and_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARTQUANT_MODELZOO", str(tmp_path))
    with pytest.raises(ModelUnavailableError) as info:
        resolve_weights("artquant-apdd", local_files_only=True)
    message = str(info.value)
    assert "local_files_only" in message
    assert "https://huggingface.co/Liuuuu123/ArtQuant" in message
    assert str(tmp_path / "artquant-apdd") in message
    assert "artquant download artquant-apdd" in message
    assert "base 'mplug-owl2-llama2-7b', needed too" in message


def test_hub_id_offline_error_for_a_hub_id(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match=r"someone/some-model.*pass that folder"):
        resolve_weights("someone/some-model", local_files_only=True)


def test_download_attempt_in_offline_mode_becomes_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # local_files_only is False, but the hub library is in offline mode (HF_HUB_OFFLINE=1,
    # set by the autouse fixture): the real snapshot_download refuses, and we explain.
    monkeypatch.setenv("ARTQUANT_MODELZOO", str(tmp_path))
    with pytest.raises(ModelUnavailableError, match=r"downloading it failed.*q-future/one-align"):
        resolve_weights("one-align")


class _FakeHub:
    """Stands in for huggingface_hub.snapshot_download: empty cache, downloads a config."""

    def __init__(self, cached: Path | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.cached = cached

    def __call__(self, repo_id: str, **kwargs: Any) -> str:
        self.calls.append({"repo_id": repo_id, **kwargs})
        if kwargs.get("local_files_only"):
            if self.cached is not None:
                return str(self.cached)
            raise LocalEntryNotFoundError("not cached")
        target = kwargs.get("local_dir") or (Path(kwargs.get("cache_dir") or ".") / "snap")
        _fake_checkpoint(Path(target))
        return str(target)


def test_modelzoo_name_downloads_into_modelzoo_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARTQUANT_MODELZOO", str(tmp_path))
    hub = _FakeHub()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub)
    resolved = resolve_weights("artquant-apdd", revision="v1")
    assert resolved.path == tmp_path / "artquant-apdd"
    assert resolved.source == "hub"
    assert [c["local_files_only"] for c in hub.calls if "local_files_only" in c] == [True]
    download = hub.calls[-1]
    assert download["repo_id"] == "Liuuuu123/ArtQuant"
    assert download["revision"] == "v1"
    assert download["local_dir"] == tmp_path / "artquant-apdd"
    assert download["allow_patterns"] == list(get_model_card("artquant-apdd").allow_patterns)
    # second time: the ModelZoo folder is used, no hub call at all
    again = resolve_weights("artquant-apdd", local_files_only=True)
    assert again.source == "modelzoo"
    assert len(hub.calls) == 2


def test_hub_cache_is_used_before_downloading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARTQUANT_MODELZOO", str(tmp_path / "zoo"))
    cached = _fake_checkpoint(tmp_path / "cache-snapshot")
    hub = _FakeHub(cached=cached)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub)
    resolved = resolve_weights("one-align", local_files_only=True)
    assert resolved.path == cached
    assert len(hub.calls) == 1
    assert hub.calls[0]["local_files_only"] is True


def test_installed_from_a_wheel_uses_the_bundled_manifest_and_the_hub_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import artquant_sdk._zoo as zoo

    site = tmp_path / "site-packages" / "artquant_sdk"
    site.mkdir(parents=True)
    monkeypatch.setattr(zoo, "__file__", str(site / "_zoo.py"))
    monkeypatch.chdir(tmp_path)  # the stand-in hub writes its snapshot under the working dir
    assert modelzoo_dir() is None
    assert manifest_path() == BUNDLED
    hub = _FakeHub()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub)
    resolve_weights("one-align")
    assert hub.calls[-1]["local_dir"] is None  # downloads go to the hub cache


def test_every_card_agrees_with_its_level_preset() -> None:
    from artquant_sdk._api import _card_levels, _card_spec

    for card in list_models():
        if card.prompt is None:  # a chat-template base: the preset's question and stem
            chat = _card_spec(card)
            assert (chat.name, tuple(chat.scale)) == (card.levels, card.scale)
            continue
        spec = _card_levels(card)
        assert spec.name == card.levels
        assert tuple(spec.scale) == card.scale
        assert spec.prompt == card.prompt


def test_preset_names_kept_for_a_light_import_equal_artquant_models() -> None:
    # The SDK names the presets itself so that `artquant models` need not import transformers.
    import typing

    import artquant_model
    from artquant_sdk._zoo import LEVEL_PRESETS, ModelCard

    assert tuple(artquant_model.LEVEL_PRESETS) == LEVEL_PRESETS
    assert typing.get_args(ModelCard.model_fields["levels"].annotation) == LEVEL_PRESETS


def test_a_card_contradicting_its_preset_is_refused() -> None:
    from artquant_sdk._api import _card_levels

    card = get_model_card("one-align").model_copy(update={"scale": (0.0, 1.0)})
    with pytest.raises(ManifestError, match="fix the manifest"):
        _card_levels(card)
