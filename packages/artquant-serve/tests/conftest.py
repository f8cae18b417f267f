"""Shared fixtures: the reference material in ../shared and a real server on a free port.

A server runs as ``python -m artquant_serve.cli`` in its own process group, on 127.0.0.1 and a
port the OS just handed out, with the tiny real-vocabulary checkpoint of
``../shared/fixtures/mplug_owl2_tiny_vocab32k``. Starting one takes a while (each model worker
is a fresh Python process that imports torch), so each test module starts one and shares it.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
FIXTURE = "fixtures/mplug_owl2_tiny_vocab32k"
#: Loading two model workers on a busy 2-core runner took up to 2 minutes (measured).
START_TIMEOUT_S = 600.0


def shared_dir() -> Path:
    """``$ARTQUANT_SHARED`` or ``<repo>/../shared``."""
    env = os.environ.get("ARTQUANT_SHARED")
    return Path(env) if env else (REPO_ROOT / ".." / "shared").resolve()


@pytest.fixture(scope="session")
def shared() -> Path:
    """The reference folder with the vocab32k fixture and the LLaMA-2 tokenizer, or a skip."""
    path = shared_dir()
    if not (path / FIXTURE).is_dir() or not (path / "tokenizers" / "llama2").is_dir():
        pytest.skip(f"the vocab32k fixture or the LLaMA-2 tokenizer is missing under {path}")
    return path


@pytest.fixture(scope="session")
def fixture_dir(shared: Path) -> Path:
    return shared / FIXTURE


@pytest.fixture(scope="session")
def pictures(fixture_dir: Path) -> list[Path]:
    return [fixture_dir / "picture0_src_333x250.png", fixture_dir / "picture1_src_180x260.png"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RunningServer:
    """A server process started by :func:`start_server`."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then wait; kill the group if it does not exit in ``timeout``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        return int(self.process.returncode)


def start_server(
    shared: Path, log: Path, *flags: str, model: list[str] | None = None
) -> RunningServer:
    """Start ``artquant serve`` and wait until ``/readyz`` says ready.

    ``model``: the model options; default the tiny mPLUG-Owl2 fixture with the LLaMA-2 tokenizer.
    """
    if model is None:
        model = [
            "--model",
            str(shared / FIXTURE / "checkpoint"),
            "--tokenizer",
            str(shared / "tokenizers" / "llama2"),
        ]
    port = free_port()
    env = dict(
        os.environ,
        # the tiny model gains nothing from threads; on a busy 2-core runner they cost a lot
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    env.pop("ARTQUANT_API_KEY", None)
    command = [
        sys.executable,
        "-m",
        "artquant_serve.cli",
        *model,
        "--device",
        "cpu",
        "--port",
        str(port),
        *flags,
    ]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    server = RunningServer(url=f"http://127.0.0.1:{port}", process=process, log=log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{server.log_text()}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    server.stop()
    raise RuntimeError(f"the server was not ready in {START_TIMEOUT_S} s:\n{server.log_text()}")


@pytest.fixture(scope="session")
def launch(shared: Path) -> Callable[..., RunningServer]:
    """``launch(log_path, *flags)`` starts a server on the fixture (see :func:`start_server`)."""
    return functools.partial(start_server, shared)


@pytest.fixture(scope="session")
def reference_scorer(fixture_dir: Path, shared: Path):  # type: ignore[no-untyped-def]
    """The SDK's scorer on the same checkpoint, in this process (the numbers to match)."""
    from artquant_sdk import ArtQuant

    return ArtQuant.from_pretrained(
        fixture_dir / "checkpoint", tokenizer=shared / "tokenizers" / "llama2", device="cpu"
    )


@pytest.fixture(autouse=True)
def _isolated_hub(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No test may reach the network or a user's cache."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf-cache")))
    monkeypatch.delenv("ARTQUANT_MODELZOO", raising=False)
