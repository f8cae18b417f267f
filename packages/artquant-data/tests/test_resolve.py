"""Image resolution: missing-file report, path escapes, nothing dropped silently."""

from __future__ import annotations

import pytest

import artquant_data as aq


def _records(names):
    return [aq.ArtRecord(image=n, score=5.0) for n in names]


def test_all_found_and_order_kept(tmp_path):
    (tmp_path / "sub").mkdir()
    for n in ("a.jpg", "sub/b.png"):
        (tmp_path / n).write_bytes(b"x")
    res = aq.resolve_images(_records(["sub/b.png", "a.jpg"]), tmp_path)
    assert [r.image for r, _ in res.found] == ["sub/b.png", "a.jpg"]
    assert res.found[0][1] == (tmp_path / "sub" / "b.png").resolve()
    assert res.missing == []
    assert res.total == 2
    assert res.report().startswith("all 2 images found")


def test_missing_report_lists_count_and_examples(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    names = ["a.jpg"] + [f"m{i}.jpg" for i in range(7)]
    with pytest.raises(aq.MissingImagesError) as info:
        aq.resolve_images(_records(names), tmp_path)
    message = str(info.value)
    assert "7 of 8 images missing under" in message
    assert "'m0.jpg', 'm1.jpg', 'm2.jpg', 'm3.jpg', 'm4.jpg' and 2 more" in message
    assert info.value.missing == [f"m{i}.jpg" for i in range(7)]
    res = aq.resolve_images(_records(names), tmp_path, on_missing="report")
    assert len(res.found) + len(res.missing) == 8
    with pytest.raises(aq.MissingImagesError):
        res.raise_for_missing()


def test_alternative_extensions(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    res = aq.resolve_images(_records(["a.jpg"]), tmp_path, alternative_extensions=["jpeg", ".png"])
    assert res.found[0][1].name == "a.png"


def test_escapes_are_rejected(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.jpg").write_bytes(b"x")
    (root / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    with pytest.raises(aq.ImagePathError, match="resolves outside the image root"):
        aq.resolve_images(_records(["link.jpg"]), root)

    class Sample:
        image = "../secret.jpg"

    with pytest.raises(aq.ImagePathError, match="escapes the image root"):
        aq.resolve_images([Sample()], root)


def test_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        aq.resolve_images([], tmp_path / "nope")
    with pytest.raises(ValueError, match="on_missing"):
        aq.resolve_images([], tmp_path, on_missing="skip")
