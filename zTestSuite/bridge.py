"""Harness for tests that talk to a real zBifrost: servers on port 0, real clients.

``BridgeTestCase`` starts a zCLI's bridge in the test's event loop through the same
``start_websocket`` a user calls, connects real ``websockets`` clients, and reads JSON
with timeouts. Plugins use it for their own bridge suites.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import textwrap
import time
import unittest
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jwt
import websockets
from websockets.asyncio.client import ClientConnection

from zCLI import __version__, strict_json, zCLI

from .harness import timeout, wait_until

__all__ = [
    "FEATURES",
    "PING_ZUI",
    "AuthTestCase",
    "BridgeTestCase",
    "bridge_cases",
    "expected_info",
    "masked_text_frame",
    "raw_websocket",
    "without_session_id",
]

FEATURES = [
    "auth",
    "connection_info",
    "dispatch",
    "input_response",
    "login",
    "logout",
    "menu",
    "ping",
]


def expected_info(
    user: str = "anonymous",
    role: str = "guest",
    authenticated: bool = False,
    block: str = "Main",
    features: list[str] | None = None,
    zVaFile: str = "zUI.app.yaml",  # noqa: N803 (the protocol's name)
) -> dict:
    """connection_info as the server must send it, with the session id left out."""
    return {
        "event": "connection_info",
        "data": {
            "server_version": __version__,
            "features": features or FEATURES,
            "auth": {"authenticated": authenticated, "user": user, "role": role},
            "session": {"block": block, "zVaFile": zVaFile},
        },
    }


def without_session_id(message: dict) -> dict:
    message["data"]["session"].pop("id")
    return message


HANDSHAKE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def raw_websocket(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket opened by hand on a plain TCP stream, for a peer that misbehaves
    below what a client library allows (never reads, never answers pings)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HANDSHAKE)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout(2))
    if not head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"):
        writer.close()
        raise AssertionError(f"the handshake was refused: {head!r}")
    return reader, writer


def masked_text_frame(text: str) -> bytes:
    """One client-to-server text frame (RFC 6455: clients mask; a zero mask is valid)."""
    payload = text.encode()
    length = len(payload)
    if length < 126:
        header = bytes([0x81, 0x80 | length])
    elif length < 65536:
        header = bytes([0x81, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([0x81, 0x80 | 127]) + length.to_bytes(8, "big")
    return header + b"\x00\x00\x00\x00" + payload


PING_ZUI = """
Main:
  ~Root*: [^Ping, Echo, Settings]
  ^Ping: Pong!
  Echo: echoed
  Settings:
    Menu*: [^Theme]
    ^Theme: dark
