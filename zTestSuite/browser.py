"""Browser tests: Debian's Chromium driven by Playwright, or a skip that says why.

Playwright never downloads a browser here: it drives the Chromium at
``chromium_path()`` (``ZTEST_CHROMIUM``, default ``/usr/bin/chromium``) with ``executable_path``.
``requires_browser`` skips when Playwright or that Chromium is missing, and fails
instead under ``ZTEST_STRICT=1`` (CI), so browser tests cannot pass by not running.
"""

from __future__ import annotations

import importlib.util
import os
import unittest
from typing import Any

from .requirements import requirement

__all__ = [
    "CHROMIUM_ARGS",
    "BrowserTestCase",
    "browser_unavailable",
    "chromium_path",
    "launch",
    "requires_browser",
]
# What a closed network needs: no background connections, no first-run work.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    return os.environ.get("ZTEST_CHROMIUM", "/usr/bin/chromium")


def browser_unavailable() -> str | None:
    """Why no browser test can run here, or None."""
    if importlib.util.find_spec("playwright") is None:
        return "Playwright is not installed (pip install 'zCLI[test]')"
    chromium = chromium_path()
    if not os.access(chromium, os.X_OK):
        return f"no Chromium at {chromium} (apt-get install chromium, or set ZTEST_CHROMIUM)"
    return None


requires_browser = requirement(browser_unavailable, "a browser", strict=True)


def launch(playwright: Any) -> Any:
    """Headless Chromium from a started ``sync_playwright()``."""
    return playwright.chromium.launch(
        executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS
    )


class BrowserTestCase(unittest.TestCase):
    """One headless Chromium for the class (``self.browser``), started in
    ``setUpClass`` and closed in ``tearDownClass``; decorate the subclass with
    ``requires_browser`` so a missing browser skips (or fails under ZTEST_STRICT)."""

    playwright: Any
    browser: Any

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        from playwright.sync_api import sync_playwright

        cls.playwright = sync_playwright().start()
        try:
            cls.browser = launch(cls.playwright)
        except Exception:
            cls.playwright.stop()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls.browser.close()
        cls.playwright.stop()
        super().tearDownClass()
