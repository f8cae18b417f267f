"""Make the README's screenshot of the gallery page (docs/gallery.png).

    uv run python packages/artquant-serve/docs/screenshot.py \\
        --model ../shared/fixtures/mplug_owl2_tiny_vocab32k/checkpoint \\
        --tokenizer ../shared/tokenizers/llama2 --out packages/artquant-serve/docs/gallery.png

Starts ``artquant serve`` on the given model, draws a few pictures (seeded shapes, so the
screenshot holds nothing but generated images), uploads them through the page in headless
Chromium, sorts by score, opens the best one's details and saves the page.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image, ImageDraw, ImageFilter


def draw_pictures(folder: Path, count: int, seed: int = 7) -> list[Path]:
    """``count`` abstract 'paintings': a colour field with overlapping shapes, softened."""
    rng = random.Random(seed)
    paths = []
    for index in range(count):
        width, height = rng.choice([(480, 360), (360, 480), (420, 420)])
        picture = Image.new("RGB", (width, height), tuple(rng.randrange(256) for _ in range(3)))
        pen = ImageDraw.Draw(picture)
        for _ in range(rng.randint(4, 12)):
            box = (
                sorted(rng.randrange(width) for _ in range(2)),
                sorted(rng.randrange(height) for _ in range(2)),
            )
            corners = [box[0][0], box[1][0], box[0][1], box[1][1]]
            colour = tuple(rng.randrange(256) for _ in range(3))
            (pen.ellipse if rng.random() < 0.5 else pen.rectangle)(corners, fill=colour)
        picture = picture.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 3.0)))
        path = folder / f"study_{index + 1:02d}.png"
        picture.save(path)
        paths.append(path)
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--tokenizer")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--chromium", default=shutil.which("chromium"))
    args = parser.parse_args()
    from playwright.sync_api import expect, sync_playwright

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        "-m",
        "artquant_serve.cli",
        "--model",
        args.model,
        "--device",
        "cpu",
        "--port",
        str(port),
        "--no-describe",
        "--log-level",
        "warning",
    ]
    if args.tokenizer:
        command += ["--tokenizer", args.tokenizer]
    server = subprocess.Popen(command)
    try:
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None:
                raise SystemExit("the server did not start")
            time.sleep(1)
        with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
            pictures = draw_pictures(Path(tmp), args.count)
            browser = playwright.chromium.launch(
                executable_path=args.chromium, headless=True, args=["--no-sandbox"]
            )
            page = browser.new_page(viewport={"width": 1000, "height": 760})
            page.goto(url)
            page.set_input_files("#files", [str(p) for p in pictures])
            expect(page.locator(".badge[data-state=done]")).to_have_count(
                args.count, timeout=300_000
            )
            page.select_option("#sort", "score-desc")
            page.locator("button.card").first.click()
            page.locator("#details").wait_for(state="visible")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out))
            browser.close()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
