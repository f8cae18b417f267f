"""The alternative ``serve_throughput.py`` measures LitServe against: a plain FastAPI endpoint.

FastAPI + uvicorn in one process with one ``ArtQuant``, each request scored on its own (no
batching across requests); a lock keeps one forward pass at a time (two at once only fight over
the cores). Run as ``python benchmarks/_plain_server.py PORT CHECKPOINT TOKENIZER``.

No ``from __future__ import annotations``: FastAPI reads the endpoint's parameter types.
"""

import sys
import threading
from typing import Annotated, Any

import uvicorn
from fastapi import FastAPI, File, UploadFile

from artquant_sdk import ArtQuant


def build_app(checkpoint: str, tokenizer: str) -> FastAPI:
    """The app: ``GET /readyz`` and ``POST /v1/score`` (multipart ``files``)."""
    scorer = ArtQuant.from_pretrained(checkpoint, tokenizer=tokenizer, device="cpu")
    app = FastAPI()
    model_lock = threading.Lock()

    @app.get("/readyz")
    def readyz() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/v1/score")
    def score(files: Annotated[list[UploadFile], File()]) -> dict[str, Any]:
        blobs = [f.file.read() for f in files]
        with model_lock:
            results = scorer.score(blobs, batch_size=max(1, len(blobs)), progress=False)
        pairs = zip(files, results, strict=True)
        return {"results": [{"image": f.filename, "score": r.score} for f, r in pairs]}

    return app


if __name__ == "__main__":
    port, checkpoint, tokenizer = sys.argv[1:4]
    uvicorn.run(build_app(checkpoint, tokenizer), host="127.0.0.1", port=int(port),
                log_level="warning")  # fmt: skip
