"""zBifrost on its own sans-I/O adapter (``websocket.adapter: sansio``) serves exactly as on
websockets' asyncio server.

Every bridge test class of zBifrost_Integration, zBifrost_Hardening and zBifrost_Plugins
runs again here with ``adapter: sansio``, in the standard mode (classes named
``SansIO...``) and in fast mode on uvloop (``FastSansIO...``), so the whole protocol, its
error replies, its limits and its shutdown are checked against the new adapter. Then
what is new in it, on both adapters where both must agree: the replies to one read go
out in one write, reading pauses while the socket's write buffer is full and resumes
when it drains, and a refused handshake is the same bytes. (zBifrost_Protocol's tests
parse messages with no connection at all; zBifrost_Hostile_SansIO attacks a served
process on this adapter.)
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sys
import tempfile
import unittest
from types import ModuleType
from typing import Any

from zCLI import ConfigError, __version__, fast, load_config
from zCLI.bridge.sansio import READ_PAUSE_BYTES, SansIOConnection
from zTestSuite import requires_network, timeout
from zTestSuite.bridge import (
    AuthTestCase,
    BridgeTestCase,
    bridge_cases,
    masked_text_frame,
    raw_websocket,
)

from . import zBifrost_Hardening_Test, zBifrost_Integration_Test, zBifrost_Plugins_Test
from .zBifrost_Fast_Test import FastMode, requires_fast

RERUN: tuple[ModuleType, ...] = (
    zBifrost_Integration_Test,
    zBifrost_Hardening_Test,
    zBifrost_Plugins_Test,
)


class SansIO:
    """Mixed into a BridgeTestCase: its bridges on the sans-I/O adapter."""

    adapter = "sansio"


def variants(case: type[BridgeTestCase]) -> list[type[BridgeTestCase]]:
    """``case`` on the sans-I/O adapter (SansIO<case>), and so in fast mode (FastSansIO<case>)."""
    standard = f"SansIO{case.__name__}"
    fast = f"FastSansIO{case.__name__}"
    return [
        type(standard, (SansIO, case), {"__module__": __name__, "__qualname__": standard}),
        requires_fast(
            type(fast, (FastMode, SansIO, case), {"__module__": __name__, "__qualname__": fast})
        ),
    ]


def load_tests(
    loader: unittest.TestLoader, tests: unittest.TestSuite, pattern: str | None
) -> unittest.TestSuite:
    """This module's own tests, then the bridge classes of RERUN on the sans-I/O adapter."""
    suite = unittest.TestSuite(tests)
    for case in bridge_cases(loader, RERUN):
        for variant in variants(case):
            suite.addTests(loader.loadTestsFromTestCase(variant))
    return suite


