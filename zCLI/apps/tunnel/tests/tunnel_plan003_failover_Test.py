"""Plan 003, suite 2: the failover testing specification (tests 1-13), black box.

Test 1 makes client 1 active. Tests 2-5 (connection persistence), 6-9 (the server's
listen ports) and 10-13 (the new standby's listen ports) each trigger a failover, to
client 2, 1, 2, 1 in turn. Port closing and reopening is measured by polling connects
(every 20 ms) on the listen ports: closed within 1 s of the trigger's first byte,
reopened reconnectTimeoutSecs ± 1 s after closing; each time is recorded as a metric.

The plan's execution order counts this suite as 10 tests, but it describes 13 (1,
2-5, 6-9, 10-13); all 13 are here, and the plan's total of 58 comes out with them.
Persistence lasts 30 s in the full profile, 5 s in the quick one (``ZTUNNEL_PROFILE``).
"""

from __future__ import annotations

import asyncio

from zCLI.apps.tunnel.tests.plan003 import PROFILE, TUNNEL, TestTcpSocket, TunnelTestCase
from zTestSuite import record_metric, record_samples, requires_network, time_limit

__all__ = ["TUNNEL", "FailoverTest"]

SERIAL = "failover timings are measured to the second: no other suite's load beside it"

# How much later than the server's the new standby's port may be seen reopening: the
# two are polled in turn every 20 ms, so one poll's lag is no evidence of disorder.
POLL_LAG = 0.1


@requires_network
@time_limit(60 + 2 * PROFILE.persistence_secs)
class FailoverTest(TunnelTestCase):
    """Suite 2: failovers back and forth, what they keep and what they close."""

    @staticmethod
    def message(to: int, index: int) -> bytes:
        return f"persistence to client{to}: message {index:03d}\n".encode()

    async def keep_talking(
        self, conn: TestTcpSocket, to: int, started: float, secs: int
    ) -> list[float]:
        """Messages 1 .. secs-1, one a second from ``started`` (the plan's pace), each
        echoed whole; then hold the connection to ``started + secs``. Round trips, ms."""
        loop = asyncio.get_running_loop()
        rtts = []
        for index in range(1, secs):
            await asyncio.sleep(max(0.0, started + index - loop.time()))  # the plan's pace
            data = self.message(to, index)
            sent = loop.time()
            self.assertEqual(await conn.echo(data), data, f"message {index} through the failover")
            rtts.append((loop.time() - sent) * 1000)
        await asyncio.sleep(max(0.0, started + secs - loop.time()))  # the plan's 30 s
        return rtts

    async def persistence(self, to: int) -> None:
        """Tests 2-5: the connection that triggers the failover stays up for the whole
        time, every message echoed whole, and closes cleanly."""
        secs = PROFILE.persistence_secs
        talking: list[asyncio.Task[list[float]]] = []
        conns: list[TestTcpSocket] = []

        async def first() -> float:
            conn, at = await self.trigger(to, self.message(to, 0))
            conns.append(conn)
            talking.append(asyncio.create_task(self.keep_talking(conn, to, at, secs)))
            return at

        times = await self.failover(to, first)
        rtts = await talking[0]
        self.assertReopened(times)
        await conns[0].finish()
        record_metric("messages_echoed", len(rtts) + 1)
        record_samples("message_rtt", rtts, "ms")
        self.assertEqual(await self.active_client(), to, f"client{to} is active")

    async def port_closure(self, to: int, owner: str) -> None:
        times = await self.failover(to)
        self.assertFailoverTimes(times, (owner,))
        if owner != "server":
            server = [w.reopened_at for w in times.watches if w.owner == "server"]
            first = min(at for at in server if at is not None)  # all reopened: asserted above
            for watch in times.watches:
                if watch.owner == owner and watch.reopened_at is not None:
                    lag = watch.reopened_at - first
                    self.assertLessEqual(
                        lag, POLL_LAG, f"{watch.describe()} reopened {lag:.3f}s after the server"
                    )
        self.assertEqual(await self.active_client(), to, f"client{to} is active")

    async def test_01_reset_to_client1_active(self) -> None:
        """1: the system is reset to client 1 active (a failover only if it is not)."""
        await self.make_active(1)
        self.assertEqual(await self.active_client(), 1)

    async def test_02_persistence_failover_to_client2(self) -> None:
        """2: the connection making client 2 active keeps echoing, one message a second."""
        await self.persistence(2)

    async def test_03_persistence_failover_to_client1(self) -> None:
        """3: the connection making client 1 active keeps echoing, one message a second."""
        await self.persistence(1)

    async def test_04_persistence_failover_to_client2(self) -> None:
        """4: as 2, a second time."""
        await self.persistence(2)

    async def test_05_persistence_failover_to_client1(self) -> None:
        """5: as 3, a second time."""
        await self.persistence(1)

    async def test_06_server_ports_failover_to_client2(self) -> None:
        """6: the server's listen ports close within 1 s and reopen after the timeout ±1 s."""
        await self.port_closure(2, "server")

    async def test_07_server_ports_failover_to_client1(self) -> None:
        """7: as 6, failing over to client 1."""
        await self.port_closure(1, "server")

    async def test_08_server_ports_failover_to_client2(self) -> None:
        """8: as 6, a second time."""
        await self.port_closure(2, "server")

    async def test_09_server_ports_failover_to_client1(self) -> None:
        """9: as 7, a second time."""
        await self.port_closure(1, "server")

    async def test_10_new_standby_ports_failover_to_client2(self) -> None:
        """10: client 1's ports close within 1 s, reopen at the timeout ±1 s, by the server's."""
        await self.port_closure(2, "client1")

    async def test_11_new_standby_ports_failover_to_client1(self) -> None:
        """11: client 2's listen ports close within 1 s, reopen after the timeout ±1 s."""
        await self.port_closure(1, "client2")

    async def test_12_new_standby_ports_failover_to_client2(self) -> None:
        """12: as 10, a second time."""
        await self.port_closure(2, "client1")

    async def test_13_new_standby_ports_failover_to_client1(self) -> None:
        """13: as 11, a second time."""
        await self.port_closure(1, "client2")
