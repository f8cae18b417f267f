"""Image preprocessing: fixture pixels bit for bit, CLIPImageProcessor parity, modes, decoding."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.numpy import load_file

from artquant_model._images import (
    apply_exif_orientation,
    background_color,
    expand_to_square,
    normalization_table,
    to_rgb,
)
from artquant_model.backbones.mplug_owl2.processing_mplug_owl2 import (
    ImageLoadError,
    ImageProcessorConfig,
    MPLUGOwl2ImageProcessor,
    load_image,
)

BG = (122, 116, 104)
QALIGN_PREPROCESSOR_CONFIG = {
    "crop_size": 448,
    "do_center_crop": True,
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor",
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "size": 448,
}


@pytest.fixture(scope="module")
def processor() -> MPLUGOwl2ImageProcessor:
    return MPLUGOwl2ImageProcessor()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _random_image(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    channels = {"RGB": 3, "RGBA": 4, "L": 1, "LA": 2, "CMYK": 4}[mode]
    array = np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)
    if channels == 1:
        return Image.fromarray(array[..., 0])
    return Image.frombytes(mode, (width, height), array.tobytes())


# ---- the fixtures ----------------------------------------------------------------------------


def test_tiny_fixture_real_picture_bit_exact(processor, tiny_fixture_dir: Path) -> None:
    reference = load_file(str(tiny_fixture_dir / "inputs.safetensors"))["image_real_pixel_values"]
    pixels = processor(tiny_fixture_dir / "image_src_320x200.png")
    assert pixels.dtype == torch.float32
    assert torch.equal(pixels, torch.from_numpy(reference))
    source = to_rgb(Image.open(tiny_fixture_dir / "image_src_320x200.png"), BG)
    expanded = Image.open(tiny_fixture_dir / "image_src_expanded_320x320.png").convert("RGB")
    assert np.array_equal(np.asarray(expand_to_square(source, BG)), np.asarray(expanded))


def test_vocab32k_pictures_bit_exact(processor, vocab32k_fixture_dir: Path) -> None:
    inputs = load_file(str(vocab32k_fixture_dir / "inputs.safetensors"))
    meta = json.loads((vocab32k_fixture_dir / "reference_meta.json").read_text())
    record = meta["image_preprocessing"]
    assert background_color(record["processor_config"]["image_mean"]) == BG
    assert tuple(record["expand2square_background_rgb"]) == BG
    assert np.array_equal(processor._table, inputs["pixel_value_lut"])
    paths = [vocab32k_fixture_dir / picture["source"] for picture in record["pictures"]]
    batch = processor(paths)
    assert batch.shape == (2, 3, 448, 448)
    for index, (path, picture) in enumerate(zip(paths, record["pictures"], strict=True)):
        rgb = to_rgb(load_image(path), BG)
        assert list(rgb.size) == picture["size_wh"]
        square = expand_to_square(rgb, BG)
        assert _sha(np.asarray(square).tobytes()) == picture["expanded_rgb_bytes_sha256"]
        uint8 = processor.preprocess_uint8(path)
        assert np.array_equal(uint8, inputs["pixel_values_uint8_hwc"][index])
        assert _sha(uint8.tobytes()) == picture["uint8_448_sha256"]
        lut = inputs["pixel_value_lut"]
        from_lut = np.stack(
            [lut[c][inputs["pixel_values_uint8_hwc"][index][..., c]] for c in range(3)]
        )
        assert np.array_equal(batch[index].numpy(), from_lut)
        floats = batch[index].numpy().astype("<f4").tobytes()
        assert (
            _sha(floats) == record["pixel_values_float32_sha256_little_endian_per_picture"][index]
        )


def test_table_formula() -> None:
    table = normalization_table((0.5, 0.25, 0.0), (0.5, 0.25, 1.0))
    assert table.shape == (3, 256)
    assert table.dtype == np.float32
    byte = np.float32(200 * (1 / 255))
    assert table[0, 200] == (byte - np.float32(0.5)) / np.float32(0.5)
    assert table[2, 255] == np.float32(1.0)
    assert table[1, 0] == np.float32(-1.0)


# ---- parity with transformers' CLIPImageProcessor ---------------------------------------------


def _clip_processor(**settings):
    clip = pytest.importorskip("transformers.models.clip.image_processing_pil_clip")
    defaults = {
        "size": {"shortest_edge": 448},
        "crop_size": {"height": 448, "width": 448},
        "resample": 3,
        "image_mean": QALIGN_PREPROCESSOR_CONFIG["image_mean"],
        "image_std": QALIGN_PREPROCESSOR_CONFIG["image_std"],
    }
    return clip.CLIPImageProcessorPil(**{**defaults, **settings})


@pytest.mark.parametrize(("width", "height"), [(333, 250), (180, 260), (600, 599), (448, 448)])
def test_matches_clip_image_processor_after_padding(processor, width: int, height: int) -> None:
    image = _random_image(width, height, seed=width)
    expected = _clip_processor()(expand_to_square(image, BG), return_tensors="pt")["pixel_values"]
    assert torch.equal(processor(image), expected)


def test_matches_clip_image_processor_resize_and_crop_without_padding() -> None:
    image = _random_image(517, 301, seed=3)
    ours = MPLUGOwl2ImageProcessor(pad_to_square=False, image_size=40, crop_size=32)
    clip = _clip_processor(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32})
    assert torch.equal(ours(image), clip(image, return_tensors="pt")["pixel_values"])


def test_padding_offsets_floor() -> None:
    wide = Image.new("RGB", (5, 2), (255, 255, 255))
    square = np.asarray(expand_to_square(wide, BG))
    assert square.shape == (5, 5, 3)
    # (5 - 2) // 2 = 1 row of padding above, 2 below
    assert (square[0] == BG).all()
    assert (square[1:3] == 255).all()
    assert (square[3:] == BG).all()
    tall = np.asarray(expand_to_square(Image.new("RGB", (2, 5), (0, 0, 0)), BG))
    assert (tall[:, 0] == BG).all()
    assert (tall[:, 1:3] == 0).all()
    assert (tall[:, 3:] == BG).all()


# ---- mode conversion rules --------------------------------------------------------------------


def test_rgb_unchanged_and_grey_replicated() -> None:
    rgb = _random_image(4, 3)
    assert to_rgb(rgb, BG) is rgb
    grey = _random_image(4, 3, "L")
    converted = np.asarray(to_rgb(grey, BG))
    assert converted.shape == (3, 4, 3)
    assert (converted == np.asarray(grey)[..., None]).all()
    binary = Image.fromarray(np.array([[True, False]]))
    assert binary.mode == "1"
    assert np.asarray(to_rgb(binary, BG)).tolist() == [[[255, 255, 255], [0, 0, 0]]]


def test_alpha_composited_on_mean_colour() -> None:
    pixels = np.array([[[200, 100, 50, 255], [200, 100, 50, 0], [200, 100, 50, 128]]], np.uint8)
    out = np.asarray(to_rgb(Image.fromarray(pixels), BG)).astype(int)
    assert out[0, 0].tolist() == [200, 100, 50]
    assert out[0, 1].tolist() == list(BG)
    expected = [(c * 128 + b * 127 + 127) // 255 for c, b in zip((200, 100, 50), BG, strict=True)]
    assert out[0, 2].tolist() == expected
    assert all(
        abs(o - (c * 128 + b * 127) / 255) <= 0.5
        for o, c, b in zip(out[0, 2], (200, 100, 50), BG, strict=True)
    )
    la = Image.fromarray(np.array([[[40, 0], [40, 255]]], np.uint8))
    assert np.asarray(to_rgb(la, BG)).tolist() == [[list(BG), [40, 40, 40]]]


def test_palette_with_transparency_and_premultiplied() -> None:
    palette = Image.new("P", (2, 1))
    palette.putpalette([10, 20, 30, 200, 210, 220] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.putpixel((1, 0), 1)
    palette.info["transparency"] = 0
    assert np.asarray(to_rgb(palette, BG)).tolist() == [[list(BG), [200, 210, 220]]]
    del palette.info["transparency"]
    assert np.asarray(to_rgb(palette, BG)).tolist() == [[[10, 20, 30], [200, 210, 220]]]
    premultiplied = Image.new("RGBa", (1, 1), (100, 50, 0, 255))
    assert np.asarray(to_rgb(premultiplied, BG)).tolist() == [[[100, 50, 0]]]
    # an RGB PNG with a tRNS colour key: the keyed colour becomes transparent
    keyed = Image.new("RGB", (2, 1), (1, 2, 3))
    keyed.putpixel((1, 0), (9, 9, 9))
    buffer = io.BytesIO()
    keyed.save(buffer, format="PNG", transparency=(1, 2, 3))
    decoded = load_image(buffer.getvalue())
    assert np.asarray(to_rgb(decoded, BG)).tolist() == [[list(BG), [9, 9, 9]]]


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_sixteen_bit_scaled(mode: str) -> None:
    values = np.array([[0, 257, 65535, 32896, 128]], dtype=np.uint16)
    expected = [0, 1, 255, 128, 0]  # round(v * 255 / 65535), half up
    image = Image.frombytes("I;16", (5, 1), values.astype("<u2").tobytes())
    if mode != "I;16":
        image = (
            image.convert("I")
            if mode == "I"
            else Image.frombytes("I;16B", (5, 1), values.astype(">u2").tobytes())
        )
    assert image.mode == mode
    out = np.asarray(to_rgb(image, BG))
    assert out[..., 0].tolist() == [expected]
    assert (out[..., 0] == out[..., 2]).all()


def test_sixteen_bit_png_roundtrip(tmp_path: Path) -> None:
    values = (np.arange(12, dtype=np.uint16) * 5000).reshape(3, 4)
    Image.frombytes("I;16", (4, 3), values.astype("<u2").tobytes()).save(tmp_path / "deep.png")
    out = np.asarray(to_rgb(load_image(tmp_path / "deep.png"), BG))[..., 1]
    assert out.tolist() == ((values.astype(np.int64) * 255 + 32767) // 65535).tolist()


def test_float_mode_rules() -> None:
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))
    assert np.asarray(to_rgb(unit, BG))[..., 0].tolist() == [[0, 128, 255]]
    bytes_range = Image.fromarray(np.array([[0.0, 12.4, 254.6]], np.float32))
    assert np.asarray(to_rgb(bytes_range, BG))[..., 0].tolist() == [[0, 12, 255]]
    with pytest.raises(ImageLoadError, match=r"span \[-1, 3\]"):
        to_rgb(Image.fromarray(np.array([[-1.0, 3.0]], np.float32)), BG)


@pytest.mark.parametrize("mode", ["CMYK", "YCbCr", "HSV", "LAB", "RGBX"])
def test_other_modes_use_pillow_conversion(mode: str) -> None:
    image = _random_image(3, 2).convert(mode) if mode != "CMYK" else _random_image(3, 2, "CMYK")
    expected = np.asarray(image.convert("RGB"))
    assert np.array_equal(np.asarray(to_rgb(image, BG)), expected)


def test_cmyk_jpeg_end_to_end(processor) -> None:
    buffer = io.BytesIO()
    _random_image(30, 20, "CMYK").save(buffer, format="JPEG")
    pixels = processor(buffer.getvalue())
    assert pixels.shape == (1, 3, 448, 448)
    assert torch.isfinite(pixels).all()


# ---- decoding ---------------------------------------------------------------------------------


def _png_bytes(image: Image.Image, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=params.pop("format", "PNG"), **params)
    return buffer.getvalue()


def test_sources_agree(tmp_path: Path) -> None:
    image = _random_image(7, 5)
    data = _png_bytes(image)
    (tmp_path / "a.png").write_bytes(data)
    expected = np.asarray(image)
    for source in (tmp_path / "a.png", str(tmp_path / "a.png"), data, bytearray(data),
                   memoryview(data), expected, image):  # fmt: skip
        assert np.array_equal(np.asarray(load_image(source)), expected), type(source)


def test_numpy_inputs() -> None:
    grey = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert load_image(grey).mode == "L"
    assert load_image(grey[..., None]).mode == "L"
    assert load_image(np.zeros((2, 3, 2), np.uint8)).mode == "LA"
    assert load_image(np.zeros((2, 3, 4), np.uint8)).mode == "RGBA"
    assert load_image(np.zeros((2, 3), bool)).mode == "L"
    assert load_image(np.zeros((2, 3), np.uint16)).mode == "I;16"
    deep = np.full((2, 3, 3), 65535, np.uint16)
    assert np.asarray(load_image(deep)).tolist() == np.full((2, 3, 3), 255).tolist()
    unit = np.full((2, 2, 3), 0.5)
    assert np.asarray(load_image(unit)).max() == 128
    with pytest.raises(ImageLoadError, match="channel-last"):
        load_image(np.zeros((3, 8, 8), np.uint8).transpose(1, 2, 0).T)
    with pytest.raises(ImageLoadError, match="dtype int64 is not supported"):
        load_image(np.zeros((2, 2), np.int64))
    with pytest.raises(ImageLoadError, match="NaN"):
        load_image(np.full((2, 2), np.nan))
    with pytest.raises(ImageLoadError, match="size 0x2"):
        load_image(np.zeros((2, 0, 3), np.uint8))


def test_exif_orientation_applied() -> None:
    image = Image.new("RGB", (16, 8), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 4, 4))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = _png_bytes(image, format="JPEG", exif=exif.tobytes(), quality=100)
    loaded = load_image(data)
    assert loaded.size == (8, 16)
    assert loaded.getpixel((6, 1))[2] > 200  # the blue corner moved to the top right
    assert loaded.getpixel((1, 1))[2] < 50
    raw = Image.open(io.BytesIO(data))
    assert apply_exif_orientation(raw).size == (8, 16)
    assert load_image(raw).size == (8, 16)
    # loading twice (the SDK decodes, then the processor loads again) must not rotate twice
    assert load_image(load_image(data)).size == (8, 16)
    assert MPLUGOwl2ImageProcessor(image_size=28).preprocess_uint8(loaded).shape == (28, 28, 3)
    plain = Image.new("RGB", (4, 2))
    assert apply_exif_orientation(plain) is plain


def test_first_frame_of_animation() -> None:
    frames = [Image.new("RGB", (4, 4), colour) for colour in ((255, 0, 0), (0, 255, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    loaded = load_image(buffer.getvalue())
    assert np.asarray(to_rgb(loaded, BG))[0, 0].tolist() == [255, 0, 0]
    opened = Image.open(io.BytesIO(buffer.getvalue()))
    opened.seek(1)
    assert np.asarray(to_rgb(load_image(opened), BG))[0, 0].tolist() == [255, 0, 0]


def test_decompression_bomb_limit() -> None:
    data = _png_bytes(Image.new("RGB", (100, 100)))
    assert load_image(data, max_pixels=10_000).size == (100, 100)
    with pytest.raises(ImageLoadError, match="10000 pixels exceeds max_pixels=9999"):
        load_image(data, max_pixels=9_999)
    with pytest.raises(ImageLoadError, match="exceeds max_pixels=5"):
        load_image(np.zeros((3, 3), np.uint8), max_pixels=5)
    assert load_image(data, max_pixels=None).size == (100, 100)
    with pytest.raises(ImageLoadError, match="max_pixels"):
        MPLUGOwl2ImageProcessor(image_size=28)(data, max_pixels=100)


def test_broken_files(tmp_path: Path) -> None:
    data = _png_bytes(_random_image(64, 64))
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageLoadError, match=r"empty\.png: the data is empty"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(ImageLoadError, match="truncated or corrupt"):
        load_image(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="not a recognised image format"):
        load_image(b"this is not an image at all")
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageLoadError, match="is a directory"):
        load_image(tmp_path)
    with pytest.raises(ImageLoadError, match="unsupported type int"):
        load_image(42)
    truncated_jpeg = _png_bytes(_random_image(64, 64), format="JPEG")[:300]
    with pytest.raises(ImageLoadError, match="truncated or corrupt"):
        load_image(truncated_jpeg)


# ---- configuration ----------------------------------------------------------------------------


def test_from_qalign_preprocessor_config(tmp_path: Path) -> None:
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(QALIGN_PREPROCESSOR_CONFIG))
    loaded = MPLUGOwl2ImageProcessor.from_pretrained(tmp_path)
    assert loaded.config == ImageProcessorConfig(crop_size=448)
    assert loaded.image_size == 448
    assert loaded.background == BG
    loaded.save_pretrained(tmp_path / "again")
    assert MPLUGOwl2ImageProcessor.from_pretrained(tmp_path / "again").config == loaded.config
    written = json.loads((tmp_path / "again" / "preprocessor_config.json").read_text())
    assert written["size"] == {"shortest_edge": 448}
    assert written["resample"] == 3
    clip = pytest.importorskip("transformers").CLIPImageProcessor
    assert clip.from_pretrained(tmp_path / "again").crop_size == {"height": 448, "width": 448}


def test_size_from_vision_config(vocab32k_fixture_dir: Path, tmp_path: Path) -> None:
    loaded = MPLUGOwl2ImageProcessor.from_pretrained(vocab32k_fixture_dir / "checkpoint")
    assert loaded.image_size == 448
    (tmp_path / "config.json").write_text(
        json.dumps({"visual_config": {"visual_model": {"image_size": 28}}})
    )
    assert MPLUGOwl2ImageProcessor.from_pretrained(tmp_path).image_size == 28
    (tmp_path / "config.json").write_text(json.dumps({"visual_config": {}}))
    with pytest.raises(ValueError, match=r"no visual_config\.visual_model\.image_size"):
        MPLUGOwl2ImageProcessor.from_pretrained(tmp_path)


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"preprocessor_config\.json or config\.json"):
        MPLUGOwl2ImageProcessor.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="crop_size 500 is larger than image_size 448"):
        ImageProcessorConfig(crop_size=500)
    with pytest.raises(ValueError, match="image_std must be positive"):
        ImageProcessorConfig(image_std=(0.1, 0.0, 0.1))
    with pytest.raises(ValueError, match="image_mean must lie in"):
        ImageProcessorConfig(image_mean=(2.0, 0.1, 0.1))
    with pytest.raises(ValueError, match="extra"):
        ImageProcessorConfig(imagesize=3)  # type: ignore[call-arg]
    bad = dict(QALIGN_PREPROCESSOR_CONFIG, size={"height": 10, "width": 20})
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="unsupported size"):
        MPLUGOwl2ImageProcessor.from_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps(dict(QALIGN_PREPROCESSOR_CONFIG, do_normalize=False))
    )
    with pytest.raises(ValueError, match="do_normalize=false is not supported"):
        MPLUGOwl2ImageProcessor.from_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold a JSON object"):
        MPLUGOwl2ImageProcessor.from_pretrained(tmp_path)
    with pytest.raises(TypeError, match="either config or keyword"):
        MPLUGOwl2ImageProcessor(ImageProcessorConfig(), image_size=3)
    with pytest.raises(ValueError, match="no images given"):
        MPLUGOwl2ImageProcessor()([])


def test_threads_give_the_same_pixels(processor) -> None:
    images = [_random_image(40 + i, 30, seed=i) for i in range(4)]
    assert torch.equal(processor(images, num_threads=3), processor(images))
    with pytest.raises(ValueError, match="num_threads must be at least 1"):
        processor(images, num_threads=0)
    with pytest.raises(ImageLoadError, match="not a recognised image format"):
        processor([images[0], b"garbage"], num_threads=2)


def test_normalize_matches_call(processor) -> None:
    image = _random_image(50, 30)
    uint8 = processor.preprocess_uint8(image)
    assert torch.equal(processor.normalize(uint8)[None], processor(image))
    with pytest.raises(ValueError, match="uint8 pixels"):
        processor.normalize(uint8.astype(np.float32))