class CountedWrites:
    """A transport that counts the ``write`` calls made on it and passes everything on:
    asyncio's (or uvloop's) transport seen from our adapter, for a test to count."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.inner = transport
        self.writes: list[int] = []

    def write(self, data: bytes) -> None:
        self.writes.append(len(data))
        self.inner.write(data)

    def writelines(self, chunks: Any) -> None:
        self.write(b"".join(chunks))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def pipelined() -> tuple[bytes, list[dict[str, Any]]]:
    """16 requests for one write from the client (cached keys, full dispatches, the event
    table mixed) and their replies, in order."""
    requests: list[dict[str, Any]] = []
    expected: list[dict[str, Any]] = []
    for n in range(16):
        if n % 4 == 3:
            requests.append({"event": "ping", "_requestId": n})
            expected.append({"event": "pong", "_requestId": n})
        elif n % 4 == 2:
            requests.append({"event": "dispatch", "zKey": "Echo", "_requestId": n})
            expected.append({"result": {"message": "echoed"}, "_requestId": n})
        else:
            requests.append({"event": "dispatch", "zKey": "^Ping", "_requestId": n})
            expected.append({"result": {"message": "Pong!"}, "_requestId": n})
    return b"".join(masked_text_frame(json.dumps(r)) for r in requests), expected


async def read_frames(reader: asyncio.StreamReader, count: int) -> list[str]:
    """``count`` unmasked text frames from the server, as text."""
    texts = []
    for _ in range(count):
        first, length = await asyncio.wait_for(reader.readexactly(2), timeout(2))
        if first != 0x81:
            raise AssertionError(f"not a final text frame: {first:#x}")
        if length == 126:
            length = int.from_bytes(await reader.readexactly(2), "big")
        texts.append((await reader.readexactly(length)).decode())
    return texts


class TestOneWritePerRead(SansIO, BridgeTestCase):
    async def counted(self, z: Any) -> CountedWrites:
        """The server side of the one connection, its transport counting writes."""
        await self.wait_until(lambda: len(z.comm.clients) == 1)
        ws = next(iter(z.comm.clients)).ws
        self.assertIsInstance(ws, SansIOConnection)
        counted = CountedWrites(ws.transport)
        ws.transport = counted
        return counted

    @requires_network
    async def test_replies_to_one_read_go_out_in_one_write(self) -> None:
        """16 pipelined requests in one read from a raw socket: their 16 replies, in
        order and exact, are one transport.write, and the client reads them all."""
        z = await self.start()
        reader, writer = await raw_websocket(z.comm.port)
        self.addCleanup(writer.close)
        (info,) = await read_frames(reader, 1)
        self.assertEqual(json.loads(info)["event"], "connection_info")
        counted = await self.counted(z)
        frames, expected = pipelined()
        writer.write(frames)
        replies = await read_frames(reader, 16)
        self.assertEqual(replies, [self.written(e) for e in expected])
        self.assertEqual(counted.writes, [sum(len(r) + 2 for r in replies)])

    @requires_network
    async def test_a_ping_and_replies_in_one_read_share_the_write(self) -> None:
        """A ping frame between two requests: its pong goes out first (websockets' protocol
        answers it while it parses the read), then both replies, all in one write."""
        z = await self.start()
        reader, writer = await raw_websocket(z.comm.port)
        self.addCleanup(writer.close)
        await read_frames(reader, 1)
        counted = await self.counted(z)
        request = masked_text_frame(json.dumps({"event": "ping", "_requestId": 1}))
        ping = bytes([0x89, 0x80 | 2]) + b"\x00\x00\x00\x00" + b"hi"
        writer.write(request + ping + request)
        pong = self.written({"event": "pong", "_requestId": 1}).encode()
        reply = b"\x81" + bytes([len(pong)]) + pong
        expected = b"\x8a\x02hi" + reply + reply
        received = await asyncio.wait_for(reader.readexactly(len(expected)), timeout(2))
        self.assertEqual(received, expected)
        self.assertEqual(counted.writes, [len(expected)])


class TestBackpressure(SansIO, BridgeTestCase):
    @requires_network
    async def test_reading_pauses_while_the_write_buffer_is_full(self) -> None:
        """A peer that floods pings and reads nothing: once the server's write buffer holds
        more than READ_PAUSE_BYTES of pongs, it stops reading; when the peer reads
        again, it resumes, and every pong arrives."""
        z = await self.start()
        reader, writer = await raw_websocket(z.comm.port)
        self.addCleanup(writer.close)
        await read_frames(reader, 1)
        await self.wait_until(lambda: len(z.comm.clients) == 1)
        ws = next(iter(z.comm.clients)).ws
        assert isinstance(ws, SansIOConnection)
        # small socket buffers on both ends, so a few hundred KB of pongs fill them
        ws.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        writer.transport.pause_reading()  # the client reads nothing
        payload = b"p" * 125
        ping = bytes([0x89, 0x80 | 125]) + b"\x00\x00\x00\x00" + payload
        sent = 8000  # about 1 MB of pongs: past READ_PAUSE_BYTES and both socket buffers
        writer.write(ping * sent)
        await self.wait_until(
            lambda: (
                not ws.transport.is_reading()
                and ws.transport.get_write_buffer_size() > READ_PAUSE_BYTES
            ),
            units=5,
        )
        writer.transport.resume_reading()
        pong = bytes([0x8A, 125]) + payload
        await asyncio.wait_for(reader.readexactly(len(pong) * sent), timeout(20))
        await self.wait_until(lambda: ws.transport.is_reading())
        writer.write(masked_text_frame('{"event": "ping", "_requestId": 1}'))
        (reply,) = await read_frames(reader, 1)
        self.assertEqual(reply, self.written({"event": "pong", "_requestId": 1}))

    @requires_network
    async def test_messages_wait_in_order_while_a_sign_in_runs(self) -> None:
        """Requests sent right behind a login wait for it and are answered in order."""
        z = await self.start()
        z.auth.add_user("ada", "s3cret", "admin")
        ws = await self.client(z, compression=None)
        login = {"event": "login", "username": "ada", "password": "s3cret", "_requestId": 0}
        frames = [masked_text_frame(json.dumps(login))]
        frames += [
            masked_text_frame(json.dumps({"event": "ping", "_requestId": n})) for n in (1, 2)
        ]
        ws.transport.write(b"".join(frames))
        first = await self.recv(ws, units=10)
        self.assertEqual((first["_requestId"], first["result"]["user"]), (0, "ada"))
        self.assertEqual(await self.recv(ws), {"event": "pong", "_requestId": 1})
        self.assertEqual(await self.recv(ws), {"event": "pong", "_requestId": 2})


class TestAdapterSetting(unittest.TestCase):
    def test_unset_adapter_follows_fast_mode(self) -> None:
        """websocket.adapter unset (or auto) is sansio in fast mode and asyncio otherwise; a
        value given wins, from the environment too; any other value is refused by name."""
        folder = tempfile.TemporaryDirectory(prefix="ztest-adapter-")
        self.addCleanup(folder.cleanup)

        def adapter(environ: dict[str, str] | None = None, **websocket: Any) -> str | None:
            spark = {"zWorkspace": folder.name, "websocket": websocket}
            return load_config(spark, environ=environ or {}).websocket.adapter

        table: list[tuple[dict[str, Any], str]] = [
            ({"fast": False}, "asyncio"),
            ({"fast": False, "adapter": "auto"}, "asyncio"),
            ({"fast": False, "adapter": "sansio"}, "sansio"),
        ]
        if fast.available():
            table += [
                ({"fast": True}, "sansio"),
                ({"fast": True, "adapter": "asyncio"}, "asyncio"),
                ({}, "sansio"),  # fast mode is on when the extra is installed
            ]
        for websocket, expected in table:
            with self.subTest(**websocket):
                self.assertEqual(adapter(**websocket), expected)
        self.assertEqual(adapter({"ZCLI_WEBSOCKET_ADAPTER": "sansio"}, fast=False), "sansio")
        with self.assertRaises(ConfigError) as caught:
            adapter(adapter="uvloop")
        self.assertEqual(
            str(caught.exception),
            "1 configuration problem: zSpark websocket.adapter: expected one of asyncio, "
            "sansio or auto, got 'uvloop'.",
        )


async def refusal(port: int, request: bytes) -> bytes:
    """Everything the server sends to ``request`` until it closes, with the Date header's
    value masked."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    try:
        data = await asyncio.wait_for(reader.read(), timeout(2))
    finally:
        writer.close()
    return re.sub(rb"Date: [^\r]+\r\n", b"Date: *\r\n", data)