"""


class BridgeTestCase(unittest.IsolatedAsyncioTestCase):
    """A temporary workspace, bridges that stop at cleanup, and JSON helpers. ``fast``:
    the bridges ``make`` builds read and write JSON through orjson (zBifrost's fast mode;
    the zBifrost_Fast suite also runs them on uvloop); off unless a test class turns it on.
    ``adapter``: the bridges' ``websocket.adapter`` (zBifrost_SansIO reruns them on
    ``sansio``)."""

    zui = PING_ZUI
    fast = False
    adapter = "asyncio"

    async def asyncSetUp(self) -> None:
        # IsolatedAsyncioTestCase turns on asyncio debug mode, which slows bulk socket
        # I/O tenfold; these tests measure and push real traffic, so run at full speed.
        asyncio.get_running_loop().set_debug(False)
        self._tmp = tempfile.TemporaryDirectory(prefix="ztest-bridge-")
        self.addCleanup(self._tmp.cleanup)
        self.workspace = Path(self._tmp.name)
        self.write("zUI.app.yaml", self.zui)

    def write(self, name: str, text: str) -> Path:
        path = self.workspace / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    def make(self, **spark: Any) -> zCLI:
        """A zCLI for the workspace app; websocket defaults to port 0, auth off."""
        websocket = {
            "port": 0,
            "require_auth": False,
            "fast": self.fast,
            "adapter": self.adapter,
            **spark.pop("websocket", {}),
        }
        base = {"zWorkspace": str(self.workspace), "zVaFile": "@.zUI.app", "websocket": websocket}
        return zCLI({**base, **spark})

    async def start(self, z: zCLI | None = None, **spark: Any) -> zCLI:
        """Start the bridge the way the seed report does; stop it at cleanup."""
        z = z or self.make(**spark)
        ready = asyncio.Event()
        task = asyncio.create_task(z.comm.start_websocket(ready, walker=z.walker))
        waiter = asyncio.create_task(ready.wait())
        done, _ = await asyncio.wait(
            {task, waiter}, timeout=timeout(5), return_when=asyncio.FIRST_COMPLETED
        )
        if task in done:
            waiter.cancel()
            task.result()  # raises what start raised
        self.assertIn(waiter, done, "the bridge did not become ready in time")

        async def stop() -> None:
            task.cancel()
            await task
            z.close()

        self.addAsyncCleanup(stop)
        return z

    def written(self, payload: Any) -> str:
        """The exact text the bridge writes for ``payload`` (orjson's in fast mode)."""
        return strict_json.fast_dumps(payload) if self.fast else json.dumps(payload)

    async def connect(self, z: zCLI, path: str = "/", **kwargs: Any) -> ClientConnection:
        ws = await websockets.connect(f"ws://127.0.0.1:{z.comm.port}{path}", **kwargs)
        self.addAsyncCleanup(ws.close)
        return ws

    async def client(self, z: zCLI, **kwargs: Any) -> ClientConnection:
        """Connect and consume connection_info."""
        ws = await self.connect(z, **kwargs)
        info = await self.recv(ws)
        self.assertEqual(info["event"], "connection_info")
        return ws

    async def recv(self, ws: ClientConnection, units: float = 2) -> Any:
        return json.loads(await asyncio.wait_for(ws.recv(), timeout(units)))

    async def request(self, ws: ClientConnection, payload: dict[str, Any]) -> Any:
        return await self.request_raw(ws, json.dumps(payload))

    async def request_raw(self, ws: ClientConnection, frame: str | bytes) -> Any:
        await ws.send(frame)
        return await self.recv(ws)

    async def assertClosed(self, ws: ClientConnection, code: int, reason: str) -> None:
        """The server closes ``ws`` with exactly this code and reason."""
        await asyncio.wait_for(ws.wait_closed(), timeout(3))
        assert ws.close_code is not None
        self.assertEqual((ws.close_code, ws.close_reason), (code, reason))

    async def assertQuiet(self, ws: ClientConnection) -> None:
        """Nothing is waiting for ``ws``: a ping now is answered by the very next frame."""
        self.assertEqual(await self.request(ws, {"event": "ping"}), {"event": "pong"})

    async def assertDropped(self, reader: asyncio.StreamReader) -> None:
        """The server closed this raw TCP connection (FIN, or RST when it aborted with
        bytes of ours still unread) and sent nothing before."""
        try:
            data = await asyncio.wait_for(reader.read(), timeout(2))
        except ConnectionResetError:
            data = b""
        self.assertEqual(data, b"")

    async def wait_until(self, condition: Any, units: float = 3) -> None:
        """Wait for ``condition()`` to be true, yielding to the loop between looks."""
        await wait_until(condition, units)


class AuthTestCase(BridgeTestCase):
    """A bridge that requires sign-in, with the user ada (password s3cret, admin)."""

    async def start_auth(self, **spark: Any) -> zCLI:
        """A bridge with require_auth on (other websocket keys may be given) and ada."""
        websocket = {"require_auth": True, **spark.pop("websocket", {})}
        z = await self.start(websocket=websocket, **spark)
        z.auth.add_user("ada", "s3cret", "admin")
        return z

    def forge(self, z: zCLI, secret: str | None = None, **claims: Any) -> str:
        """A token signed with the server's secret (or ``secret``), claims overridable."""
        now = time.time()
        body = {
            "sub": "ada",
            "role": "admin",
            "jti": "j1",
            "iat": int(now),
            "exp": now + 60,
            **claims,
        }
        return jwt.encode(body, secret or z.auth.secret, algorithm="HS256")


def bridge_cases(
    loader: unittest.TestLoader, modules: Iterable[ModuleType]
) -> Iterator[type[BridgeTestCase]]:
    """The ``BridgeTestCase`` classes with tests that ``modules`` define (not import),
    for a suite that runs them again in another mode (fast, another adapter)."""
    for module in modules:
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BridgeTestCase)
                and value.__module__ == module.__name__
                and loader.getTestCaseNames(value)
            ):
                yield value
