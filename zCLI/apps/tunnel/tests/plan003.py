"""Plan 003's shared part: the tunnel under test, its port configuration, TCP helpers,
and the base test case whose asserts speak docs/tunnel.md.

The suites are black box: they reach the tunnel only through its TCP ports and its
three config files. ``PortConfig`` derives every port of the plan from those files, so
nothing is written twice: tun1/tun2 are the first/second ``tcpTunnelListens`` entry of
the server (server-to-client) and its first/second ``tcpTunnelConnects`` entry
(client-to-server); a client's entries are found by ``tunnelName``.

With the target ``TUNNEL`` unset a suite writes the three files for free ports below
32768 (``standbySocketCloseDurationSecs`` 3) and starts ``zcli tunnel server`` and two
``zcli tunnel client`` as real processes. With ``TUNNEL`` set to a folder holding
``server.json``, ``client1.json`` and ``client2.json`` (or ``.yaml``/``.yml``) of a
running tunnel, it tests that one instead, after making client 1 active. A listener
bound to a wildcard address (``0.0.0.0``, ``::``) is reached at the ``serverUrl`` host
(server) or at 127.0.0.1 (clients); an echo backend binds to its ``connectToHost`` when
that is an IP address, else to 0.0.0.0.

The echo backends are started by each test on the backend ports (the plan's
``UtilTcpSocket``), in the test's own event loop, and count the bytes they receive, so
a test checks which client a connection was carried to.

Environment:

- ``ZTUNNEL_PROFILE``: ``quick`` (the default: 8 MB instead of 100 MB, punishment
  transfers up to 5 MB, persistence 5 s instead of 30 s, ping-pong 200 iterations
  instead of 1000) or ``full`` (the plan's sizes).
- ``ZTUNNEL_SEED``: the seed of the punishment sizes and of every generated payload
  (default 3003), so a run repeats.
- ``ZTEST_TIMEOUT_FACTOR`` scales every wait, as for every zCLI suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import os
import random
import socket
import sys
import tempfile
import time
import unittest
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import yaml

from zTestSuite import ServerProcess, Target, record_metric, requires_network, timeout

__all__ = [
    "FULL",
    "KB",
    "MB",
    "PROFILE",
    "QUICK",
    "SEED",
    "TUNNEL",
    "Backend",
    "ConfigError",
    "EchoServer",
    "FailoverTimes",
    "OwnTunnel",
    "PortConfig",
    "PortWatch",
    "Profile",
    "TestTcpSocket",
    "Traffic",
    "TunnelTestCase",
    "free_port_base",
    "pattern_at",
    "pattern_stream",
    "payload",
    "probe",
    "write_configs",
]

TUNNEL = Target(
    "TUNNEL",
    "a folder with server.json, client1.json, client2.json of a running tunnel; "
    "unset: the suite starts zCLI's (`zcli tunnel server/client`)",
)

KB = 1000
MB = 1000 * 1000
SEED = int(os.environ.get("ZTUNNEL_SEED", "3003"))


@dataclass(frozen=True)
class Profile:
    """The sizes and durations of one run of the plan."""

    name: str
    quality_bytes: int  # suite 3 (tests 2.x): one transfer each
    persistence_secs: int  # failover tests 2-5: one message a second
    pingpong_iterations: int  # suite 4 (tests 3.x)
    punishment_transfers: int  # suite 7 (tests 6.x)
    punishment_min_bytes: int
    punishment_max_bytes: int
    impact_bulk_bytes: int  # suite 6: the bulk transfer on the triggering connection


FULL = Profile("full", 100 * MB, 30, 1000, 100, 100 * KB, 250 * MB, 64 * MB)
QUICK = Profile("quick", 8 * MB, 5, 200, 100, 100 * KB, 5 * MB, 8 * MB)
_PROFILES = {"full": FULL, "quick": QUICK}


def _profile() -> Profile:
    name = os.environ.get("ZTUNNEL_PROFILE", "quick").strip().lower() or "quick"
    if name not in _PROFILES:
        raise ValueError(f"ZTUNNEL_PROFILE={name!r} is neither 'quick' nor 'full'")
    return _PROFILES[name]


PROFILE = _profile()

# The plan's tunnel names, used only when we write the config files ourselves.
S2C_TUN1, S2C_TUN2 = "server-to-client-tun1", "server-to-client-tun2"
C2S_TUN1, C2S_TUN2 = "client-to-server-tun1", "client-to-server-tun2"
WILDCARDS = {"", "0.0.0.0", "::", "*"}


# --- the port configuration ----------------------------------------------------------


class ConfigError(ValueError):
    """A config file of the target does not describe plan 003's two tunnels each way."""


