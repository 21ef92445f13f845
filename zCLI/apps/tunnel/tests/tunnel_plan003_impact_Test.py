"""Plan 003, suite 6: failover impact tests (5.1-5.5), black box.

The plan names this suite ("the behaviour of connected sockets during failover") but
leaves it unwritten; these five tests follow docs/tunnel.md's failover rules:

- 5.1: server-to-client connections open at the failover are closed by the server
  within 1 s of the trigger, and what each received is an exact prefix of what it sent.
- 5.2: the same for the old active client's client-to-server connections.
- 5.3: the connection whose first data triggers the failover keeps echoing throughout:
  a 500-byte message every 20 ms from the first byte until a second after the ports
  reopened, every one echoed whole and in order.
- 5.4: bulk data in flight at the failover is never corrupted: streams on the server's
  port and on the old active client's port end with an exact prefix, and a bulk
  transfer that is itself the trigger (8 MB quick, 64 MB full: ``ZTUNNEL_PROFILE``)
  echoes with the same SHA-256.
- 5.5: connections made after the reopen reach the new active client's backends (and
  only those), and a port probe on the new standby changes nothing.

Each test fails over once (to client 2, 1, 2, 1, 2 in turn), so the numbering 5.x
continues the plan's (suite 5 is 4.x, suite 7 is 6.x).
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass

from zCLI.apps.tunnel.tests.plan003 import (
    PROFILE,
    TUNNEL,
    FailoverTimes,
    TestTcpSocket,
    TunnelTestCase,
    pattern_at,
    pattern_stream,
    payload,
    probe,
)
from zTestSuite import record_metric, record_samples, requires_network, time_limit, timeout

__all__ = ["TUNNEL", "ImpactTest"]

SERIAL = "failover timings are measured to the second: no other suite's load beside it"

CLOSE_WITHIN = 1.0  # docs/tunnel.md: connections on the closed ports, within 1 s


@dataclass
class Stream:
    """A connection that writes an endless pattern (from ``origin``) and checks, byte
    for byte, that what comes back is the same pattern from the start."""

    conn: TestTcpSocket
    role: str  # its name in metrics: "s2c_tun1", "old_active_c2s_tun2"
    origin: int
    chunk: int
    pace: float
    sent: int = 0
    received: int = 0
    corrupt_at: int | None = None
    ended: str | None = None  # "eof" or "reset"
    ended_at: float | None = None

    async def run(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        writing = asyncio.create_task(self._write(deadline))
        try:
            await asyncio.wait_for(self._read(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            pass  # still open at the deadline: the caller's assert says so
        finally:
            writing.cancel()
            await asyncio.gather(writing, return_exceptions=True)

    async def _write(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        writer = self.conn.writer
        while self.ended is None and loop.time() < deadline:
            try:
                writer.write(pattern_at(self.origin + self.sent, self.chunk))
                await writer.drain()
            except OSError:
                return  # the tunnel closed it: the reader sees that too
            self.sent += self.chunk
            await asyncio.sleep(self.pace)  # the traffic's shape

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await self.conn.reader.read(1 << 16)
            except OSError:
                self.ended, self.ended_at = "reset", loop.time()
                return
            if not data:
                self.ended, self.ended_at = "eof", loop.time()
                return
            if self.corrupt_at is None and data != pattern_at(
                self.origin + self.received, len(data)
            ):
                self.corrupt_at = self.received
            self.received += len(data)

    async def wait_received(self, count: int, units: float = 3) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout(units)
        while self.received < count:
            if loop.time() > deadline or self.ended is not None:
                raise AssertionError(
                    f"{self.conn.label}: {self.received} of {count} bytes echoed before the "
                    f"failover (ended: {self.ended})"
                )
            await asyncio.sleep(0.005)  # polling the reader's progress


@requires_network
@time_limit(120 if PROFILE.name == "full" else 60)
class ImpactTest(TunnelTestCase):
    """Suite 6: what a failover does to the connections open across it."""

    async def doomed(
        self, where: str, ports: tuple[int, ...], chunk: int, pace: float
    ) -> tuple[list[Stream], list[asyncio.Task[None]]]:
        """Streams on ``where``'s two ports, each with echo flowing, running until the
        failover closes them (or a deadline well after it)."""
        far = asyncio.get_running_loop().time() + self.ports.reconnectTimeoutSecs + timeout(10)
        streams = []
        for index, port in enumerate(ports):
            conn = await self.connect(where, port, f"{where}:{port} open at the failover")
            role = f"{'s2c' if where == 'server' else 'old_active_c2s'}_tun{index + 1}"
            streams.append(Stream(conn, role, origin=7919 * (index + 1), chunk=chunk, pace=pace))
        tasks = [asyncio.create_task(s.run(far)) for s in streams]
        self.addAsyncCleanup(self._cancel, tasks)
        for stream in streams:
            await stream.wait_received(chunk)
        return streams, tasks

    @staticmethod
    async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def assertClosedWithPrefix(  # noqa: N802
        self, streams: list[Stream], tasks: list[asyncio.Task[None]], times: FailoverTimes
    ) -> None:
        """Each stream ended within 1 s of the trigger, having received an exact prefix
        of what it sent."""
        await asyncio.wait(tasks, timeout=timeout(2))
        for stream in streams:
            label = stream.conn.label
            with self.subTest(connection=label):
                self.assertIsNotNone(stream.ended, f"{label} is still open after the failover")
                assert stream.ended_at is not None
                after = stream.ended_at - times.triggered_at
                self.traffic.sent += stream.sent
                self.traffic.received += stream.received
                record_metric(f"{stream.role}_conn_closed_after_trigger", after, "s")
                record_metric(f"{stream.role}_conn_echoed_before_close", stream.received, "B")
                self.assertLessEqual(after, CLOSE_WITHIN, f"{label} ended {after:.3f}s after")
                self.assertIsNone(stream.corrupt_at, f"{label}: the echo differs at this byte")
                self.assertLessEqual(stream.received, stream.sent, f"{label}: more came back")

    async def test_5_1_server_to_client_connections_closed_at_failover(self) -> None:
        """5.1: the server's open connections close within 1 s, having echoed a prefix."""
        streams, tasks = await self.doomed("server", self.ports.server_ports(), 1024, 0.01)
        times = await self.failover(2)
        await self.assertClosedWithPrefix(streams, tasks, times)
        await self.assertBackendsIdle(("client1-tun1", "client1-tun2"))
        self.assertReopened(times)
        self.assertEqual(await self.active_client(), 2)

    async def test_5_2_old_active_client_connections_closed_at_failover(self) -> None:
        """5.2: the old active client's open connections close within 1 s, with a prefix."""
        streams, tasks = await self.doomed("client2", self.ports.client_ports(2), 1024, 0.01)
        times = await self.failover(1)
        await self.assertClosedWithPrefix(streams, tasks, times)
        await self.assertBackendsIdle(("shared-tun1", "shared-tun2"))
        self.assertReopened(times)
        self.assertEqual(await self.active_client(), 1)

    async def test_5_3_triggering_connection_echoes_throughout(self) -> None:
        """5.3: the triggering connection echoes every 20 ms message through the failover."""
        loop = asyncio.get_running_loop()
        state: dict[str, float] = {"stop_at": loop.time() + timeout(30)}
        rtts: list[float] = []
        pinging: list[asyncio.Task[int]] = []
        conns: list[TestTcpSocket] = []

        async def ping(conn: TestTcpSocket) -> int:
            index = 1
            while loop.time() < state["stop_at"]:
                data = payload(500, f"5.3-{index}")
                sent = loop.time()
                self.assertEqual(await conn.echo(data), data, f"message {index}")
                rtts.append((loop.time() - sent) * 1000)
                index += 1
                await asyncio.sleep(0.02)  # the traffic's shape
            return index

        async def first() -> float:
            conn, at = await self.trigger(2, payload(500, "5.3-0"))
            conns.append(conn)
            pinging.append(asyncio.create_task(ping(conn)))
            return at

        times = await self.failover(2, first)
        reopened = [w.reopened_at for w in times.watches if w.reopened_at is not None]
        state["stop_at"] = max(reopened, default=loop.time()) + 1.0
        count = await asyncio.wait_for(pinging[0], timeout(10))
        await conns[0].finish()
        record_metric("messages_echoed", count)
        record_samples("message_rtt", rtts, "ms")
        self.assertReopened(times)
        self.assertEqual(await self.active_client(), 2)

    async def test_5_4_in_flight_bulk_data_never_corrupted(self) -> None:
        """5.4: bulk streams cut by the failover keep an exact prefix; the bulk trigger is whole."""
        chunk = 1 << 16
        on_server, server_tasks = await self.doomed(
            "server", (self.ports.serverToClientTun1ListenPort,), chunk, 0.005
        )
        on_client, client_tasks = await self.doomed(
            "client2", (self.ports.client2ToServerTun1ListenPort,), chunk, 0.005
        )
        size = PROFILE.impact_bulk_bytes
        loop = asyncio.get_running_loop()
        chunks = pattern_stream(53, size)
        sent_digest, received_digest = hashlib.sha256(), hashlib.sha256()
        bulk: list[asyncio.Task[tuple[None, int]]] = []
        conns: list[TestTcpSocket] = []

        async def write(conn: TestTcpSocket) -> None:
            for piece in chunks:
                conn.writer.write(piece)
                sent_digest.update(piece)
                await conn.writer.drain()

        async def read(conn: TestTcpSocket) -> int:
            got = 0
            while got < size:
                data = await conn.reader.read(1 << 20)
                if not data:
                    break
                received_digest.update(data)
                got += len(data)
            return got

        async def first() -> float:
            port = self.ports.client1ToServerTun1ListenPort
            conn = await self.connect("client1", port, "bulk trigger on client1")
            conns.append(conn)
            head = next(chunks)
            at = loop.time()
            conn.writer.write(head)  # the first data: the trigger
            sent_digest.update(head)

            async def both() -> tuple[None, int]:
                return await asyncio.gather(write(conn), read(conn))

            bulk.append(asyncio.create_task(both()))
            return at

        times = await self.failover(1, first)
        await self.assertClosedWithPrefix(on_server + on_client, server_tasks + client_tasks, times)
        _, got = await asyncio.wait_for(bulk[0], timeout(10 + size / 1e6))
        self.traffic.sent += size
        self.traffic.received += got
        self.assertEqual(got, size, "bytes of the triggering bulk transfer echoed")
        await conns[0].finish()
        await self.assertBackendsIdle(("client2-tun1", "shared-tun1"))
        self.assertEqual(
            received_digest.hexdigest(), sent_digest.hexdigest(), "SHA-256 of the bulk trigger"
        )
        self.assertReopened(times)
        self.assertEqual(await self.active_client(), 1)

    async def test_5_5_new_connections_reach_new_active_client(self) -> None:
        """5.5: new connections reach client 2, in the closed window and after the reopen."""
        ports = self.ports
        window: list[asyncio.Task[bool]] = []

        async def in_window() -> bool:
            """While the server's port refuses, client 2's ports carry new connections;
            True when the server still refused after they echoed (inside the window)."""
            server = (ports.serverHost, ports.serverToClientTun1ListenPort)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout(1)
            while await probe(*server):
                self.assertLess(loop.time(), deadline, "the server's port did not close")
                await asyncio.sleep(0.01)  # polling the port
            for port, data in ((ports.client2ToServerTun1ListenPort, b"window tun1"),
                               (ports.client2ToServerTun2ListenPort, b"window tun2")):  # fmt: skip
                await self.assertEcho("client2", port, data)
            return not await probe(*server)

        async def first() -> float:
            conn, at = await self.trigger(2)
            await conn.close()
            window.append(asyncio.create_task(in_window()))
            return at

        times = await self.failover(2, first)
        self.assertTrue(await window[0], "the window echoes finished before the server reopened")
        self.assertReopened(times)
        before = self.received()
        for where, port, data in (
            ("server", ports.serverToClientTun1ListenPort, b"after reopen tun1"),
            ("server", ports.serverToClientTun2ListenPort, b"after reopen tun2"),
            ("client2", ports.client2ToServerTun1ListenPort, b"new active tun1"),
            ("client2", ports.client2ToServerTun2ListenPort, b"new active tun2"),
        ):
            await self.assertEcho(where, port, data)
        self.assertRouted(
            before, {"client2-tun1": 17, "client2-tun2": 17, "shared-tun1": 15, "shared-tun2": 15}
        )
        for port in ports.client_ports(1):
            self.assertTrue(await probe(ports.host("client1"), port), f"client1 port {port}")
        self.assertEqual(await self.active_client(), 2, "a probe on the standby changes nothing")
