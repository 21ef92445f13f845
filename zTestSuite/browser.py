"""Browser tests: Debian's Chromium driven by Playwright, or a skip that says why.

Playwright never downloads a browser here: it drives the Chromium at ``CHROMIUM``
(``ZTEST_CHROMIUM``, default ``/usr/bin/chromium``) with ``executable_path``.
``requires_browser`` skips when Playwright or that Chromium is missing, and fails
instead under ``ZTEST_STRICT=1`` (CI), so browser tests cannot pass by not running.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from .requirements import requirement

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "browser_unavailable", "launch", "requires_browser"]

CHROMIUM = os.environ.get("ZTEST_CHROMIUM", "/usr/bin/chromium")
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


def browser_unavailable() -> str | None:
    """Why no browser test can run here, or None."""
    if importlib.util.find_spec("playwright") is None:
        return "Playwright is not installed (pip install 'zCLI[test]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set ZTEST_CHROMIUM)"
    return None


requires_browser = requirement(browser_unavailable, "a browser", strict=True)


def launch(playwright: Any) -> Any:
    """Headless Chromium from a started ``sync_playwright()``."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
