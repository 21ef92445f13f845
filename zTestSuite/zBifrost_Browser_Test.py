"""The demos as a user runs them: `zcli serve` in its own process, pages in Chromium.

Chromium is Debian's (/usr/bin/chromium) driven by Playwright with executable_path.
Without Playwright or Chromium the browser tests skip with the reason, and fail under
ZTEST_STRICT=1 (as CI runs them); without loopback they skip like every network test;
outside a source checkout (an installed wheel) the demos are not there and they skip.
"""

from __future__ import annotations

import signal
import unittest
from typing import Any

from zTestSuite import (
    REPO_ROOT,
    BrowserTestCase,
    ServedApp,
    requires_browser,
    requires_network,
    requires_source_tree,
    served_app,
    timeout,
)


def serve(app: str, ws_port: int = 0, http_port: int = 0) -> ServedApp:
    """`zcli serve` on one of the demos, on free ports unless given."""
    ports = ["--ws-port", str(ws_port), "--http-port", str(http_port)]
    return served_app(REPO_ROOT / app, *ports)


def stop(app: ServedApp, signum: int = signal.SIGTERM) -> tuple[int, str]:
    """Signal it (SIGTERM as a service manager, SIGINT as Ctrl-C); (status, last line)."""
    status = app.stop(signum)
    return status, app.lines[-1] if app.lines else ""


@requires_source_tree
@requires_network
class TestServeCommand(unittest.TestCase):
    def test_serve_prints_urls_and_stops_on_a_signal(self) -> None:
        """zcli serve prints both URLs and exits 0 with 'Stopped.' on SIGTERM or Ctrl-C."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            with self.subTest(signal=signum.name):
                app = serve("demos/Level_1_Menu")
                self.assertRegex(app.ws_url, r"^ws://127\.0\.0\.1:\d+$")
                self.assertRegex(app.http_url, r"^http://127\.0\.0\.1:\d+/$")
                self.assertEqual(stop(app, signum), (0, "Stopped."))

    def test_a_client_of_the_served_app(self) -> None:
        """Through `zcli serve`: Pong!, then server_shutdown and 1001 on SIGTERM."""
        import asyncio
        import json

        import websockets

        app = serve("demos/Level_1_Menu")
        self.addCleanup(app.stop)

        async def session() -> tuple[Any, ...]:
            async with websockets.connect(app.ws_url) as ws:
                info = json.loads(await ws.recv())
                await ws.send(json.dumps({"event": "dispatch", "zKey": "^Ping"}))
                pong = json.loads(await ws.recv())
                stopped = await asyncio.to_thread(stop, app)
                shutdown = json.loads(await ws.recv())
                await ws.wait_closed()
                return info["data"]["auth"], pong, stopped, shutdown, ws.close_code

        auth, pong, stopped, shutdown, code = asyncio.run(session())
        self.assertEqual(auth, {"authenticated": False, "user": "anonymous", "role": "guest"})
        self.assertEqual(pong, {"result": {"message": "Pong!"}, "_requestId": 0})
        self.assertEqual(stopped, (0, "Stopped."))
        self.assertEqual(
            shutdown, {"event": "server_shutdown", "message": "The server is shutting down."}
        )
        self.assertEqual(code, 1001)


@requires_browser
@requires_source_tree
@requires_network
class TestDemosInChromium(BrowserTestCase):
    def open(self, app: str) -> Any:
        served = serve(app)
        self.addCleanup(served.stop)
        page = self.browser.new_page()
        self.addCleanup(page.close)
        page.set_default_timeout(timeout(10) * 1000)
        page.goto(served.http_url)
        return page

    def test_level0_shows_version_and_features(self) -> None:
        """Level 0 connects and shows the server version, features and identity."""
        from playwright.sync_api import expect

        from zCLI import __version__

        page = self.open("demos/Level_0_Connection")
        expect(page.locator("#status")).to_have_text("Connected.")
        expect(page.locator("#version")).to_have_text(__version__)
        expect(page.locator("#features")).to_have_text(
            "auth, connection_info, dispatch, input_response, login, logout, menu, ping"
        )
        expect(page.locator("#user")).to_have_text("anonymous (guest)")

    def test_client_reconnects_after_a_restart(self) -> None:
        """zbifrost.js sees the 1001 close and reconnects to the restarted app by itself."""
        from playwright.sync_api import expect

        first = serve("demos/Level_0_Connection")
        self.addCleanup(first.stop)
        ws_port = int(first.ws_url.rsplit(":", 1)[1])
        http_port = int(first.http_url.rstrip("/").rsplit(":", 1)[1])
        page = self.browser.new_page()
        self.addCleanup(page.close)
        page.set_default_timeout(timeout(10) * 1000)
        page.goto(first.http_url)
        expect(page.locator("#status")).to_have_text("Connected.")
        self.assertEqual(stop(first), (0, "Stopped."))
        expect(page.locator("#status")).to_have_text("Disconnected (1001).")
        # a restart needs the ports the page knows; they were free a moment ago
        second = serve("demos/Level_0_Connection", ws_port, http_port)
        self.addCleanup(second.stop)
        expect(page.locator("#status")).to_have_text("Connected again.")

    def test_request_without_reply_times_out(self) -> None:
        """send() rejects after its timeout when no reply comes (a prompt left unanswered)."""
        page = self.open("demos/Level_1_Menu")
        message = page.evaluate("""async () => {
            const { ZBifrost, bridgeUrl } = await import("/zbifrost.js");
            const bridge = await new ZBifrost(await bridgeUrl(),
                { timeout: 300, onInput: () => new Promise(() => {}) }).connect();
            try { await bridge.dispatch("^Echo Test"); return "answered"; }
            catch (error) { return error.message; }
        }""")
        self.assertEqual(message, "no reply to dispatch within 300 ms")

    def test_level1_ping_shows_pong(self) -> None:
        """Level 1 renders the served menu as buttons; Ping shows Pong!."""
        from playwright.sync_api import expect

        page = self.open("demos/Level_1_Menu")
        expect(page.locator("#menu button")).to_have_text(
            ["Ping", "Echo Test", "Status", "Notice", "Sign Guestbook"]
        )
        page.get_by_role("button", name="Ping").click()
        expect(page.locator("#output div")).to_have_text(["Pong!"])

    def test_level1_dialog_and_display_event(self) -> None:
        """The dialog prompts in the browser; display events show before the result."""
        from playwright.sync_api import expect

        page = self.open("demos/Level_1_Menu")
        page.on("dialog", lambda dialog: dialog.accept("hello"))
        page.get_by_role("button", name="Echo Test").click()
        expect(page.locator("#output div")).to_have_text(['{"echo":"hello"}'])
        page.get_by_role("button", name="Notice").click()
        expect(page.locator("#output div.info")).to_have_text("Display events reach whoever asked.")
        page.get_by_role("button", name="Status").click()
        expect(page.locator("#output div.success")).to_have_text("All subsystems are ready.")
