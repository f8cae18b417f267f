"""``--base`` takes a folder or the name of a ModelZoo model that was downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from artquant_train import TrainError
from artquant_train.loop import resolve_base


def test_a_folder_is_taken_as_it_is(tmp_path: Path) -> None:
    assert resolve_base(str(tmp_path), environ={}) == tmp_path


def test_a_modelzoo_name_resolves_to_its_downloaded_folder(tmp_path: Path) -> None:
    (tmp_path / "mplug-owl2-llama2-7b").mkdir()
    found = resolve_base("mplug-owl2-llama2-7b", environ={"ARTQUANT_MODELZOO": str(tmp_path)})
    assert found == tmp_path / "mplug-owl2-llama2-7b"


def test_the_checkout_modelzoo_is_found_from_a_subfolder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ModelZoo" / "one-align").mkdir(parents=True)
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path / "runs")
    assert resolve_base("one-align", environ={}) == tmp_path / "ModelZoo" / "one-align"


def test_an_unknown_name_says_how_to_download_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TrainError, match=r"artquant download mplug-owl2-llama2-7b") as caught:
        resolve_base("mplug-owl2-llama2-7b", environ={"ARTQUANT_MODELZOO": str(tmp_path / "z")})
    assert "is not a checkpoint folder" in str(caught.value)
    assert str(tmp_path / "z" / "mplug-owl2-llama2-7b") in str(caught.value)


def test_a_missing_path_is_not_looked_up_as_a_name(tmp_path: Path) -> None:
    with pytest.raises(TrainError, match=r"`artquant download NAME`"):
        resolve_base(str(tmp_path / "nowhere"), environ={})


def test_a_hub_id_resolves_to_its_snapshot_in_the_local_cache_only(tmp_path: Path) -> None:
    # the Hugging Face cache layout: models--ORG--NAME/refs/main -> snapshots/<commit>/
    repo = tmp_path / "hub" / "models--Qwen--Qwen2.5-VL-3B-Instruct"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abc")
    snapshot = repo / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    env = {"HF_HUB_CACHE": str(tmp_path / "hub")}
    assert resolve_base("Qwen/Qwen2.5-VL-3B-Instruct", environ=env) == snapshot
    with pytest.raises(TrainError, match=r"hf download ORG/NAME"):
        resolve_base("Qwen/Qwen3-VL-2B-Instruct", environ=env)  # not cached: no download
