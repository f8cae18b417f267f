"""Speed options of the scorer: vision-side attention, vision batch size, decoding threads.

None of them may change a score beyond float32 reordering (the 1e-5 parity tolerance).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from artquant_sdk import ArtQuant


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from artquant_model.testing import save_tiny_checkpoint

    return Path(save_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt", seed=3))


@pytest.fixture(scope="module")
def eager(checkpoint: Path) -> ArtQuant:
    return ArtQuant.from_pretrained(
        checkpoint, device="cpu", visual_attn_implementation="eager", vision_batch_size=None
    )


def _pictures(n: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, size=(40 + 9 * i, 31, 3), dtype=np.uint8) for i in range(n)]


def _assert_same_scores(a: list[Any], b: list[Any], atol: float = 1e-5) -> None:
    assert [r.image for r in a] == [r.image for r in b]
    for x, y in zip(a, b, strict=True):
        assert abs(x.score - y.score) <= atol
        assert max(abs(x.probs[w] - y.probs[w]) for w in x.probs) <= min(atol, 2e-6)


def test_cpu_defaults_are_fused_attention_and_one_picture_per_vision_pass(
    checkpoint: Path, eager: ArtQuant
) -> None:
    default = ArtQuant.from_pretrained(checkpoint, device="cpu")
    assert default.model.config.visual_attn_implementation == "sdpa"
    assert default.model.model.vision_batch_size == 1
    assert eager.model.config.visual_attn_implementation == "eager"
    assert eager.model.model.vision_batch_size is None
    pictures = _pictures()
    assert default._prefix_cache.length == 0
    # fused attention, per-picture vision passes and the shared prompt prefix reorder float32
    # sums only
    _assert_same_scores(default.score(pictures, batch_size=4), eager.score(pictures, batch_size=4))
    prompt = default._prompt_ids.tolist()
    assert default._prefix_cache.length == prompt.index(-200) > 0


def test_explicit_vision_batch_size_is_kept(checkpoint: Path) -> None:
    scorer = ArtQuant.from_pretrained(checkpoint, device="cpu", vision_batch_size=2)
    assert scorer.model.model.vision_batch_size == 2


@pytest.mark.parametrize(
    ("option", "value", "match"),
    [
        ("visual_attn_implementation", "flash", r"visual_attn_implementation must be one of .*"),
        ("vision_batch_size", 0, r"vision_batch_size must be 'auto', None or a positive int; "),
        ("vision_batch_size", "max", r"vision_batch_size must be .*got 'max'"),
        ("vision_batch_size", True, r"vision_batch_size must be .*got True"),
    ],
)
def test_bad_speed_options_are_refused_before_anything_is_read(
    tmp_path: Path, option: str, value: object, match: str
) -> None:
    # the folder does not exist: only a check made before loading can produce this error
    with pytest.raises(ValueError, match=match):
        ArtQuant.from_pretrained(tmp_path / "missing", device="cpu", **{option: value})


def test_decode_threads_do_not_change_results(eager: ArtQuant) -> None:
    pictures = _pictures(7)
    one = eager.score(pictures, batch_size=3, decode_threads=1)
    _assert_same_scores(eager.score(pictures, batch_size=3, decode_threads=4), one, atol=0.0)
    assert eager.default_decode_threads() == torch.get_num_threads()


@pytest.mark.parametrize("value", [0, -2, 1.0, True])
def test_bad_decode_threads_are_refused(eager: ArtQuant, value: object) -> None:
    with pytest.raises(ValueError, match=r"decode_threads must be a positive integer; got"):
        eager.score(_pictures(1), decode_threads=value)  # type: ignore[arg-type]


def test_off_cpu_the_next_batch_is_decoded_while_the_model_runs(
    checkpoint: Path, eager: ArtQuant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pretend the model is on an accelerator: decoding must run one batch ahead, off the
    calling thread, and the results must not change."""
    pictures = _pictures(7)
    expected = eager.score(pictures, batch_size=3)
    events: list[tuple[str, int, bool]] = []
    faked = ArtQuant.from_pretrained(
        checkpoint, device="cpu", visual_attn_implementation="eager", vision_batch_size=None
    )
    preprocess = eager.preprocess
    score_pixel_values = eager.score_pixel_values  # the real scorer stays on the CPU
    caller = threading.get_ident()

    second_decode_started = threading.Event()

    def recording_preprocess(images: list[Any], **kwargs: Any) -> torch.Tensor:
        events.append(("decode", len(images), threading.get_ident() == caller))
        if len(events) > 1:
            second_decode_started.set()
        return preprocess(images, **kwargs)

    def recording_score(pixels: torch.Tensor) -> list[tuple[float, float, list[float]]]:
        if not events or events[-1][0] != "score":
            # the first batch: the next one must get decoded while this one is "on the device"
            events.append(("ahead", int(second_decode_started.wait(timeout=30)), True))
        events.append(("score", pixels.shape[0], True))
        return score_pixel_values(pixels)

    monkeypatch.setattr(faked, "device", torch.device("meta"))
    monkeypatch.setattr(faked, "preprocess", recording_preprocess)
    monkeypatch.setattr(faked, "score_pixel_values", recording_score)
    got = faked.score(pictures, batch_size=3)
    _assert_same_scores(got, expected, atol=0.0)
    decodes = [e for e in events if e[0] == "decode"]
    assert [n for _, n, _ in decodes] == [3, 3, 1]
    assert not any(on_caller for _, _, on_caller in decodes)
    assert ("ahead", 1, True) in events
