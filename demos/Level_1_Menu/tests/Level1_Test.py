"""The Level 1 app tests itself: `python -m zTestSuite` in this folder runs this file.

The bridge tests are black-box: they talk to a ws:// URL with a real WebSocket client,
so the same tests check any running copy of the app (`--target LEVEL1=ws://host:port`).
Without a target the suite serves this folder itself with `zcli serve` on free ports and
stops it at the end. The terminal test walks the same zUI file with piped answers.
"""

from __future__ import annotations

import asyncio
import json
import time
import unittest
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from zCLI import __version__
from zTestSuite import (
    ServedApp,
    Target,
    record_metric,
    requires_network,
    served_app,
    timeout,
    zTestCase,
)
from zTestSuite.bridge import FEATURES, expected_info, without_session_id

APP = Path(__file__).resolve().parent.parent
LEVEL1 = Target(
    "LEVEL1",
    "ws:// URL of a running Level 1 app to test; unset: the suite serves this folder itself "
    "with zcli serve",
)

# The first frame: zCLI's features plus one per plugin, the app's block and zUI file.
CONNECTION_INFO = expected_info(
    block="Level1", zVaFile="zUI.level1.yaml", features=[*FEATURES, "plugin:level1"]
)


@requires_network
class TestLevel1OverTheBridge(unittest.IsolatedAsyncioTestCase):
    served: ServedApp | None  # the app this suite started, if no target was given
    url: str

    @classmethod
    def setUpClass(cls) -> None:
        cls.served = None
        if LEVEL1.value is not None:
            cls.url = LEVEL1.value
        else:
            cls.served = served_app(APP)
            cls.url = cls.served.ws_url

    @classmethod
    def tearDownClass(cls) -> None:
        if cls.served is not None:
            cls.served.stop()

    async def client(self) -> ClientConnection:
        """A new connection (a new session, whose first request is _requestId 0), its
        connection_info checked and consumed."""
        ws = await connect(self.url)
        self.addAsyncCleanup(ws.close)
        info = await self.recv(ws)
        self.assertEqual(without_session_id(info), CONNECTION_INFO)
        return ws

    async def recv(self, ws: ClientConnection) -> Any:
        return json.loads(await asyncio.wait_for(ws.recv(), timeout(2)))

    async def answer(self, ws: ClientConnection, field: str, prompt: str, value: str) -> None:
        """Expect the dialog to ask for ``field`` and answer it with ``value``."""
        ask = await self.recv(ws)
        ask_id = ask.pop("requestId")  # "input-1", "input-2", ... per connection
        shape = {"event": "input_request", "field": field, "prompt": prompt, "type": "string"}
        self.assertEqual(ask, {**shape, "_requestId": 0})
        await ws.send(json.dumps({"event": "input_response", "requestId": ask_id, "value": value}))

    async def test_ping(self) -> None:
        """Ping answers Pong!."""
        ws = await self.client()
        started = time.perf_counter()
        await ws.send(json.dumps({"event": "dispatch", "zKey": "^Ping"}))
        reply = await self.recv(ws)
        record_metric("ping_round_trip", (time.perf_counter() - started) * 1000, "ms")
        self.assertEqual(reply, {"result": {"message": "Pong!"}, "_requestId": 0})

    async def test_echo_returns_what_was_said(self) -> None:
        """Echo Test asks for a message and its function echoes it back."""
        ws = await self.client()
        await ws.send(json.dumps({"event": "dispatch", "zKey": "^Echo Test"}))
        await self.answer(ws, "message", "Say something", "hello, bridge")
        self.assertEqual(
            await self.recv(ws), {"result": {"echo": "hello, bridge"}, "_requestId": 0}
        )

    async def test_guestbook_needs_a_name(self) -> None:
        """Sign Guestbook with an empty name is refused with action_failed and a sentence."""
        ws = await self.client()
        await ws.send(json.dumps({"event": "dispatch", "zKey": "^Sign Guestbook"}))
        await self.answer(ws, "name", "Your name", "")
        await self.answer(ws, "city", "Your city", "Oslo")
        self.assertEqual(
            await self.recv(ws),
            {"error": "A guestbook entry needs a name.", "code": "action_failed", "_requestId": 0},
        )

    async def test_status(self) -> None:
        """Status raises a success display event first, then returns version and python."""
        ws = await self.client()
        await ws.send(json.dumps({"event": "dispatch", "zKey": "^Status"}))
        display, reply = await self.recv(ws), await self.recv(ws)
        self.assertEqual(
            display,
            {
                "event": "display",
                "display_event": "success",
                "data": {"content": "All subsystems are ready."},
                "_requestId": 0,
            },
        )
        python = reply["result"].pop("python")  # the server's interpreter, whichever it is
        self.assertRegex(python, r"^3\.\d+\.\d+$")
        self.assertEqual(reply, {"result": {"version": __version__}, "_requestId": 0})


MENU = """\
== Level1 ==
  1) Ping
  2) Echo Test
  3) Status
  4) Notice
  5) Sign Guestbook
  6) stop
"""


class TestLevel1InTheTerminal(zTestCase):
    def test_ping(self) -> None:
        """In the terminal, choosing 1 prints Pong! and the menu comes back; stop exits 0."""
        status, out = self.walk(APP / "zUI.level1.yaml", "1\nstop\n", zWorkspace=str(APP))
        self.assertEqual((status, out), (0, f"{MENU}> 1\nPong!\n{MENU}> stop\n"))
