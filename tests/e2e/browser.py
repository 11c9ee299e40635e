"""A real browser for the console tests: Debian's Chromium driven by Playwright (its own
browser download is unavailable on these machines). Every page's JavaScript console error or
uncaught exception fails the test, and screenshots go to test-artifacts/console/."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("BROKER_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "console"
# Without these, Chromium phones home at start and the closed network refuses it.
FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def require_browser() -> None:
    """Skip without Chromium or Playwright on a laptop; CI (BROKER_REQUIRE_BROWSER=1) fails."""
    missing = []
    if shutil.which(CHROMIUM) is None:
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing.append("the playwright package")
    if missing:
        message = "the browser tests need " + " and ".join(missing)
        if os.environ.get("BROKER_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)


class Browser:
    """One page in a fresh browser context, with its console watched."""

    def __init__(self, page: object, base: str) -> None:
        from playwright.async_api import ConsoleMessage, Page

        assert isinstance(page, Page)
        self.page = page
        self.base = base
        self.errors: list[str] = []

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                self.errors.append(f"console error on {page.url}: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))

    async def open(self, path: str) -> None:
        await self.page.goto(self.base + path)

    async def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path


@contextlib.asynccontextmanager
async def browser(base: str) -> AsyncIterator[Browser]:
    require_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        chromium = await driver.chromium.launch(executable_path=CHROMIUM, args=list(FLAGS))
        try:
            context = await chromium.new_context(viewport={"width": 1280, "height": 900})
            page = await context.new_page()
            watched = Browser(page, base)
            yield watched
            assert not watched.errors, "\n".join(watched.errors)
        finally:
            await chromium.close()
