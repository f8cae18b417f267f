"""Running the server: start LitServe, drain on SIGTERM, clean up whatever happens."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
from types import FrameType

from artquant_serve._config import ServeConfig

__all__ = ["ServerStartError", "serve"]

logger = logging.getLogger(__name__)


class ServerStartError(RuntimeError):
    """The server could not start: a model worker failed to load, or the port is taken."""


_MAIN_PID = os.getpid()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    if os.getpid() != _MAIN_PID:
        # A forked HTTP process inherited this handler; uvicorn re-raises the signal after its
        # own graceful shutdown to exit by it, as a process without a handler would.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    # LitServe's Ctrl+C path is its graceful one: the HTTP processes get SIGTERM, which makes
    # uvicorn stop accepting, finish the requests in flight (up to drain_timeout_s) and exit;
    # only then are the model workers stopped.
    raise KeyboardInterrupt


def serve(config: ServeConfig) -> None:
    """Run the ArtQuant service until SIGTERM or Ctrl+C.

    The model workers load first; the HTTP server answers once one of them is ready
    (``/readyz`` says when all are). On SIGTERM the server stops accepting connections, lets
    the requests in flight finish (at most ``config.drain_timeout_s``) and returns.

    Args:
        config: The settings.

    Raises:
        ServerStartError: A model worker failed to load (its log says why) or the port is taken.

    Example:
        >>> serve(ServeConfig(model="ckpt/", tokenizer="tok/"))  # doctest: +SKIP
    """
    from artquant_serve._app import build_server

    if config.public and not config.api_key:
        logger.warning(
            "serving on %s without an API key: anyone who can reach this machine can use the "
            "model; pass --api-key or set ARTQUANT_API_KEY",
            config.host,
        )
    global _MAIN_PID
    _MAIN_PID = os.getpid()
    manager = multiprocessing.Manager()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    server = None
    try:
        registry = manager.dict()
        server = build_server(config, registry)
        server.uvicorn_graceful_timeout = config.drain_timeout_s
        logger.info(
            "starting on http://%s:%d (model %s, device %s)",
            config.host,
            config.port,
            config.model,
            config.device,
        )
        server.run(
            host=config.host,
            port=config.port,
            log_level=config.log_level,
            generate_client_file=False,
            num_api_servers=1,
            timeout_keep_alive=30,
        )
    except KeyboardInterrupt:
        logger.info("stopped before the server was up")
    except OSError as error:
        raise ServerStartError(f"cannot listen on {config.host}:{config.port}: {error}") from error
    except RuntimeError as error:
        raise ServerStartError(
            f"{error} (a model worker could not load {config.model!r}; its log above says why)"
        ) from error
    finally:
        signal.signal(signal.SIGTERM, previous)
        # Workers still starting when startup was cut short are not LitServe's to stop.
        for child in multiprocessing.active_children():
            if child.name == "inference-worker":
                child.terminate()
                child.join(timeout=5)
        manager.shutdown()
        sys.stderr.flush()
