"""zTunnel end to end on real sockets: a server and two clients in-process (one test
runs them as ``zcli tunnel`` processes), real TCP users and backends, raw WebSocket
peers for the hostile cases. Half-close, reset, refused dials, link loss, auth, TLS,
flow control per stream, failover."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import socket
import ssl
import struct
import sys
import tempfile
import time
import unittest
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidMessage

from zCLI.apps.tunnel.frames import HEADER, FrameType
from zCLI.apps.tunnel.tests.support import (
    EchoServer,
    Ports,
    Tunnels,
    free_ports,
    make_certificates,
    read_until_closed,
    wait_for,
    write_configs,
)
from zTestSuite import ServerProcess, record_metric, requires_network, timeout

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def frame(kind: FrameType, stream_id: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, stream_id) + payload


def hello(client_id: int, token: str | None = None) -> bytes:
    data: dict[str, Any] = {"version": 1, "clientId": client_id}
    if token is not None:
        data["token"] = token
    return frame(FrameType.HELLO, 0, json.dumps(data).encode())


async def refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    writer.close()
    return False


class TunnelCase(unittest.IsolatedAsyncioTestCase):
    """Client 1 active, client 2 standby. Tunnel 1 of each side dials an echo server;
    tunnel 2 dials ``self.backend_ports[...]``, where a test may start its own backend."""

    token: str | None = None
    tuning: dict[str, Any] | None = None
    scheme = "ws"
    exchange: dict[str, dict[str, Any]] | None = None
    close_secs = 1.0

    async def asyncSetUp(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="ztunnel-")
        self.addCleanup(self._tmp.cleanup)
        self.folder = Path(self._tmp.name)
        self.echo = await EchoServer().start()
        self.addAsyncCleanup(self.echo.close)
        self.ports = Ports()
        spare = free_ports(3)
        self.backend_ports = {
            "server-tun2": spare[0],
            "client1-tun2": spare[1],
            "client2-tun2": spare[2],
        }
        self.paths = write_configs(
            self.folder,
            self.ports,
            {
                "server-tun1": self.echo.port,
                "client1-tun1": self.echo.port,
                "client2-tun1": self.echo.port,
                **self.backend_ports,
            },
            scheme=self.scheme,
            token=self.token,
            close_secs=self.close_secs,
            tuning=self.tuning,
            exchange=self.exchange(self.folder) if callable(self.exchange) else self.exchange,
        )
        await self.start_tunnels()

    async def start_tunnels(self) -> None:
        self.tunnels = Tunnels(self.paths)
        self.addAsyncCleanup(self.tunnels.stop)
        await self.tunnels.start(1, 2)
        self.assertEqual(self.tunnels.server.roles.active, 1)

    async def backend(self, name: str, handler: Handler) -> None:
        server = await asyncio.start_server(handler, "127.0.0.1", self.backend_ports[name])
        self.addAsyncCleanup(server.wait_closed)
        self.addCleanup(server.close)

    async def open(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        self.addCleanup(writer.close)
        return reader, writer

    async def echoes(self, port: int, data: bytes) -> None:
        reader, writer = await self.open(port)
        writer.write(data)
        async with asyncio.timeout(timeout(5)):
            self.assertEqual(await reader.readexactly(len(data)), data)
        writer.close()


@requires_network
class DataPathTest(TunnelCase):
    async def test_echo_both_ways(self) -> None:
        """Bytes go server-to-client and client-to-server tunnels exactly."""
        payload = bytes(range(256)) * 400
        await self.echoes(self.ports.server_tun1, payload)
        await self.echoes(self.ports.client1_tun1, payload)
        self.assertEqual(self.echo.accepted, 2)

    async def test_data_before_the_dial_arrives_in_order(self) -> None:
        """What the user writes right after connecting (before the dial completes) is
        kept and delivered in order."""
        reader, writer = await self.open(self.ports.client1_tun1)
        pieces = [bytes([n]) * 4096 for n in range(256)]
        for piece in pieces:
            writer.write(piece)
        async with asyncio.timeout(timeout(5)):
            self.assertEqual(await reader.readexactly(4096 * 256), b"".join(pieces))

    async def test_half_close_from_the_user(self) -> None:
        """The user's FIN reaches the backend as EOF; the backend's answer still flows
        back, then its own FIN."""

        async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            data = await read_until_closed(reader)
            writer.write(b"got %d bytes" % len(data))
            writer.close()

        for name, port in (
            ("server-tun2", self.ports.client1_tun2),
            ("client1-tun2", self.ports.server_tun2),
        ):
            with self.subTest(backend=name):
                await self.backend(name, count)
                reader, writer = await self.open(port)
                writer.write(b"q" * 300_000)
                writer.write_eof()
                async with asyncio.timeout(timeout(5)):
                    self.assertEqual(await read_until_closed(reader), b"got 300000 bytes")

    async def test_half_close_from_the_backend(self) -> None:
        """The backend's FIN reaches the user as EOF while the user can still send."""
        received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"banner")
            writer.write_eof()
            received.set_result(await read_until_closed(reader))
            writer.close()

        await self.backend("server-tun2", banner)
        reader, writer = await self.open(self.ports.client1_tun2)
        async with asyncio.timeout(timeout(5)):
            self.assertEqual(await read_until_closed(reader), b"banner")
            writer.write(b"after the backend's FIN")
            writer.write_eof()
            self.assertEqual(await received, b"after the backend's FIN")

    async def test_reset_is_not_a_clean_close(self) -> None:
        """A backend that closes cleanly gives the user EOF; one that resets gives the
        user ConnectionResetError."""

        async def close_or_reset(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            how = await reader.readexactly(5)
            if how == b"reset":
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
            else:
                writer.close()

        await self.backend("server-tun2", close_or_reset)
        reader, writer = await self.open(self.ports.client1_tun2)
        writer.write(b"close")
        async with asyncio.timeout(timeout(5)):
            self.assertEqual(await reader.read(100), b"")
        reader, writer = await self.open(self.ports.client1_tun2)
        writer.write(b"reset")
        async with asyncio.timeout(timeout(5)):
            with self.assertRaises(ConnectionResetError):
                await reader.read(100)

    async def test_refused_backend_resets_promptly(self) -> None:
        """With nothing listening at the backend, the user's connection is reset at once,
        both ways."""
        for port in (self.ports.client1_tun2, self.ports.server_tun2):
            with self.subTest(port=port):
                reader, _ = await self.open(port)
                started = time.monotonic()
                async with asyncio.timeout(timeout(1)):
                    with self.assertRaises(ConnectionResetError):
                        await reader.read(100)
                record_metric(
                    f"refused dial reset ({port})", (time.monotonic() - started) * 1000, "ms"
                )

    async def test_link_loss_resets_streams_and_client_reconnects(self) -> None:
        """When client 1's WebSocket drops, its streams are reset, client 2 becomes
        active, and client 1 reconnects as standby."""
        reader, writer = await self.open(self.ports.server_tun1)
        writer.write(b"ping")
        self.assertEqual(await reader.readexactly(4), b"ping")
        old = self.tunnels.server.pumps[1]
        old.ws.transport.abort()
        async with asyncio.timeout(timeout(5)):
            with self.assertRaises(ConnectionResetError):
                await reader.read(100)
        await wait_for(lambda: self.tunnels.server.pumps.get(1) not in (None, old), timeout(5))
        self.assertEqual(self.tunnels.server.roles.active, 2)
        await wait_for(
            lambda: (
                self.tunnels.clients[1].pump is not None
                and self.tunnels.clients[1].pump.link.greeted
            )
        )
        self.assertFalse(self.tunnels.clients[1].active)
        await self.echoes(self.ports.server_tun1, b"after the loss")

    async def test_slow_reader_slows_only_its_own_stream(self) -> None:
        """A backend that does not read holds back its own stream only: another stream
        echoes meanwhile, the tunnel holds at most its window, and nothing is lost."""
        go = asyncio.Event()
        digest: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

        async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await go.wait()
            data = await read_until_closed(reader)
            digest.set_result((len(data), hashlib.sha256(data).hexdigest()))
            writer.close()

        await self.backend("server-tun2", sink)
        payload = bytes(range(256)) * (32 * 4096)  # 32 MiB
        _, slow = await self.open(self.ports.client1_tun2)
        slow.write(payload)
        await self.echoes(self.ports.client1_tun1, b"f" * 2_000_000)
        held = self.tunnels.server.budget.held
        self.assertLessEqual(held, 65536)
        self.assertGreater(slow.transport.get_write_buffer_size(), 0)
        go.set()
        slow.write_eof()
        async with asyncio.timeout(timeout(15)):
            self.assertEqual(await digest, (len(payload), hashlib.sha256(payload).hexdigest()))

    tuning = {"windowBytes": 65536}


@requires_network
class FailoverTest(TunnelCase):
    async def test_probe_changes_nothing(self) -> None:
        """A connect that sends nothing to the standby's port is carried and closed, and
        client 1 stays active."""
        _, writer = await self.open(self.ports.client2_tun1)
        writer.close()
        await wait_for(lambda: self.echo.eofs == 1, timeout(5))
        self.assertEqual(self.tunnels.server.roles.active, 1)
        self.assertEqual(
            (self.tunnels.clients[1].active, self.tunnels.clients[2].active), (True, False)
        )

    async def test_first_data_on_the_standby_fails_over(self) -> None:
        """First data on client 2's port makes it active: the server's and client 1's
        ports close within 1 s and reopen after closeSecs; the trigger keeps working."""
        reader, writer = await self.open(self.ports.client2_tun1)
        writer.write(b"first")
        started = time.monotonic()
        self.assertEqual(await reader.readexactly(5), b"first")
        await wait_for(lambda: self.tunnels.server.roles.active == 2, timeout(1))
        for port in (self.ports.server_tun1, self.ports.server_tun2, self.ports.client1_tun1):
            self.assertTrue(await refused(port), f"port {port} is still open")
        closed = time.monotonic() - started
        self.assertLess(closed, 1.0)
        writer.write(b"second")
        self.assertEqual(await reader.readexactly(6), b"second")
        async with asyncio.timeout(timeout(3)):
            while await refused(self.ports.server_tun1):
                await asyncio.sleep(0.02)  # polling a port, as a user would
        reopened = time.monotonic() - started
        record_metric("failover: server ports reopened", reopened, "s")
        self.assertLess(abs(reopened - self.close_secs), 0.5)
        await self.echoes(self.ports.server_tun1, b"to client 2")
        self.assertEqual(self.tunnels.clients[2].active, True)
        async with asyncio.timeout(timeout(3)):
            while await refused(self.ports.client1_tun1):
                await asyncio.sleep(0.02)
        await self.echoes(self.ports.client1_tun1, b"back to client 1")
        await wait_for(lambda: self.tunnels.server.roles.active == 1, timeout(1))
        self.assertEqual(self.tunnels.server.roles.failovers, 2)


@requires_network
class AuthTest(TunnelCase):
    token = "the right token"

    async def test_wrong_token_is_refused_with_1008(self) -> None:
        """A HELLO with a wrong or missing token closes the WebSocket with 1008."""
        for given in ("a wrong token", None):
            with self.subTest(token=given):
                async with connect(f"ws://127.0.0.1:{self.ports.ws}") as ws:
                    await ws.send(hello(2, given))
                    with self.assertRaises(ConnectionClosedError):
                        await ws.recv()
                    self.assertEqual(
                        (ws.close_code, ws.close_reason), (1008, "client 2 gave a wrong token")
                    )
        self.assertEqual(self.tunnels.server.roles.connected, {1, 2})

    async def test_right_token_is_welcomed(self) -> None:
        """The clients of the suite, with the token, carry data."""
        await self.echoes(self.ports.server_tun1, b"authenticated")


@requires_network
class HostilePeerTest(TunnelCase):
    tuning = {"chunkBytes": 1024}

    async def hostile(self) -> Any:
        ws = await connect(f"ws://127.0.0.1:{self.ports.ws}", max_size=None)
        self.addAsyncCleanup(ws.close)
        await ws.send(hello(2))
        welcome = await ws.recv()
        self.assertEqual(welcome[:5], HEADER.pack(FrameType.WELCOME, 0))
        self.assertEqual(json.loads(welcome[5:]), {"active": False, "window": 134217728})
        return ws

    async def test_garbage_is_handled_and_others_undisturbed(self) -> None:
        """Unknown ids get RST, unknown tunnels OPEN_FAILED, and oversized, unknown,
        short or text frames close only that link with 1002; a stream of client 1
        keeps echoing throughout."""
        await self.tunnels.stop_client(2)
        reader, writer = await self.open(self.ports.server_tun1)

        async def undisturbed(text: bytes) -> None:
            writer.write(text)
            async with asyncio.timeout(timeout(3)):
                self.assertEqual(await reader.readexactly(len(text)), text)

        ws = await self.hostile()
        await ws.send(frame(FrameType.DATA, 77, b"who?"))
        self.assertEqual(await ws.recv(), frame(FrameType.RST, 77, b"unknown stream"))
        await ws.send(frame(FrameType.OPEN, 1, (5000).to_bytes(4, "big") + b"nope"))
        self.assertEqual(
            await ws.recv(), frame(FrameType.OPEN_FAILED, 1, b"no tunnel named 'nope' here")
        )
        await undisturbed(b"one")
        table = [
            (
                frame(FrameType.DATA, 3, b"x" * 1025),
                "A DATA frame of 1025 bytes is larger than the chunk size, 1024.",
            ),
            (b"\x09\x00\x00\x00\x00", "Frame type 0x09 is unknown."),
            (b"\x04\x00", "A frame of 2 bytes is shorter than the 5-byte header."),
            ("text", "A text message: zTunnel frames are binary messages."),
            (
                [b"\x04\x00\x00", b"\x00\x01x"],
                "A fragmented message: zTunnel frames are binary messages.",
            ),
            (frame(FrameType.DATA, 0, b"x"), "A DATA frame cannot use stream 0."),
        ]
        for message, reason in table:
            with self.subTest(reason=reason):
                ws = await self.hostile()
                await ws.send(message)
                with self.assertRaises(ConnectionClosedError):
                    await ws.recv()
                self.assertEqual((ws.close_code, ws.close_reason), (1002, reason))
                await undisturbed(b"still here")
        self.assertEqual(self.tunnels.server.roles.active, 1)


@requires_network
class LinkLifeTest(TunnelCase):
    tuning = {"pingIntervalSecs": 0.1, "pingTimeoutSecs": 0.2}

    async def test_no_client_means_reset_at_once(self) -> None:
        """With no client connected, a connection to a server port is reset at once."""
        await self.tunnels.stop_client(1)
        await self.tunnels.stop_client(2)
        self.assertIsNone(self.tunnels.server.roles.active)
        reader, _ = await self.open(self.ports.server_tun1)
        async with asyncio.timeout(timeout(1)):
            with self.assertRaises(ConnectionResetError):
                await reader.read(100)

    async def test_client_without_link_resets_at_once(self) -> None:
        """A client whose link is down still listens, and resets what it accepts."""
        await self.tunnels.server.stop()
        client = self.tunnels.clients[1]
        await wait_for(lambda: client.pump is None, timeout(3))
        reader, _ = await self.open(self.ports.client1_tun1)
        async with asyncio.timeout(timeout(1)):
            with self.assertRaises(ConnectionResetError):
                await reader.read(100)

    async def test_newer_link_replaces_older(self) -> None:
        """A second link with the same clientId closes the first with 1000."""
        await self.tunnels.stop_client(2)
        first = await connect(f"ws://127.0.0.1:{self.ports.ws}")
        self.addAsyncCleanup(first.close)
        await first.send(hello(2))
        self.assertEqual(
            await first.recv(),
            frame(FrameType.WELCOME, 0, b'{"active": false, "window": 134217728}'),
        )
        second = await connect(f"ws://127.0.0.1:{self.ports.ws}")
        self.addAsyncCleanup(second.close)
        await second.send(hello(2))
        self.assertEqual(
            await second.recv(),
            frame(FrameType.WELCOME, 0, b'{"active": false, "window": 134217728}'),
        )
        with self.assertRaises(ConnectionClosedOK):
            await first.recv()
        self.assertEqual((first.close_code, first.close_reason), (1000, "replaced by a newer link"))
        self.assertEqual(self.tunnels.server.roles.connected, {1, 2})

    async def test_silent_peer_is_dropped_by_keepalive(self) -> None:
        """A peer that stops answering pings loses its link after the ping timeout."""
        await self.tunnels.stop_client(2)
        ws = await connect(f"ws://127.0.0.1:{self.ports.ws}", ping_interval=None, close_timeout=0.1)
        self.addAsyncCleanup(ws.close)
        await ws.send(hello(2))
        await ws.recv()
        self.assertEqual(self.tunnels.server.roles.connected, {1, 2})
        ws.transport.pause_reading()  # no more pongs
        started = time.monotonic()
        await wait_for(lambda: self.tunnels.server.roles.connected == {1}, timeout(3))
        self.assertLess(time.monotonic() - started, 1.0)
        await self.echoes(self.ports.server_tun1, b"client 1 unaffected")


@requires_network
class MemoryCapTest(TunnelCase):
    # a window under the cap: the stuck stream alone can never hold the whole cap (with
    # window = cap it sometimes did, and starved the other stream for good)
    tuning = {"windowBytes": 3 << 20, "memoryCapBytes": 4 << 20}

    async def test_cap_throttles_with_a_log_line(self) -> None:
        """Over the process's cap, a stream's credit waits (one WARNING naming the tunnel
        and the stream) until the total drops; every byte arrives."""
        go = [asyncio.Event(), asyncio.Event()]
        sunk: list[asyncio.Future[int]] = [asyncio.get_running_loop().create_future() for _ in go]

        async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            index = sinks.pop(0)  # the first connection is the stuck one
            await go[index].wait()
            sunk[index].set_result(len(await read_until_closed(reader)))
            writer.close()

        sinks = [0, 1]
        await self.backend("server-tun2", sink)
        server = self.tunnels.server
        _, stuck = await self.open(self.ports.client1_tun2)
        stuck.write(b"s" * 32_000_000)
        await wait_for(lambda: server.budget.held >= 2 << 20, timeout(10))
        with self.assertLogs("zCLI.apps.tunnel", "WARNING") as logs:
            _, second = await self.open(self.ports.client1_tun2)
            second.write(b"t" * 32_000_000)
            second.write_eof()
            await wait_for(
                lambda: server.budget.over or any("throttled" in line for line in logs.output),
                timeout(10),
            )
            go[1].set()
            async with asyncio.timeout(timeout(15)):
                self.assertEqual(await sunk[1], 32_000_000)
        # one line per stream that was throttled: stream 3 surely; the stuck stream 1
        # too when its bytes reached its socket while the total was over the cap
        throttled = [line for line in logs.output if "throttled" in line]
        streams = [line.split(" stream ", 1)[1].split(":", 1)[0] for line in throttled]
        self.assertIn("3", streams, logs.output)
        self.assertEqual(sorted(streams), sorted(set(streams)), logs.output)
        for line in throttled:
            self.assertRegex(
                line,
                r"^WARNING:zCLI.apps.tunnel:tunnel c2s-tun2 stream [13]: throttled, the "
                r"process holds \d+ bytes, over the memory cap of 4194304$",
            )
        go[0].set()
        stuck.write_eof()
        async with asyncio.timeout(timeout(15)):
            self.assertEqual(await sunk[0], 32_000_000)


def _tls_exchange(
    mutual: bool, pin: str | None = None
) -> Callable[[Path], dict[str, dict[str, Any]]]:
    def exchange(folder: Path) -> dict[str, dict[str, Any]]:
        certs = make_certificates(folder)
        server: dict[str, Any] = {"tlsBundleFilePath": str(certs["server"])}
        if mutual:
            server.update(
                enableMutualTLS=True, mutualTLSTrustedCACertificateBundleFilePath=str(certs["ca"])
            )
        if pin:
            server["mutualTLSTrustedPeerCertificateBundleFilePath"] = str(certs[pin])
        clients = {}
        for name in ("client1", "client2"):
            client: dict[str, Any] = {
                "mutualTLSTrustedCACertificateBundleFilePath": str(certs["ca"])
            }
            if mutual:
                client.update(enableMutualTLS=True, tlsBundleFilePath=str(certs[name]))
            clients[name] = client
        return {"server": server, **clients}

    return exchange


@requires_network
class TlsTest(TunnelCase):
    scheme = "wss"
    exchange = staticmethod(_tls_exchange(mutual=False))  # type: ignore[assignment]

    async def test_wss_carries_data(self) -> None:
        """Over wss:// with the server's certificate verified by the clients' CA."""
        self.assertIsNotNone(self.tunnels.server.pumps[1].ws.transport.get_extra_info("ssl_object"))
        await self.echoes(self.ports.server_tun1, b"over TLS")
        await self.echoes(self.ports.client2_tun1, b"over TLS too")

    async def test_untrusted_server_is_refused(self) -> None:
        """A client that does not trust the server's CA does not connect."""
        context = ssl.create_default_context()
        with self.assertRaises(ssl.SSLCertVerificationError):
            async with connect(f"wss://127.0.0.1:{self.ports.ws}", ssl=context):
                pass


@requires_network
class MutualTlsTest(TunnelCase):
    scheme = "wss"
    exchange = staticmethod(_tls_exchange(mutual=True))  # type: ignore[assignment]

    async def test_mutual_tls_carries_data(self) -> None:
        """Both clients present certificates signed by the CA the server trusts."""
        await self.echoes(self.ports.server_tun1, b"mutual")
        await self.echoes(self.ports.client1_tun1, b"mutual too")

    async def test_client_without_trusted_certificate_is_refused(self) -> None:
        """A client whose certificate another CA signed never gets a WebSocket."""
        context = ssl.create_default_context(cafile=str(self.folder / "ca.pem"))
        context.load_cert_chain(self.folder / "stranger.pem")
        with self.assertRaises(InvalidMessage) as caught:
            async with connect(f"wss://127.0.0.1:{self.ports.ws}", ssl=context) as ws:
                await ws.recv()
        self.assertEqual(str(caught.exception), "did not receive a valid HTTP response")
        self.assertEqual(self.tunnels.server.roles.connected, {1, 2})


@requires_network
class PinnedPeerTest(TunnelCase):
    scheme = "wss"
    exchange = staticmethod(_tls_exchange(mutual=True, pin="client1.crt"))  # type: ignore[assignment]

    async def start_tunnels(self) -> None:
        self.tunnels = Tunnels(self.paths)
        self.addAsyncCleanup(self.tunnels.stop)
        await self.tunnels.start(1)

    async def test_only_the_pinned_client_is_accepted(self) -> None:
        """With a pinned peer bundle, client 2's CA-signed certificate is refused (1008)."""
        await self.echoes(self.ports.server_tun1, b"pinned")
        context = ssl.create_default_context(cafile=str(self.folder / "ca.pem"))
        context.load_cert_chain(self.folder / "client2.pem")
        async with connect(f"wss://127.0.0.1:{self.ports.ws}", ssl=context) as ws:
            with self.assertRaises(ConnectionClosedError):
                await ws.recv()
            self.assertEqual((ws.close_code, ws.close_reason), (1008, "certificate not trusted"))


@requires_network
class ProcessesTest(unittest.TestCase):
    def test_commands_print_their_startup_lines(self) -> None:
        """``zcli tunnel server`` and two ``zcli tunnel client`` processes announce
        themselves on stdout and carry data."""
        folder = Path(tempfile.mkdtemp(prefix="ztunnel-"))
        ports = Ports()
        backend = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(backend.close)
        paths = write_configs(folder, ports, {"client1-tun1": backend.getsockname()[1]})
        command = [sys.executable, "-m", "zCLI", "tunnel"]
        server = ServerProcess([*command, "server", "--config", str(paths["server"])])
        self.addCleanup(server.stop)
        server.wait_for(rf"^zTunnel server listening on ws://127\.0\.0\.1:{ports.ws}$")
        clients = []
        for number in (1, 2):
            client = ServerProcess([*command, "client", "--config", str(paths[f"client{number}"])])
            self.addCleanup(client.stop)
            client.wait_for(rf"^zTunnel client {number} connected to ws://127\.0\.0\.1:{ports.ws}$")
            clients.append(client)
        with socket.create_connection(("127.0.0.1", ports.server_tun1), timeout=timeout(5)) as user:
            backend.settimeout(timeout(5))
            peer, _ = backend.accept()
            with peer:
                user.sendall(b"through processes")
                self.assertEqual(peer.recv(100), b"through processes")
        self.assertEqual(server.stop(), 0)
        for client in clients:
            self.assertEqual(client.stop(), 0)
        with contextlib.suppress(OSError):
            for path in folder.iterdir():
                path.unlink()
            folder.rmdir()
