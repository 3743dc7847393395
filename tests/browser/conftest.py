"""Browser tests: Playwright (sync API) driving Debian's chromium, headless, against live_server.

Run with `scripts/ci-browser`, or `.venv/bin/pytest tests/browser -m browser -p no:xdist`.
The tests skip, saying why, when the playwright package or a chromium binary is missing; they
never download a browser (`playwright install` is not used: the machine has no network for it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# CI keeps this folder as an artifact; the README names it.
SCREENSHOT_DIR = Path(
    os.environ.get("GRIMOIRE_SCREENSHOT_DIR", REPO_ROOT / "artifacts" / "screenshots")
)

# Without the background-networking flags chromium keeps trying to reach Google's hosts, which
# this sandbox refuses; --no-sandbox because CI runs as root, where chromium's sandbox won't start.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
]


def pytest_configure(config: pytest.Config) -> None:
    # pyproject's addopts has --strict-markers; registered here until pyproject lists it.
    config.addinivalue_line(
        "markers", "browser: drives a real headless chromium with Playwright (tests/browser)"
    )


def chromium_path() -> str | None:
    candidates = [
        os.environ.get("CHROMIUM_PATH", ""),
        "/usr/bin/chromium",
        shutil.which("chromium") or "",
        shutil.which("chromium-browser") or "",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(
            "the playwright package is not installed: run scripts/ci-browser "
            "(or .venv/bin/pip install playwright)"
        )
    executable = chromium_path()
    if executable is None:
        pytest.skip(
            "no chromium binary (looked at $CHROMIUM_PATH, /usr/bin/chromium, PATH): "
            "run scripts/ci-browser (or apt-get install -y chromium)"
        )
    # Playwright's sync API keeps an event loop running in this thread while it is started, so
    # Django would refuse every ORM call made here (test data, assertions, the transactional
    # flush). That code is plain synchronous code, and the live server answers from its own
    # thread, so the guard has nothing to protect in this suite.
    with pytest.MonkeyPatch.context() as mp, sync_playwright() as playwright:
        mp.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any, live_server: Any) -> Iterator[Any]:
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 1280, "height": 900}, locale="en-US"
    )
    context.set_default_timeout(15_000)
    try:
        yield context.new_page()
    finally:
        context.close()


class Screenshots:
    """Numbered full-page screenshots, in the order the steps happen."""

    def __init__(self, folder: Path, prefix: str) -> None:
        self.folder = folder
        self.prefix = prefix
        self.taken: list[Path] = []
        folder.mkdir(parents=True, exist_ok=True)
        # Only this test's own files from an earlier run: the folder must show this run.
        for stale in folder.glob(f"{prefix}-*.png"):
            stale.unlink()

    def __call__(self, page: Any, step: str) -> Path:
        path = self.folder / f"{self.prefix}-{len(self.taken) + 1:02d}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        return path


@pytest.fixture
def screenshots(request: pytest.FixtureRequest) -> Screenshots:
    prefix = request.node.name.removeprefix("test_").replace("_", "-")
    return Screenshots(SCREENSHOT_DIR, prefix)
