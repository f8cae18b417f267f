"""The gallery page in a real browser: headless Chromium (Debian's) driven by Playwright.

The fixture's PNGs go up through the page's file input; the test waits for the badges, checks
the shown scores against ``ArtQuant.score`` to the shown precision (two decimals), sorts,
opens one picture's details with the keyboard, downloads the CSV and compares it (1e-6), and
checks the page fits a phone's width. A screenshot goes to the test's temporary folder.

Skipped where Chromium or Playwright is missing, except in CI (``CI=true``), where that fails:
``.ci/run`` installs Debian's ``chromium`` so that this test always runs there.
"""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def _chromium() -> str | None:
    explicit = os.environ.get("ARTQUANT_CHROMIUM")
    if explicit:
        return explicit
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{reason}; CI must run the browser test (.ci/run installs chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    if executable is None:
        _missing("no Chromium found (apt-get install chromium, or set ARTQUANT_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (it is in the workspace's dev group)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            # root in a container has no user namespaces for Chromium's sandbox
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server(launch: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    log = tmp_path_factory.mktemp("page-server") / "server.log"
    running = launch(log, "--no-describe", "--log-level", "warning")
    yield running
    running.stop()


def test_gallery_scores_sorts_details_and_csv(
    browser: Any,
    server: Any,
    pictures: list[Path],
    reference_scorer: Any,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    expected = {p.name: r for p, r in zip(pictures, reference_scorer.score(pictures), strict=True)}
    context = browser.new_context(accept_downloads=True, viewport={"width": 1100, "height": 800})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(server.url)
    page.wait_for_selector("#model:has-text('scores from 1')")

    page.set_input_files("#files", [str(p) for p in pictures])
    # Locator waits, not JavaScript strings: the page's policy forbids eval, also Playwright's.
    expect(page.locator(".badge[data-state=done]")).to_have_count(2, timeout=120_000)
    cards = page.query_selector_all("button.card")
    shown = {c.query_selector(".name").inner_text(): c for c in cards}
    assert set(shown) == set(expected)
    for name, card in shown.items():
        badge = float(card.query_selector(".badge").inner_text())
        assert badge == pytest.approx(expected[name].score, abs=0.005 + 1e-9)
        assert card.query_selector("img").get_attribute("alt") == name
        assert f"score {badge:.2f}" in card.get_attribute("aria-label")

    page.select_option("#sort", "score-asc")
    order = [n.inner_text() for n in page.query_selector_all("button.card .name")]
    assert order == sorted(expected, key=lambda n: expected[n].score)

    # Keyboard: focus the first card, Enter opens the details, Escape closes them.
    first = order[0]
    page.focus(f"button.card:has-text('{first}')")
    page.keyboard.press("Enter")
    dialog = page.locator("#details")
    dialog.wait_for(state="visible")
    assert page.inner_text("#details-title") == first
    want = expected[first]
    assert f"std {want.std:.2f}" in page.inner_text("#details-score")
    for word, probability in want.probs.items():
        text = page.inner_text(f".pct[data-word='{word}']")
        assert float(text.rstrip("%")) == pytest.approx(100 * probability, abs=0.05 + 1e-9)
    page.screenshot(path=str(tmp_path / "details.png"))
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    assert page.evaluate("document.activeElement.dataset.id") is not None  # focus came back

    with page.expect_download() as download:
        page.click("#csv")
    saved = tmp_path / "scores.csv"
    download.value.save_as(str(saved))
    with saved.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["image"] for r in rows] == [p.name for p in pictures]  # upload order
    words = list(want.probs)
    assert list(rows[0]) == ["image", "score", "std", "level", *[f"p_{w}" for w in words], "error"]
    for row in rows:
        ref = expected[row["image"]]
        assert float(row["score"]) == pytest.approx(ref.score, abs=1e-6)
        assert float(row["std"]) == pytest.approx(ref.std, abs=1e-6)
        assert row["level"] == ref.level
        for w in words:
            assert float(row[f"p_{w}"]) == pytest.approx(ref.probs[w], abs=1e-6)
        assert row["error"] == ""
    page.screenshot(path=str(tmp_path / "gallery.png"), full_page=True)
    assert (tmp_path / "gallery.png").stat().st_size > 0

    # A phone: nothing wider than the screen, the cards two to a row.
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    boxes = [c.bounding_box() for c in page.query_selector_all("button.card")]
    assert all(b is not None and b["x"] + b["width"] <= 390 for b in boxes)
    assert problems == []
    context.close()


def test_page_is_served_with_a_strict_policy(server: Any) -> None:
    import httpx

    response = httpx.get(server.url)
    assert response.status_code == 200
    assert "<title>ArtQuant gallery</title>" in response.text
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert httpx.get(f"{server.url}/static/app.js").status_code == 200
    # CORS is off: no allow-origin header for a foreign page's request.
    foreign = httpx.get(f"{server.url}/v1/models", headers={"Origin": "https://example.org"})
    assert "access-control-allow-origin" not in foreign.headers
