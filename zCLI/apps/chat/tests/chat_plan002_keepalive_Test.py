"""Plan 002, section 5: keep-alive (docs/chat.md "Keep-alive": a signed-in connection
that sends no chat event for the keep-alive seconds is closed 1008 "No keep-alive within
N seconds."), black-box. Our server runs with a short ``--keepalive``; a given one must
say its own with CHAT_KEEPALIVE."""

from __future__ import annotations

import asyncio
import time
import unittest

from zCLI.apps.chat.tests.plan002 import (
    CHAT,
    CHAT_HTTP,
    CHAT_KEEPALIVE,
    SHORT,
    ChatClient,
    ChatTestCase,
)
from zTestSuite import UNIT, requires_network

__all__ = ["CHAT", "CHAT_HTTP", "CHAT_KEEPALIVE", "KeepaliveTest"]


@requires_network
class KeepaliveTest(ChatTestCase):
    server_options = ("--keepalive", f"{SHORT:g}")
    needs_target = CHAT_KEEPALIVE

    async def asyncSetUp(self) -> None:
        await super().asyncSetUp()
        given = CHAT_KEEPALIVE.value if CHAT.value is not None else None
        self.keepalive = float(given) if given is not None else SHORT
        self.reason = f"No keep-alive within {self.keepalive:g} seconds."
        self.units = self.keepalive / UNIT + 3  # waits that span a keep-alive period

    def keep_alive(self, client: ChatClient, event: str) -> None:
        """Send ``event`` four times per keep-alive period until the test ends: the
        client's own clock, as a real client has one."""

        async def pump() -> None:
            while not client.closed:
                try:
                    reply = await client.request(event, {})
                except AssertionError:
                    if client.closed:  # the test reads why
                        return
                    raise
                self.assertEqual(set(reply), {"result", "_requestId"}, reply)
                await asyncio.sleep(self.keepalive / 4)  # a clock, not a synchronisation

        task = asyncio.get_running_loop().create_task(pump())
        self.addCleanup(task.cancel)

    async def test_5_1_silent_client_is_disconnected(self) -> None:
        """A client sending no chat event for more than X seconds is disconnected."""
        watcher = await self.user("watcher")
        self.keep_alive(watcher, "chat.keepalive")
        for label in ("silent", "pings-only"):
            with self.subTest(client=label):
                account = await self.register(label)
                started = time.monotonic()  # before the server starts the client's clock
                client = await self.sign_in(account, "auth")
                if label == "pings-only":
                    pings = asyncio.get_running_loop().create_task(self.ping_until_closed(client))
                    self.addCleanup(pings.cancel)
                self.assertEqual(await client.wait_closed(self.units), (1008, self.reason))
                self.assertGreaterEqual(time.monotonic() - started, self.keepalive)
                await self.expect_online(watcher, client.user or "", False)
        self.assertFalse(watcher.closed)

    async def ping_until_closed(self, client: ChatClient) -> None:
        """Bridge pings, which are not chat events, four times per keep-alive period."""
        while not client.closed:
            try:
                await client.ping()
            except AssertionError:
                if client.closed:
                    return
                raise
            await asyncio.sleep(self.keepalive / 4)  # a clock, not a synchronisation

    async def test_5_2_client_sending_keepalives_stays_connected(self) -> None:
        """A client sending a keep-alive every X seconds stays connected."""
        for case, event in enumerate(("chat.keepalive", "chat.online")):
            with self.subTest(event=event):
                started = time.monotonic()
                kept = await self.user(f"kept-{case}")
                self.keep_alive(kept, event)
                for round_ in (1, 2):  # a silent client's closing marks X seconds gone
                    silent = await self.user(f"silent-{case}-{round_}")
                    closed = await silent.wait_closed(self.units)
                    self.assertEqual(closed, (1008, self.reason))
                    await self.expect_online(kept, silent.user or "", False)
                self.assertGreaterEqual(time.monotonic() - started, 2 * self.keepalive)
                self.assertFalse(kept.closed)
                online = await kept.call("chat.online")
                self.assertIn(kept.user, online["users"])


if __name__ == "__main__":
    unittest.main()
