"""The pieces without a server: image checks, per-image isolation, the client's encoding, the
reward adapter's shape, the configuration and the command line."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from artquant_serve import (
    ArtQuantClient,
    ArtQuantReward,
    ImageError,
    ImageScore,
    ScoreRequest,
    ScoreResponse,
    ServeConfig,
)
from artquant_serve._client import encode_image, split_images
from artquant_serve._images import check_header, score_isolated, sniff_format
from artquant_serve.cli import build_parser, config_from_args, main


def _encoded(fmt: str, size: tuple[int, int] = (6, 4)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"])
def test_sniff_knows_every_accepted_format(fmt: str) -> None:
    assert sniff_format(_encoded(fmt)) == fmt


@pytest.mark.parametrize(
    "data", [b"", b"hello world", b"%PDF-1.7\n", b"PK\x03\x04", b"RIFF1234WAVE"]
)
def test_sniff_refuses_what_is_no_image(data: bytes) -> None:
    assert sniff_format(data) is None


def test_header_check_enforces_the_pixel_limit() -> None:
    data = _encoded("PNG", (300, 200))
    assert check_header(data, max_pixels=60_000) is None
    problem = check_header(data, max_pixels=59_999)
    assert problem is not None
    assert problem.code == "too_many_pixels"
    assert "300x200 = 60000" in problem.message
    # PIL's own bomb check (above 2x MAX_IMAGE_PIXELS) is reported the same way
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
        bomb = check_header(data, max_pixels=10**9)
    assert bomb is not None
    assert bomb.code == "too_many_pixels"
    garbage = check_header(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, max_pixels=10**6)
    assert garbage is not None
    assert garbage.code == "unreadable_image"


class _Scorer:
    """Scores by the decoded picture's mean; fails a whole call if any picture is unreadable,
    as ``ArtQuant.score`` does; counts its calls."""

    def __init__(self, fail_batches_over: int | None = None) -> None:
        self.calls: list[int] = []
        self.fail_batches_over = fail_batches_over

    def __call__(self, images: list[bytes]) -> list[float]:
        self.calls.append(len(images))
        if self.fail_batches_over is not None and len(images) > self.fail_batches_over:
            raise MemoryError("batch too big")
        out = []
        for data in images:
            with Image.open(io.BytesIO(data)) as image:
                out.append(float(np.asarray(image.convert("RGB")).mean()))
        return out


def test_isolation_keeps_order_and_blames_only_the_bad_image() -> None:
    good = [_encoded("PNG", (8, 8)), _encoded("JPEG", (9, 5))]
    truncated = _encoded("PNG", (32, 32))[:60]
    huge = _encoded("PNG", (50, 50))
    scorer = _Scorer()
    out = score_isolated(scorer, [good[0], truncated, huge, good[1]], max_pixels=2000)
    assert out[0] == pytest.approx(scorer([good[0]])[0])
    assert out[3] == pytest.approx(scorer([good[1]])[0])
    assert isinstance(out[1], ImageError)
    assert out[1].code == "unreadable_image"
    assert isinstance(out[2], ImageError)
    assert out[2].code == "too_many_pixels"
    # one failed batch of 3 (the huge one never reaches the scorer), then the 2 good together
    assert scorer.calls[:2] == [3, 2]


def test_isolation_falls_back_to_one_at_a_time() -> None:
    images = [_encoded("PNG", (8, 8 + i)) for i in range(3)]
    scorer = _Scorer(fail_batches_over=1)
    out = score_isolated(scorer, images)
    assert out == pytest.approx(_Scorer()(images))
    assert scorer.calls == [3, 3, 1, 1, 1]


def test_isolation_reports_a_scoring_failure_per_image() -> None:
    def broken(images: list[bytes]) -> list[float]:
        raise RuntimeError("device lost")

    out = score_isolated(broken, [_encoded("PNG")])
    assert isinstance(out[0], ImageError)
    assert out[0].code == "scoring_failed"
    assert "device lost" in out[0].message


def test_score_request_limits_and_forbids_paths() -> None:
    import base64

    one = {"data": base64.b64encode(_encoded("PNG")).decode()}
    assert len(ScoreRequest.model_validate({"images": [one] * 3}).images) == 3
    with pytest.raises(ValidationError) as err:
        ScoreRequest.model_validate({"images": [one] * 3}, context={"max_images": 2})
    assert err.value.errors()[0]["type"] == "too_many_images"
    with pytest.raises(ValidationError) as err:
        ScoreRequest.model_validate({"images": [{"path": "/etc/passwd"}]})
    assert {e["type"] for e in err.value.errors()} >= {"extra_forbidden"}
    with pytest.raises(ValidationError) as err:
        ScoreRequest.model_validate({"images": [{"name": "x.txt", "data": "aGVsbG8="}]})
    assert err.value.errors()[0]["type"] == "unsupported_media_type"
    assert "'x.txt'" in err.value.errors()[0]["msg"]


def test_encode_float_tensor_round_trips_uint8_pixels() -> None:
    import torch

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    for item in (
        torch.from_numpy(pixels).permute(2, 0, 1).float() / 255,  # CHW tensor
        pixels.astype(np.float32) / 255,  # HWC array
        pixels,  # uint8 as is
        Image.fromarray(pixels),
    ):
        _, data = encode_image(item, 0)
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), pixels)


@pytest.mark.parametrize(
    ("item", "needle"),
    [
        (np.full((4, 4, 3), 1.5, np.float32), "[0, 1]"),
        (np.full((4, 4, 3), np.nan, np.float32), "NaN"),
        (np.zeros((2, 4, 4, 3), np.float32)[0, 0], None),
        (np.zeros((4, 4, 3), np.int64), "int64"),
        (3.5, "float"),
    ],
)
def test_encode_refuses_what_it_cannot_send(item: Any, needle: str | None) -> None:
    if needle is None:  # a 2-D slice is a valid grey image
        assert encode_image(item, 0)[1].startswith(b"\x89PNG")
        return
    with pytest.raises((ValueError, TypeError), match=needle.replace("[", r"\[")):
        encode_image(item, 3)


def test_split_images_splits_batches_only() -> None:
    import torch

    assert len(split_images(torch.zeros(4, 3, 8, 8))) == 4
    assert len(split_images(np.zeros((8, 8, 3), np.uint8))) == 1
    assert split_images("a.png") == ["a.png"]
    assert len(split_images(["a.png", b"x"])) == 2


class _FakeClient(ArtQuantClient):
    """Answers from a table instead of a server: score = 1 + 9 * (mean pixel / 255)."""

    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:9")  # never contacted
        self.requests: list[int] = []

    def score_response(self, images: Any, *, attributes: Any = None) -> ScoreResponse:
        items = split_images(images)
        self.requests.append(len(items))
        results = []
        for i, item in enumerate(items):
            _, data = encode_image(item, i)
            mean = float(np.asarray(Image.open(io.BytesIO(data))).mean())
            if mean == 0:
                results.append(
                    ImageScore(
                        image=str(i), error=ImageError(code="unreadable_image", message="black")
                    )
                )
                continue
            results.append(
                ImageScore(
                    image=str(i),
                    score=1 + 9 * mean / 255,
                    std=0.5,
                    level="good",
                    probs={"good": 0.7, "bad": 0.3},
                )
            )
        return ScoreResponse(
            model="fake", scale=(1.0, 10.0), level_words=["good", "bad"], results=results
        )


def test_reward_adapter_shapes_chunks_and_errors() -> None:
    import torch

    images = torch.full((5, 3, 4, 4), 0.6)
    images[2] = 0.0  # the fake server fails black pictures
    client = _FakeClient()
    reward = ArtQuantReward(client, chunk_size=2)
    scores, info = reward(images, ["p"] * 5, [{}] * 5)
    assert sorted(client.requests) == [1, 2, 2]
    assert scores.shape == (5,)
    assert scores.dtype == np.float32
    value = 1 + 9 * round(0.6 * 255) / 255
    assert scores[[0, 1, 3, 4]] == pytest.approx([value] * 4, abs=1e-5)
    assert np.isnan(scores[2])
    assert info["errors"] == {2: "black"}
    assert info["probs"].shape == (5, 2)
    assert info["level_words"] == ["good", "bad"]
    normalized, _ = ArtQuantReward(client, normalize=True)(images)
    assert normalized[0] == pytest.approx((value - 1) / 9, abs=1e-6)
    with pytest.raises(ValueError, match="5 images but 4 prompts"):
        reward(images, ["p"] * 4, None)


def test_config_validation() -> None:
    assert ServeConfig().host == "127.0.0.1"
    assert ServeConfig(host="localhost").host == "127.0.0.1"
    assert ServeConfig(host="0.0.0.0").public
    assert not ServeConfig().public
    with pytest.raises(ValidationError, match="cannot be bound"):
        ServeConfig(host="10.0.0.1")
    with pytest.raises(ValidationError, match="at least 8"):
        ServeConfig(api_key="short")
    with pytest.raises(ValidationError):
        ServeConfig(port=80)
    with pytest.raises(ValidationError):
        ServeConfig(unknown=1)  # type: ignore[call-arg]
    assert ServeConfig(device="cpu").accelerator() == ("cpu", 1)
    assert ServeConfig(device="cuda:1").accelerator() == ("cuda", [1])
    with pytest.raises(ValueError, match="cuda:N"):
        ServeConfig(device="tpu").accelerator()
    assert "api_key" not in repr(ServeConfig(api_key="a-secret-key"))


def test_cli_reads_the_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARTQUANT_API_KEY", "from-the-env-1")
    config = config_from_args(build_parser().parse_args(["--device", "cpu", "--port", "9000"]))
    assert config.api_key == "from-the-env-1"
    assert (config.port, config.host, config.describe) == (9000, "127.0.0.1", True)
    explicit = build_parser().parse_args(["--api-key", "from-the-flag", "--no-describe"])
    assert config_from_args(explicit).api_key == "from-the-flag"
    assert config_from_args(explicit).describe is False


def test_cli_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--device", "cpu", "--host", "8.8.8.8"], prog="artquant serve") == 2
    assert "cannot be bound" in capsys.readouterr().err
    assert main(["--device", "cpu", "--max-batch-size", "0"], prog="artquant serve") == 2
    assert "--max-batch-size 0" in capsys.readouterr().err
