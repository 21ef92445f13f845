"""Plan 003's TCP side: echo backends that count what they receive (the plan's
``UtilTcpSocket``), the test client ``TestTcpSocket``, a port probe, and deterministic
payloads (seeded by ``ZTUNNEL_SEED``)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from zTestSuite import timeout

__all__ = [
    "SEED",
    "EchoServer",
    "TestTcpSocket",
    "Traffic",
    "pattern_at",
    "pattern_stream",
    "payload",
    "probe",
]

SEED = int(os.environ.get("ZTUNNEL_SEED", "3003"))

# --- TCP helpers ------------------------------------------------------------------------------


class EchoServer:
    """An echo backend (the plan's ``UtilTcpSocket(shouldEchoData=True)``): writes back
    what it reads, closes its side at EOF, and counts bytes and connections."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.received = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any]] = set()

    @property
    def open(self) -> int:
        """Connections the tunnel holds open to this backend now."""
        return len(self._writers)

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._serve, host, port, reuse_address=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            while chunk := await reader.read(1 << 18):
                self.received += len(chunk)
                writer.write(chunk)
                await writer.drain()
        except OSError:
            pass  # the tunnel reset the stream (a failover): its business, tested there
        finally:
            self._writers.discard(writer)
            self._handlers.discard(task)  # type: ignore[arg-type]
            writer.close()

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        if self._handlers:  # each sees its connection end and returns
            await asyncio.wait(list(self._handlers), timeout=timeout(2))
        with contextlib.suppress(OSError):
            await self._server.wait_closed()


@dataclass
class Traffic:
    """Bytes a test moved, recorded as its metrics at the end."""

    sent: int = 0
    received: int = 0


class TestTcpSocket:
    """One TCP connection of a test to a tunnel port (the plan's ``TestTcpSocket``)."""

    __test__ = False  # not a test case, whatever a collector thinks of the name

    def __init__(
        self,
        label: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        traffic: Traffic,
    ) -> None:
        self.label = label
        self.reader = reader
        self.writer = writer
        self.traffic = traffic

    @classmethod
    async def connect(
        cls, label: str, host: str, port: int, traffic: Traffic | None = None
    ) -> TestTcpSocket:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, limit=1 << 22), timeout(2)
        )
        return cls(label, reader, writer, traffic if traffic is not None else Traffic())

    def __repr__(self) -> str:
        return f"<TestTcpSocket {self.label}>"

    async def send(self, data: bytes | memoryview, units: float = 3) -> None:
        """Write ``data`` and wait until the socket has taken it (drained);
        AssertionError if it has not within ``units``."""
        self.writer.write(data)
        try:
            await asyncio.wait_for(self.writer.drain(), timeout(units))
        except TimeoutError:
            left = self.writer.transport.get_write_buffer_size()
            raise AssertionError(
                f"{self.label}: {left} of {len(data)} bytes still not taken after "
                f"{timeout(units):g}s"
            ) from None
        self.traffic.sent += len(data)

    async def receive_exactly(self, count: int, units: float = 3) -> bytes:
        """Exactly ``count`` bytes; AssertionError naming what came if they do not."""
        try:
            data = await asyncio.wait_for(self.reader.readexactly(count), timeout(units))
        except asyncio.IncompleteReadError as short:
            self.traffic.received += len(short.partial)
            raise AssertionError(
                f"{self.label}: the connection ended after {len(short.partial)} of {count} "
                f"bytes: {short.partial[:60]!r}"
            ) from None
        except TimeoutError:
            raise AssertionError(
                f"{self.label}: {count} bytes did not arrive within {timeout(units):g}s"
            ) from None
        self.traffic.received += len(data)
        return data

    async def echo(self, data: bytes, units: float = 3) -> bytes:
        """Send ``data`` and receive as many bytes back."""
        await self.send(data)
        return await self.receive_exactly(len(data), units)

    async def receive_hashed(self, count: int, units: float) -> tuple[str, int]:
        """Read ``count`` bytes (or until the end), hashing as they come: (SHA-256, count)."""
        digest = hashlib.sha256()
        got = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout(units)
        while got < count:
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                chunk = await asyncio.wait_for(self.reader.read(min(1 << 20, count - got)), left)
            except TimeoutError:
                break
            if not chunk:
                break
            digest.update(chunk)
            got += len(chunk)
        self.traffic.received += got
        return digest.hexdigest(), got

    async def wait_end(self, units: float = 3) -> str:
        """Until the peer ends the connection: ``"eof"`` or ``"reset"``; bytes still
        arriving are drained (counted). AssertionError if it stays open."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout(units)
        while True:
            try:
                chunk = await asyncio.wait_for(self.reader.read(1 << 16), deadline - loop.time())
            except TimeoutError:
                raise AssertionError(
                    f"{self.label}: still open after {timeout(units):g}s"
                ) from None
            except OSError:
                return "reset"
            if not chunk:
                return "eof"
            self.traffic.received += len(chunk)

    async def finish(self, units: float = 3) -> None:
        """Close cleanly: half-close our side, then expect the echo backend's EOF back
        (docs/tunnel.md: FIN becomes shutdown(SHUT_WR) on the other side)."""
        self.writer.write_eof()
        ended = await self.wait_end(units)
        if ended != "eof":
            raise AssertionError(f"{self.label}: ended with a {ended}, not a clean EOF")
        await self.close()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await asyncio.wait_for(self.writer.wait_closed(), timeout(1))
        if not self.writer.transport.is_closing():
            self.writer.transport.abort()

    def abort(self) -> None:
        self.writer.transport.abort()


async def probe(host: str, port: int, units: float = 0.25) -> bool:
    """Whether ``host:port`` accepts a TCP connection now (closed at once, nothing sent:
    docs/tunnel.md's port probe, which changes nothing)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout(units))
    except (OSError, TimeoutError):
        return False
    writer.transport.abort()
    return True


# --- deterministic payloads ------------------------------------------------------------------


def payload(size: int, label: str) -> bytes:
    """``size`` deterministic bytes for ``label`` (the seed and the label choose them)."""
    return random.Random(f"{SEED}:{label}").randbytes(size)


_POOL_SIZE = 1 << 20
_POOL = random.Random(f"{SEED}:pool").randbytes(_POOL_SIZE) * 2


def pattern_stream(key: int, size: int, chunk: int = 1 << 16) -> Iterator[bytes]:
    """A deterministic stream of ``size`` bytes for ``key``, generated chunk by chunk
    (windows of a 1 MiB random pool at offsets that depend on the key)."""
    offset = (key * 7919) % _POOL_SIZE
    step = 104729 + key
    sent = 0
    while sent < size:
        take = min(chunk, size - sent)
        yield _POOL[offset : offset + take]
        sent += take
        offset = (offset + step) % _POOL_SIZE


def pattern_at(position: int, size: int) -> bytes:
    """The bytes ``position .. position+size`` of the endless pattern ``PatternWriter``
    writes (the pool repeated), ``size`` at most the pool's size."""
    start = position % _POOL_SIZE
    return _POOL[start : start + size]
