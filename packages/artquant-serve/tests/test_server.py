"""The real server on a free 127.0.0.1 port, with the tiny real-vocabulary checkpoint.

One server (API key, describe worker, small limits so the limits are cheap to hit) is started
for the whole module; the last test stops it with SIGTERM while a request is in flight.
Scores are compared with ``ArtQuant.score`` on the same files in this process (1e-6) and with
the fixture's reference scores, computed by the original code (1e-5, the fixture's tolerance).
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

from artquant_serve import ArtQuantClient, ArtQuantReward, ImageScore, ServeError

KEY = "test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
MAX_UPLOAD_MB = 3
MAX_IMAGES = 32
MAX_PIXELS = 100_000  # both fixture pictures (83,250 and 46,800 pixels) fit; 400x400 does not
ATOL = 1e-6

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(launch: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    log = tmp_path_factory.mktemp("server") / "server.log"
    running = launch(
        log,
        "--api-key",
        KEY,
        "--max-batch-size",
        "8",
        "--batch-timeout-ms",
        "50",
        "--max-upload-mb",
        str(MAX_UPLOAD_MB),
        "--max-images",
        str(MAX_IMAGES),
        "--max-pixels",
        str(MAX_PIXELS),
        "--max-new-tokens",
        "64",
        "--log-level",
        "info",
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server: Any) -> Iterator[ArtQuantClient]:
    with ArtQuantClient(server.url, api_key=KEY) as c:
        yield c


@pytest.fixture(scope="module")
def expected(reference_scorer: Any, pictures: list[Path]) -> list[Any]:
    return reference_scorer.score(pictures, batch_size=2)


def _assert_same(got: ImageScore, want: Any) -> None:
    assert got.error is None, got.error
    assert got.score == pytest.approx(want.score, abs=ATOL)
    assert got.std == pytest.approx(want.std, abs=ATOL)
    assert got.level == want.level
    assert got.probs is not None
    assert list(got.probs) == list(want.probs)
    assert list(got.probs.values()) == pytest.approx(list(want.probs.values()), abs=ATOL)


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (120, 60, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["status"] == response.status_code
    return dict(body["error"])


def test_probes_need_no_key(server: Any) -> None:
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "workers": 2}  # score + describe


def test_models(client: ArtQuantClient) -> None:
    info = client.models()
    assert info.level_words == ["excellent", "good", "fair", "poor", "bad"]
    assert info.scale == (1.0, 10.0)
    assert (info.device, info.dtype) == ("cpu", "float32")
    assert info.attributes is True
    assert info.describe is True
    assert (info.max_batch_size, info.max_images_per_request) == (8, MAX_IMAGES)


def test_score_equals_sdk_and_reference(
    client: ArtQuantClient, pictures: list[Path], expected: list[Any], fixture_dir: Path
) -> None:
    response = client.score_response(pictures)
    assert response.scale == (1.0, 10.0)
    assert [r.image for r in response.results] == [str(p) for p in pictures]
    for got, want in zip(response.results, expected, strict=True):
        _assert_same(got, want)
    reference = load_file(fixture_dir / "reference_outputs.safetensors")
    scores = reference["artquant.score_artquant"].double().tolist()
    stds = reference["artquant.score_artquant_std"].double().tolist()
    assert [r.score for r in response.results] == pytest.approx(scores, abs=1e-5)
    assert [r.std for r in response.results] == pytest.approx(stds, abs=1e-5)


def test_score_json_base64(server: Any, pictures: list[Path], expected: list[Any]) -> None:
    body = {
        "images": [
            {"name": p.name, "data": base64.b64encode(p.read_bytes()).decode()} for p in pictures
        ]
    }
    response = httpx.post(f"{server.url}/v1/score", json=body, headers=AUTH, timeout=120)
    assert response.status_code == 200, response.text
    results = [ImageScore.model_validate(r) for r in response.json()["results"]]
    assert [r.image for r in results] == [p.name for p in pictures]
    for got, want in zip(results, expected, strict=True):
        _assert_same(got, want)


def test_concurrent_clients_are_batched(
    server: Any, pictures: list[Path], expected: list[Any]
) -> None:
    before = httpx.get(f"{server.url}/v1/stats", headers=AUTH).json()
    clients, per_client = 16, 8

    def one_client(worker: int) -> list[tuple[int, ImageScore]]:
        out = []
        with ArtQuantClient(server.url, api_key=KEY, timeout=300) as c:
            for k in range(per_client):
                which = (worker + k) % 2
                (result,) = c.score(pictures[which])
                out.append((which, result))
        return out

    with ThreadPoolExecutor(max_workers=clients) as pool:
        answers = [a for batch in pool.map(one_client, range(clients)) for a in batch]
    assert len(answers) == clients * per_client
    for which, result in answers:
        _assert_same(result, expected[which])
    after = httpx.get(f"{server.url}/v1/stats", headers=AUTH).json()
    batches = after["batches"] - before["batches"]
    requests = after["requests"] - before["requests"]
    assert requests == clients * per_client
    assert requests / batches > 1.0, after  # requests were scored together
    assert "batch of" in server.log_text()  # and the server logs the batches it formed


def test_bad_image_fails_alone(
    client: ArtQuantClient, pictures: list[Path], expected: list[Any]
) -> None:
    good = pictures[0].read_bytes()
    truncated = pictures[1].read_bytes()[:2000]  # a PNG header, then the data stops
    results = client.score([good, truncated, _png(400, 400), good])
    _assert_same(results[0], expected[0])
    _assert_same(results[3], expected[0])
    assert results[1].error is not None
    assert results[1].error.code == "unreadable_image"
    assert results[1].score is None
    assert results[2].error is not None
    assert results[2].error.code == "too_many_pixels"
    assert str(MAX_PIXELS) in results[2].error.message


def test_wrong_or_missing_key_is_401(server: Any, pictures: list[Path]) -> None:
    files = {"files": ("a.png", pictures[0].read_bytes())}
    for headers in ({}, {"Authorization": "Bearer wrong-key-000"}, {"X-API-Key": "nope"}):
        response = httpx.post(f"{server.url}/v1/score", files=files, headers=headers)
        assert response.status_code == 401
        assert _error(response)["code"] == "unauthorized"
    assert httpx.get(f"{server.url}/v1/models").status_code == 401
    assert httpx.get(f"{server.url}/v1/models", headers={"X-API-Key": KEY}).status_code == 200
    with ArtQuantClient(server.url, api_key="wrong-key-000") as c, pytest.raises(ServeError) as err:
        c.score(pictures[0])
    assert err.value.status == 401


def test_oversize_is_413(server: Any) -> None:
    blob = b"\x89PNG\r\n\x1a\n" + bytes(MAX_UPLOAD_MB * 1_000_000)
    response = httpx.post(
        f"{server.url}/v1/score", files={"files": ("big.png", blob)}, headers=AUTH
    )
    assert response.status_code == 413
    assert "--max-upload-mb 3" in _error(response)["message"]
    many = {"images": [{"data": base64.b64encode(_png(4, 4)).decode()}] * (MAX_IMAGES + 1)}
    response = httpx.post(f"{server.url}/v1/score", json=many, headers=AUTH)
    assert response.status_code == 413
    assert f"at most {MAX_IMAGES}" in _error(response)["message"]


def test_non_image_is_415(server: Any, pictures: list[Path]) -> None:
    files = [
        ("files", ("a.png", pictures[0].read_bytes())),
        ("files", ("notes.txt", b"just some text")),
    ]
    response = httpx.post(f"{server.url}/v1/score", files=files, headers=AUTH)
    assert response.status_code == 415
    error = _error(response)
    assert error["code"] == "unsupported_media_type"
    assert "notes.txt" in error["message"]
    response = httpx.post(
        f"{server.url}/v1/score", content=b"hello", headers={**AUTH, "Content-Type": "text/plain"}
    )
    assert response.status_code == 415
    assert "text/plain" in _error(response)["message"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"images": []}, "images"),
        ({"images": [{"path": "/etc/passwd"}]}, "path"),  # no server-side paths
        ({"images": [{"data": "%%% not base64"}]}, "data"),
        ({"images": "a.png"}, "images"),
    ],
)
def test_malformed_json_is_422(server: Any, body: Any, needle: str) -> None:
    response = httpx.post(f"{server.url}/v1/score", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    error = _error(response)
    assert error["code"] == "invalid_request"
    assert needle in json.dumps(error["details"])


def test_broken_json_is_422(server: Any) -> None:
    response = httpx.post(
        f"{server.url}/v1/score",
        content=b'{"images": [',
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert _error(response)["code"] == "invalid_request"


def test_attributes_pass_through_to_the_sdk(
    client: ArtQuantClient, reference_scorer: Any, pictures: list[Path]
) -> None:
    """The fixture model was trained on no attributes: asked zero-shot, the server answers what
    ``ArtQuant.score`` gives in this process; asked plainly, each image fails with the SDK's
    message naming the attribute."""
    got = client.score(
        pictures, attributes=["color", "Light and shadow"], zero_shot_attributes=True
    )
    want = reference_scorer.score(
        pictures, attributes=["color", "Light and shadow"], zero_shot_attributes=True
    )
    for result, reference in zip(got, want, strict=True):
        _assert_same(result, reference)
        assert result.attributes is not None
        assert list(result.attributes) == ["color", "light_and_shadow"]
        for name, value in result.attributes.items():
            expected_value = reference.attributes[name]
            assert value.score == pytest.approx(expected_value.score, abs=ATOL)
            assert value.std == pytest.approx(expected_value.std, abs=ATOL)
            assert value.level == expected_value.level
            assert list(value.probs.values()) == pytest.approx(
                list(expected_value.probs.values()), abs=ATOL
            )
    assert got[0].attributes != got[1].attributes  # per picture, not one answer for all
    [refused] = client.score(pictures[0], attributes=["composition"])
    assert refused.error is not None
    assert refused.error.code == "invalid_request"
    assert "has no attribute 'composition'" in refused.error.message
    assert client.score(pictures[0])[0].attributes is None


def test_unknown_route_is_json_404(server: Any) -> None:
    response = httpx.get(f"{server.url}/v1/nothing", headers=AUTH)
    assert response.status_code == 404
    assert _error(response)["code"] == "not_found"


def test_describe_equals_sdk(
    client: ArtQuantClient, reference_scorer: Any, pictures: list[Path]
) -> None:
    text = client.describe(pictures[0], max_new_tokens=8)
    assert text == reference_scorer.describe(pictures[0], max_new_tokens=8)
    with pytest.raises(ServeError) as err:
        client.describe(pictures[0], max_new_tokens=65)
    assert err.value.status == 422
    assert "64" in err.value.message
    with pytest.raises(ServeError) as err:
        client.describe(pictures[1].read_bytes()[:2000])
    assert err.value.status == 422
    assert "cannot decode" in err.value.message


def test_reward_adapter_with_float_tensor(
    server: Any, reference_scorer: Any, pictures: list[Path]
) -> None:
    import torch

    pixels = [np.array(Image.open(p).convert("RGB")) for p in pictures]
    tensors = [torch.from_numpy(p).permute(2, 0, 1).float() / 255.0 for p in pixels]  # CHW
    reward = ArtQuantReward(server.url, api_key=KEY, chunk_size=1)
    scores, info = reward(tensors, ["a still life", "a portrait"], [{}, {}])
    want = reference_scorer.score(pixels)
    assert scores.dtype == np.float32
    assert scores.tolist() == pytest.approx([w.score for w in want], abs=1e-5)  # float32
    assert info["scale"] == (1.0, 10.0)
    assert info["level"] == [w.level for w in want]
    assert info["errors"] == {}
    normalized, _ = ArtQuantReward(server.url, api_key=KEY, normalize=True)(tensors)
    assert normalized.tolist() == pytest.approx([(w.score - 1) / 9 for w in want], abs=1e-5)


def test_still_answers_after_errors(
    client: ArtQuantClient, pictures: list[Path], expected: list[Any]
) -> None:
    _assert_same(client.score(pictures[1])[0], expected[1])
    assert client.ready()


def test_sigterm_drains_requests_in_flight(
    server: Any, pictures: list[Path], expected: list[Any]
) -> None:
    """Last in the module: it stops the server.

    The request's body is sent in two parts with a pause between them, and SIGTERM goes out in
    that pause: the request is in flight when the server is told to stop, by construction.
    """
    data = base64.b64encode(pictures[0].read_bytes()).decode()
    body = json.dumps({"images": [{"name": f"p{i}", "data": data} for i in range(4)]}).encode()
    first_part_sent = threading.Event()
    outcome: dict[str, Any] = {}

    def parts() -> Iterator[bytes]:
        yield body[:1000]
        first_part_sent.set()
        time.sleep(2.0)
        yield body[1000:]

    def request() -> None:
        outcome["response"] = httpx.post(
            f"{server.url}/v1/score",
            content=parts(),
            headers={**AUTH, "Content-Type": "application/json"},
            timeout=300,
        )
        outcome["at"] = time.monotonic()

    thread = threading.Thread(target=request)
    thread.start()
    assert first_part_sent.wait(timeout=60)
    time.sleep(0.3)  # the request's head reaches the server
    signalled = time.monotonic()
    code = server.stop(timeout=120)
    thread.join(timeout=120)
    assert code == 0, server.log_text()[-3000:]
    assert outcome["at"] > signalled
    response = outcome["response"]
    assert response.status_code == 200, response.text
    results = [ImageScore.model_validate(r) for r in response.json()["results"]]
    assert len(results) == 4
    for result in results:
        _assert_same(result, expected[0])
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/healthz", timeout=5)