def _read_config(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level is not a mapping")
    return data


def _find(folder: Path, stem: str) -> Path:
    for suffix in (".json", ".yaml", ".yml"):
        path = folder / f"{stem}{suffix}"
        if path.is_file():
            return path
    raise ConfigError(f"{folder} has no {stem}.json, {stem}.yaml or {stem}.yml")


def _entries(config: dict[str, Any], key: str, path: Path) -> list[dict[str, Any]]:
    entries = config.get(key)
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{path}: {key} is not a list of mappings")
    return entries


def _named(config: dict[str, Any], key: str, name: str, path: Path) -> dict[str, Any]:
    for entry in _entries(config, key, path):
        if entry.get("tunnelName") == name:
            return entry
    raise ConfigError(f"{path}: {key} has no entry with tunnelName {name!r}")


def _reach(address: str, fallback: str) -> str:
    """The address a test connects to for a listener bound to ``address``."""
    return fallback if address in WILDCARDS else address


def _bind(host: str) -> str:
    """The address an echo backend binds to so that ``host`` reaches it."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return "127.0.0.1" if host == "localhost" else "0.0.0.0"
    return host


@dataclass(frozen=True)
class Backend:
    """One echo backend the tunnel dials: its role in the plan, where it listens."""

    name: str  # "client1-tun1", "client2-tun2", "shared-tun1"
    host: str
    port: int


class PortConfig:
    """Plan 003's ``port_config.PortConfig``, derived from the three config files."""

    def __init__(
        self,
        server: dict[str, Any],
        client1: dict[str, Any],
        client2: dict[str, Any],
        paths: tuple[Path, Path, Path] = (Path("server"), Path("client1"), Path("client2")),
    ) -> None:
        spath, c1path, c2path = paths
        self.paths = paths
        s2c = _entries(server, "tcpTunnelListens", spath)
        c2s = _entries(server, "tcpTunnelConnects", spath)
        if len(s2c) < 2 or len(c2s) < 2:
            raise ConfigError(
                f"{spath}: plan 003 needs two tcpTunnelListens and two tcpTunnelConnects"
            )
        self.s2cNames = (str(s2c[0]["tunnelName"]), str(s2c[1]["tunnelName"]))
        self.c2sNames = (str(c2s[0]["tunnelName"]), str(c2s[1]["tunnelName"]))
        url = str(server.get("dataExchange", {}).get("serverUrl", ""))
        self.serverUrl = url
        server_host = urlsplit(url).hostname or "127.0.0.1"
        self.serverHost = _reach(str(s2c[0].get("listenBindAddress", "")), server_host)
        self._ports: dict[str, int] = {
            "serverToClientTun1ListenPort": int(s2c[0]["listenPort"]),
            "serverToClientTun2ListenPort": int(s2c[1]["listenPort"]),
            "clientToServerTun1ConnectPort": int(c2s[0]["connectToPort"]),
            "clientToServerTun2ConnectPort": int(c2s[1]["connectToPort"]),
        }
        self.clientHosts: dict[int, str] = {}
        backends = [
            Backend(
                f"shared-tun{tun}", _bind(str(entry["connectToHost"])), int(entry["connectToPort"])
            )
            for tun, entry in ((1, c2s[0]), (2, c2s[1]))
        ]
        for number, config, path in ((1, client1, c1path), (2, client2, c2path)):
            listen1 = _named(config, "tcpTunnelListens", self.c2sNames[0], path)
            listen2 = _named(config, "tcpTunnelListens", self.c2sNames[1], path)
            connect1 = _named(config, "tcpTunnelConnects", self.s2cNames[0], path)
            connect2 = _named(config, "tcpTunnelConnects", self.s2cNames[1], path)
            self.clientHosts[number] = _reach(
                str(listen1.get("listenBindAddress", "")), "127.0.0.1"
            )
            self._ports[f"client{number}ToServerTun1ListenPort"] = int(listen1["listenPort"])
            self._ports[f"client{number}ToServerTun2ListenPort"] = int(listen2["listenPort"])
            self._ports[f"serverToClient{number}Tun1ConnectPort"] = int(connect1["connectToPort"])
            self._ports[f"serverToClient{number}Tun2ConnectPort"] = int(connect2["connectToPort"])
            for tun, entry in ((1, connect1), (2, connect2)):
                host = _bind(str(entry["connectToHost"]))
                backends.append(
                    Backend(f"client{number}-tun{tun}", host, int(entry["connectToPort"]))
                )
        self.backends = tuple(backends)
        self.reconnectTimeoutSecs = float(server.get("standbySocketCloseDurationSecs", 30))

    @classmethod
    def from_folder(cls, folder: str | Path) -> PortConfig:
        folder = Path(folder)
        paths = (_find(folder, "server"), _find(folder, "client1"), _find(folder, "client2"))
        server, client1, client2 = (_read_config(path) for path in paths)
        return cls(server, client1, client2, paths)

    def __getattr__(self, name: str) -> int:
        try:
            return self.__dict__["_ports"][name]
        except KeyError:
            raise AttributeError(name) from None

    # The plan's property names, spelled out so that a reader (and a checker) finds them.
    serverToClientTun1ListenPort: int
    serverToClientTun2ListenPort: int
    client1ToServerTun1ListenPort: int
    client1ToServerTun2ListenPort: int
    client2ToServerTun1ListenPort: int
    client2ToServerTun2ListenPort: int
    serverToClient1Tun1ConnectPort: int
    serverToClient1Tun2ConnectPort: int
    serverToClient2Tun1ConnectPort: int
    serverToClient2Tun2ConnectPort: int
    clientToServerTun1ConnectPort: int
    clientToServerTun2ConnectPort: int

    def client_ports(self, number: int) -> tuple[int, int]:
        """Client ``number``'s client-to-server listen ports (tun1, tun2)."""
        return self._ports[f"client{number}ToServerTun1ListenPort"], self._ports[
            f"client{number}ToServerTun2ListenPort"
        ]

    def server_ports(self) -> tuple[int, int]:
        """The server's server-to-client listen ports (tun1, tun2)."""
        return self.serverToClientTun1ListenPort, self.serverToClientTun2ListenPort

    def listeners(self) -> list[tuple[str, str, int]]:
        """Every listen port of the tunnel: (owner, host, port)."""
        found = [("server", self.serverHost, port) for port in self.server_ports()]
        for number in (1, 2):
            found += [
                (f"client{number}", self.clientHosts[number], p) for p in self.client_ports(number)
            ]
        return found

    def host(self, where: str) -> str:
        """The address of ``server``, ``client1`` or ``client2``."""
        if where == "server":
            return self.serverHost
        return self.clientHosts[int(where.removeprefix("client"))]


# --- writing our own configuration -----------------------------------------------------

PORTS_NEEDED = 13


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_base(count: int = PORTS_NEEDED, rng: random.Random | None = None) -> int:
    """A random base in 20000-32000 whose ``count`` ports all bind now: below the
    ephemeral range (32768+), so an outgoing connection never takes one of them."""
    rng = rng or random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 32000 - count)
        if all(_bindable(base + offset) for offset in range(count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports found between 20000 and 32000")


def write_configs(folder: Path, close_secs: float = 3, level: str = "INFO") -> PortConfig:
    """Write server.json, client1.json and client2.json for a tunnel on free ports of
    127.0.0.1 and return the PortConfig read back from them."""
    base = free_port_base()
    ws = f"ws://127.0.0.1:{base}"

    def listen(name: str, port: int) -> dict[str, Any]:
        return {"tunnelName": name, "listenPort": port, "listenBindAddress": "127.0.0.1"}

    def connect(name: str, port: int) -> dict[str, Any]:
        return {"tunnelName": name, "connectToHost": "127.0.0.1", "connectToPort": port}

    def common(server: bool, client_id: int | None) -> dict[str, Any]:
        config: dict[str, Any] = {"weAreServer": server}
        if client_id is not None:
            config["clientId"] = client_id
        config["standbySocketCloseDurationSecs"] = close_secs
        config["dataExchange"] = {
            "serverUrl": ws,
            "tlsBundleFilePath": None,
            "enableMutualTLS": False,
            "mutualTLSTrustedCACertificateBundleFilePath": None,
            "mutualTLSTrustedPeerCertificateBundleFilePath": None,
        }
        config["logging"] = {"level": level}
        return config

    server = common(True, None)
    server["tcpTunnelListens"] = [listen(S2C_TUN1, base + 1), listen(S2C_TUN2, base + 2)]
    server["tcpTunnelConnects"] = [connect(C2S_TUN1, base + 11), connect(C2S_TUN2, base + 12)]
    configs = {"server": server}
    for number, listens, backends in ((1, base + 3, base + 7), (2, base + 5, base + 9)):
        client = common(False, number)
        client["tcpTunnelListens"] = [listen(C2S_TUN1, listens), listen(C2S_TUN2, listens + 1)]
        client["tcpTunnelConnects"] = [connect(S2C_TUN1, backends), connect(S2C_TUN2, backends + 1)]
        configs[f"client{number}"] = client
    for stem, config in configs.items():
        (folder / f"{stem}.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return PortConfig.from_folder(folder)


# --- the system under test as real processes ------------------------------------------------


class OwnTunnel:
    """``zcli tunnel server`` and two ``zcli tunnel client`` as a user runs them, on the
    config files ``write_configs`` made in a folder of their own."""

    def __init__(self, close_secs: float = 3) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="ztunnel-plan003-")
        self.folder = Path(self._folder.name)
        self.ports = write_configs(self.folder, close_secs)
        self.processes: dict[str, ServerProcess] = {}

    def _start(self, name: str, role: str, ready: str) -> ServerProcess:
        config = self.folder / f"{name}.json"
        command = [sys.executable, "-m", "zCLI", "tunnel", role, "--config", str(config)]
        process = ServerProcess(command, cwd=self.folder, keep=400)
        self.processes[name] = process
        process.wait_for(ready)
        return process

    def start(self) -> None:
        """Start the server, then client 1 (which the server makes active), then client
        2, each waited for by its start-up line and its listen ports."""
        try:
            server = self._start("server", "server", r"^zTunnel server listening on ws://")
            for port in self.ports.server_ports():
                server.wait_for_port(port, self.ports.serverHost)
            for number in (1, 2):
                name = f"client{number}"
                client = self._start(
                    name, "client", rf"^zTunnel client {number} connected to ws://"
                )
                for port in self.ports.client_ports(number):
                    client.wait_for_port(port, self.ports.clientHosts[number])
        except BaseException:
            self.stop()
            raise

    def tails(self, lines: int = 30) -> str:
        return "".join(
            f"\n--- last lines of {name} ({proc.describe()}) ---\n{proc.tail(lines)}\n"
            for name, proc in self.processes.items()
        )

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()
        self._folder.cleanup()


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


# --- failover observation ------------------------------------------------------------------


@dataclass
class PortWatch:
    """One listen port polled by connects around a failover: when it was refused first
    and when it accepted again (loop times, seconds)."""

    owner: str
    host: str
    port: int
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    closed_at: float | None = None
    reopened_at: float | None = None

    async def run(self, deadline: float, interval: float = 0.02) -> None:
        loop = asyncio.get_running_loop()
        while loop.time() < deadline:
            started = loop.time()
            accepted = await probe(self.host, self.port)
            if accepted and not self.ready.is_set():
                self.ready.set()
            elif not accepted and self.ready.is_set() and self.closed_at is None:
                self.closed_at = started
            elif accepted and self.closed_at is not None:
                self.reopened_at = loop.time()
                return
            await asyncio.sleep(interval)  # the polling pace, not a synchronisation

    def describe(self) -> str:
        return f"{self.owner} port {self.port}"


@dataclass
class FailoverTimes:
    """What was measured around one failover, in seconds from the trigger's first byte."""

    to: int
    triggered_at: float
    watches: list[PortWatch]

    def closed_after(self, watch: PortWatch) -> float | None:
        return None if watch.closed_at is None else watch.closed_at - self.triggered_at

    def reopened_after_close(self, watch: PortWatch) -> float | None:
        if watch.closed_at is None or watch.reopened_at is None:
            return None
        return watch.reopened_at - watch.closed_at

    def reopened_after(self, watch: PortWatch) -> float | None:
        return None if watch.reopened_at is None else watch.reopened_at - self.triggered_at


# --- the base test case ------------------------------------------------------------------------


@requires_network
class TunnelTestCase(unittest.IsolatedAsyncioTestCase):
    """Finds the tunnel under test (``TUNNEL`` or one started here), starts the six echo
    backends for each test, and offers connections, failovers and asserts in the
    plan's terms. A suite starts with client 1 active; its tests run in the plan's
    order (their names sort that way) and share the one running system."""

    system: ClassVar[OwnTunnel | None] = None
    ports: ClassVar[PortConfig]
    reset_pending: ClassVar[bool] = False
    close_secs: ClassVar[float] = 3

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()  # requires_network has checked loopback before this
        sys.stderr.write(
            f"\nplan 003 {cls.__name__}: profile {PROFILE.name} (ZTUNNEL_PROFILE), "
            f"seed {SEED} (ZTUNNEL_SEED)\n"
        )
        if TUNNEL.value is not None:
            cls.system = None
            cls.ports = PortConfig.from_folder(TUNNEL.value)
            cls.reset_pending = True
            return
        system = OwnTunnel(cls.close_secs)
        cls.addClassCleanup(system.stop)
        system.start()
        cls.system, cls.ports = system, system.ports

    async def asyncSetUp(self) -> None:
        await super().asyncSetUp()
        # unittest runs the loop in debug mode, which logs every step over 100 ms; a test
        # that makes, hashes and writes 100 MB has such steps by design.
        asyncio.get_running_loop().slow_callback_duration = 2.0
        self.traffic = Traffic()
        self.started = time.monotonic()
        self.backends: dict[str, EchoServer] = {}
        self.addAsyncCleanup(self._stop_backends)
        for backend in self.ports.backends:
            echo = EchoServer(backend.name)
            await echo.start(backend.host, backend.port)
            self.backends[backend.name] = echo
        if type(self).reset_pending:
            type(self).reset_pending = False
            await self.make_active(1)
        self.addCleanup(self._record)

    async def _stop_backends(self) -> None:
        for echo in self.backends.values():
            await echo.close()

    def _record(self) -> None:
        record_metric("bytes_sent", self.traffic.sent, "B")
        record_metric("bytes_received", self.traffic.received, "B")
        record_metric(f"profile_{PROFILE.name}", 1)

    def fail_with_logs(self, message: str) -> None:
        """Fail, with the processes' log tails when we started them."""
        tails = self.system.tails() if self.system is not None else ""
        self.fail(message + tails)

    # --- connections ----------------------------------------------------------------------

    async def connect(self, where: str, port: int, label: str = "") -> TestTcpSocket:
        """A connection to ``where`` (``server``, ``client1``, ``client2``) port ``port``,
        aborted when the test ends if it is still open."""
        host = self.ports.host(where)
        try:
            conn = await TestTcpSocket.connect(label or f"{where}:{port}", host, port, self.traffic)
        except (OSError, TimeoutError) as exc:
            self.fail_with_logs(f"cannot connect to {where} {host}:{port}: {exc!r}")
        self.addCleanup(conn.abort)
        return conn

    async def assertEcho(self, where: str, port: int, data: bytes, units: float = 3) -> None:  # noqa: N802
        """A connection to ``where``:``port`` echoes ``data`` exactly, then closes."""
        conn = await self.connect(where, port)
        self.assertEqual(await conn.echo(data, units), data, f"echo through {where}:{port}")
        await conn.close()

    def received(self) -> dict[str, int]:
        """Bytes each echo backend has received so far in this test."""
        return {name: echo.received for name, echo in self.backends.items()}

    async def assertBackendsIdle(self, names: tuple[str, ...], units: float = 1) -> None:  # noqa: N802
        """The tunnel closes its connections to these backends (none left behind)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout(units)
        while any(self.backends[name].open for name in names):
            if loop.time() > deadline:
                still = {name: self.backends[name].open for name in names}
                self.fail_with_logs(f"backend connections open after {timeout(units):g}s: {still}")
            await asyncio.sleep(0.01)  # polling the backends' state

    def assertRouted(self, before: Mapping[str, int], expected: Mapping[str, int]) -> None:  # noqa: N802
        """Since ``before``, the backends received exactly ``expected`` bytes (every
        backend not named: none): which client carried the data, black box."""
        now = self.received()
        moved = {name: now[name] - before.get(name, 0) for name in now}
        want = {name: expected.get(name, 0) for name in now}
        self.assertEqual(moved, want, "bytes each echo backend received")

    # --- who is active, failovers ------------------------------------------------------------

    async def active_client(self) -> int:
        """Which client the server carries server-to-client connections to now: a
        message through server tun1, and which client's backend got it."""
        before = self.received()
        data = payload(64, f"who-is-active-{time.monotonic()}")
        conn = await self.connect(
            "server", self.ports.serverToClientTun1ListenPort, "who-is-active"
        )
        self.assertEqual(await conn.echo(data), data, "server-to-client tun1 echo")
        await conn.close()
        now = self.received()
        got = [n for n in (1, 2) if now[f"client{n}-tun1"] - before[f"client{n}-tun1"] == len(data)]
        self.assertEqual(len(got), 1, f"exactly one client's backend got the message: {now}")
        return got[0]

    async def wait_settled(self, units_secs: float | None = None) -> None:
        """Until every listen port (server, both clients) accepts; bounded by
        reconnectTimeoutSecs + 2 (the plan's failover wait) unless told otherwise."""
        bound = self.ports.reconnectTimeoutSecs + 2 if units_secs is None else units_secs
        loop = asyncio.get_running_loop()
        deadline = loop.time() + bound
        for owner, host, port in self.ports.listeners():
            while not await probe(host, port):
                if loop.time() > deadline:
                    self.fail_with_logs(f"{owner} port {port} did not accept within {bound:g}s")
                await asyncio.sleep(0.02)  # polling pace

    async def trigger(self, to: int, data: bytes = b"") -> tuple[TestTcpSocket, float]:
        """The plan's failover trigger: a connection to client ``to``'s client-to-server
        tun1 port whose first data is sent now; the echo of that data is checked. Returns
        the connection, still open (the caller closes it), and the loop time of the
        first byte."""
        data = data or payload(32, f"trigger-{to}-{time.monotonic()}")
        port = self.ports.client_ports(to)[0]
        conn = await self.connect(f"client{to}", port, f"trigger client{to}")
        sent_at = asyncio.get_running_loop().time()
        self.assertEqual(
            await conn.echo(data), data, f"the trigger's first data through client{to}"
        )
        return conn, sent_at

    def watches(self, owners: tuple[str, ...]) -> list[PortWatch]:
        found = []
        for owner, host, port in self.ports.listeners():
            if owner in owners:
                found.append(PortWatch(owner, host, port))
        return found

    async def failover(
        self,
        to: int,
        first: Callable[[], Any] | None = None,
        bound: float | None = None,
    ) -> FailoverTimes:
        """Make standby client ``to`` active and watch the server's listen ports and the
        new standby's close and reopen; returns when all reopened, or when
        reconnectTimeoutSecs + 2 (``bound``) has passed since the trigger.

        ``first`` (a coroutine function) replaces the plain trigger: it must send the
        first data to client ``to`` and return the loop time it did so."""
        other = 3 - to
        loop = asyncio.get_running_loop()
        bound = self.ports.reconnectTimeoutSecs + 2 if bound is None else bound
        watches = self.watches(("server", f"client{other}"))
        far = loop.time() + bound + timeout(3)
        tasks = [asyncio.create_task(w.run(far)) for w in watches]
        try:
            try:
                await asyncio.wait_for(
                    asyncio.gather(*(w.ready.wait() for w in watches)), timeout(2)
                )
            except TimeoutError:
                shut = [w.describe() for w in watches if not w.ready.is_set()]
                self.fail_with_logs(f"before the failover these ports do not accept: {shut}")
            if first is None:
                conn, triggered_at = await self.trigger(to)
                await conn.close()
            else:
                triggered_at = await first()
            times = FailoverTimes(to, triggered_at, watches)
            deadline = triggered_at + bound
            await asyncio.wait(tasks, timeout=max(0.0, deadline - loop.time()))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for watch in watches:
            label = self.role_of(watch)
            closed, reopened = times.closed_after(watch), times.reopened_after_close(watch)
            if closed is not None:
                record_metric(f"{label}_closed_after_trigger", closed, "s")
            if reopened is not None:
                record_metric(f"{label}_reopened_after_close", reopened, "s")
        return times

    def role_of(self, watch: PortWatch) -> str:
        """A watched port's name in metrics, the same in every run: ``server_tun1``,
        ``new_standby_tun2``."""
        owner = "server" if watch.owner == "server" else "new_standby"
        if watch.owner == "server":
            ports = self.ports.server_ports()
        else:
            ports = self.ports.client_ports(int(watch.owner.removeprefix("client")))
        return f"{owner}_tun{ports.index(watch.port) + 1}"

    def assertReopened(self, times: FailoverTimes) -> None:  # noqa: N802
        """Every watched port closed and accepted again within the plan's bound."""
        bound = self.ports.reconnectTimeoutSecs + 2
        missing = [
            f"{w.describe()} (closed after {times.closed_after(w)}, reopened after "
            f"{times.reopened_after(w)})"
            for w in times.watches
            if w.closed_at is None or w.reopened_at is None
        ]
        if missing:
            self.fail_with_logs(
                f"failover to client{times.to}: within {bound:g}s of the trigger these ports "
                f"did not both close and reopen: {missing}"
            )

    def assertFailoverTimes(self, times: FailoverTimes, owners: tuple[str, ...]) -> None:  # noqa: N802
        """docs/tunnel.md: ``owners``' listen ports closed within 1 s of the trigger and
        reopened reconnectTimeoutSecs (±1 s) after they closed."""
        self.assertReopened(times)
        secs = self.ports.reconnectTimeoutSecs
        for watch in times.watches:
            if watch.owner not in owners:
                continue
            closed = times.closed_after(watch)
            reopened = times.reopened_after_close(watch)
            assert closed is not None and reopened is not None
            with self.subTest(port=watch.describe()):
                self.assertLessEqual(
                    closed, 1.0, f"{watch.describe()} closed {closed:.3f}s after the trigger"
                )
                self.assertLessEqual(
                    abs(reopened - secs),
                    1.0,
                    f"{watch.describe()} reopened {reopened:.3f}s after it closed, not {secs:g}±1s",
                )

    async def failover_event(self, to: int) -> FailoverTimes:
        """The plan's "Failover Event": trigger, then wait for the ports to reopen
        (bounded by reconnectTimeoutSecs + 2) and check client ``to`` carries the
        server-to-client connections now."""
        times = await self.failover(to)
        self.assertReopened(times)
        self.assertEqual(await self.active_client(), to, f"client{to} is active after the failover")
        return times

    async def make_active(self, number: int) -> None:
        """Client ``number`` active, by a failover when it is not (a suite's start)."""
        await self.wait_settled()
        if await self.active_client() != number:
            await self.failover_event(number)
