"""Plan 003's shared part: the tunnel under test, its port configuration, TCP helpers,
and the base test case whose asserts speak docs/tunnel.md. The configuration lives in
``plan003_config`` and the TCP helpers in ``plan003_tcp``; this module re-exports them.

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
import os
import sys
import tempfile
import time
import unittest
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from zTestSuite import ServerProcess, Target, record_metric, requires_network, timeout

from .plan003_config import (
    Backend,
    ConfigError,
    PortConfig,
    free_port_base,
    write_configs,
)
from .plan003_tcp import (
    SEED,
    EchoServer,
    TestTcpSocket,
    Traffic,
    pattern_at,
    pattern_stream,
    payload,
    probe,
)

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