HANDSHAKE = (
    "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Upgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def refused(status: str, body: str, servers: int = 2, extra: str = "") -> bytes:
    """The bytes of a refused handshake as both adapters write it (zBifrost's Server
    header is added by the refusal and again by the handshake, as websockets does)."""
    server = f"Server: zBifrost/{__version__}\r\n"
    return (
        f"HTTP/1.1 {status}\r\nDate: *\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"{extra}{server * servers}\r\n{body}"
    ).encode()


class TestRefusalsAreTheSameBytes(AuthTestCase):
    """On the asyncio adapter; SansIOTestRefusalsAreTheSameBytes runs them on sansio."""

    @requires_network
    async def test_refused_handshakes_byte_for_byte(self) -> None:
        """Two Origins, a foreign Origin, the connection limit and a request that is no
        WebSocket handshake get these exact responses, then the end of the stream."""
        z = await self.start_auth(websocket={"max_connections": 1})
        port = z.comm.port
        table = [
            (
                "two Origin headers",
                HANDSHAKE.format(extra="Origin: http://127.0.0.1\r\nOrigin: http://x\r\n"),
                refused("403 Forbidden", "Only one Origin header is allowed.\n"),
            ),
            (
                "a foreign Origin",
                HANDSHAKE.format(extra="Origin: http://evil.example\r\n"),
                refused("403 Forbidden", "Origin not allowed.\n"),
            ),
            (
                "no Upgrade header",
                "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                refused(
                    "426 Upgrade Required",
                    "Failed to open a WebSocket connection: missing Connection header.\n"
                    "\nYou cannot access a WebSocket server directly with a browser. "
                    "You need a WebSocket client.\n",
                    servers=1,
                    extra="Upgrade: websocket\r\n",
                ),
            ),
        ]
        with self.assertLogs("zCLI.zBifrost", "WARNING"):
            for label, request, expected in table:
                with self.subTest(label):
                    self.assertEqual(await refusal(port, request.encode()), expected)
            first = await self.connect(z)  # the one connection allowed, signing in
            self.assertEqual(
                await refusal(port, HANDSHAKE.format(extra="").encode()),
                refused("503 Service Unavailable", "Too many connections.\n"),
            )
        await first.close()


class SansIOTestRefusalsAreTheSameBytes(SansIO, TestRefusalsAreTheSameBytes):
    pass


@requires_fast
class FastSansIOTestRefusalsAreTheSameBytes(FastMode, SansIO, TestRefusalsAreTheSameBytes):  # type: ignore[misc]
    pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(unittest.main())
