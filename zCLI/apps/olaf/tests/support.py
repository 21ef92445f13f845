"""What the OLAF network suites share: keys on disk, free ports, ``zcli olaf server``
as a real process, a scripted OLAF client (``Peer``) and a fake neighbour server that
captures what a server sends it. No fixed sleeps: every wait is on a frame, a line or
a port, with a timeout in harness units."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from zCLI.apps.olaf import crypto
from zCLI.apps.olaf.client import ClientSession
from zTestSuite import ServerProcess, timeout

__all__ = [
    "FakeNeighbour",
    "Peer",
    "data_of",
    "free_port",
    "kind_of",
    "make_key",
    "start_server",
]


def free_port() -> int:
    """A port nothing listens on now (bound on port 0, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_key(path: Path) -> crypto.Identity:
    """The identity of the private key at ``path``, created there (with ``.pub.pem``
    beside it) when missing, as ``zcli olaf server --key`` does."""
    return crypto.Identity.of(crypto.load_or_create_key(path))


def start_server(
    folder: Path, name: str, port: int, neighbours: dict[str, Path], *extra: str
) -> tuple[ServerProcess, int]:
    """``zcli olaf server`` as a user runs it; returns it and the port it printed."""
    command = [sys.executable, "-m", "zCLI", "olaf", "server", "--port", str(port)]
    command += ["--key", str(folder / f"{name}.pem"), "--retry-max", "1", *extra]
    for address, keyfile in neighbours.items():
        command += ["--neighbour", f"{address}={keyfile}"]
    process = ServerProcess(command, cwd=folder)
    found = process.wait_for(r"olaf server listening on ws://[^:]+:(\d+) ")
    return process, int(found.group(1))


def data_of(frame: dict[str, Any]) -> Any:
    """The data of a signed_data frame, parsed when it came as a string (v1.2)."""
    data = frame.get("data")
    return json.loads(data) if isinstance(data, str) else data


def kind_of(frame: dict[str, Any]) -> str:
    """``public_chat`` for a signed public_chat, the plain type otherwise."""
    if frame.get("type") == "signed_data":
        data = data_of(frame)
        return str(data.get("type")) if isinstance(data, dict) else "?"
    return str(frame.get("type"))


class Inbox:
    """Frames received, taken in order by kind; waits without sleeping."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self.changed = asyncio.Event()

    def add(self, text: str) -> None:
        self.raw.append(text)
        self.frames.append(json.loads(text))
        self.changed.set()

    async def take(
        self, kind: str, where: Callable[[dict[str, Any]], bool] = lambda f: True, units: float = 5
    ) -> dict[str, Any]:
        """The first frame of ``kind`` (matching ``where``), removed from the inbox."""
        async with asyncio.timeout(timeout(units)):
            while True:
                for index, frame in enumerate(self.frames):
                    if kind_of(frame) == kind and where(frame):
                        del self.frames[index]
                        return frame
                self.changed.clear()
                await self.changed.wait()

    def pending(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if kind_of(f) == kind]


class Peer:
    """An OLAF client speaking through a plain websockets connection."""

    def __init__(self, identity: crypto.Identity | None = None, as_string: bool = False) -> None:
        self.identity = identity or crypto.Identity.generate()
        self.session = ClientSession(self.identity, as_string)
        self.inbox = Inbox()
        self.socket: ClientConnection | None = None
        self.reader: asyncio.Task[None] | None = None

    @property
    def pem(self) -> str:
        return self.identity.pem

    async def open(self, address: str, hello: bool = True, **options: Any) -> Peer:
        self.socket = await connect(f"ws://{address}", ping_interval=10, **options)
        self.reader = asyncio.get_running_loop().create_task(self._read())
        if hello:
            await self.send(self.session.hello())
        return self

    async def _read(self) -> None:
        assert self.socket is not None
        async for frame in self.socket:
            if isinstance(frame, str):
                self.inbox.add(frame)

    async def send(self, text: str | bytes) -> None:
        assert self.socket is not None
        await self.socket.send(text)

    async def wait_list(
        self, condition: Callable[[set[str]], bool], units: float = 10
    ) -> dict[str, Any]:
        """The first client_list whose PEMs (all servers) satisfy ``condition``: asks
        again each round, so a server that does not push lists passes too."""
        async with asyncio.timeout(timeout(units)):
            while True:
                await self.send(self.session.client_list_request())
                frame = await self.inbox.take("client_list", units=units)
                self.session.receive(json.dumps(frame))
                if condition({pem for entry in frame["servers"] for pem in entry["clients"]}):
                    return frame

    async def close(self) -> None:
        if self.socket is not None:
            await self.socket.close()
        if self.reader is not None:
            self.reader.cancel()


class FakeNeighbour:
    """A WebSocket server playing a neighbour: records every frame each connection
    sends, and answers client_update_request with an empty client_update."""

    def __init__(self) -> None:
        self.inbox = Inbox()
        self.server: Server | None = None
        self.connected = asyncio.Event()

    async def start(self, port: int) -> None:
        self.server = await serve(self._handle, "127.0.0.1", port)

    async def _handle(self, socket: ServerConnection) -> None:
        self.connected.set()
        try:
            async for frame in socket:
                if isinstance(frame, str):
                    self.inbox.add(frame)
                    if json.loads(frame).get("type") == "client_update_request":
                        await socket.send(json.dumps({"type": "client_update", "clients": []}))
        except ConnectionClosed:
            pass  # the server under test stopped: what it sent is in the inbox

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
