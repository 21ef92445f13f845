"""Plan 003, suite 5: multiple concurrent connections (4.1-4.7), black box.

Ten connections open at once, each echoing its own 1 KB (the plan asks 9 of 10 at
least), and twenty connect-echo-close cycles of 512 bytes (18 of 20 at least). An echo
succeeds only when it is exactly what was sent; when all succeed, the echo backends
must have received exactly the bytes sent, at the expected client. 4.1-4.3 run with
client 1 active, 4.4 fails over to client 2, 4.5-4.7 repeat 4.1-4.3 through client 2.
"""

from __future__ import annotations

import asyncio

from zCLI.apps.tunnel.tests.plan003 import TUNNEL, TestTcpSocket, TunnelTestCase, payload
from zTestSuite import record_metric, requires_network, time_limit

__all__ = ["TUNNEL", "ConcurrentTest"]

SERIAL = "failover timings are measured to the second: no other suite's load beside it"

CONNECTIONS, CONCURRENT_BYTES, CONCURRENT_NEEDED = 10, 1000, 9
CYCLES, CYCLE_BYTES, CYCLES_NEEDED = 20, 512, 18


@requires_network
@time_limit(90)
class ConcurrentTest(TunnelTestCase):
    """Suite 5: connections opening and closing together."""

    async def one_echo(self, where: str, port: int, label: str, size: int) -> str | None:
        """None when a new connection echoes ``size`` bytes exactly; else why not."""
        data = payload(size, label)
        try:
            conn = await self.connect(where, port, label)
            got = await conn.echo(data)
            await conn.close()
        except AssertionError as failed:
            return f"{label}: {failed}"
        return None if got == data else f"{label}: the echo differs"

    async def concurrent(self, where: str, port: int, backend: str, label: str) -> None:
        before = self.received()
        data = [payload(CONCURRENT_BYTES, f"{label}-{n}") for n in range(CONNECTIONS)]
        opened = await asyncio.gather(
            *(self.connect(where, port, f"{label}-{n}") for n in range(CONNECTIONS)),
            return_exceptions=True,
        )
        conns = [conn for conn in opened if isinstance(conn, TestTcpSocket)]

        async def exchange(n: int) -> str | None:
            conn = opened[n]
            if not isinstance(conn, TestTcpSocket):
                return f"{label}-{n}: {conn}"
            try:
                got = await conn.echo(data[n])
            except AssertionError as failed:
                return str(failed)
            return None if got == data[n] else f"{label}-{n}: the echo differs"

        failures = [f for f in await asyncio.gather(*map(exchange, range(CONNECTIONS))) if f]
        await asyncio.gather(*(conn.close() for conn in conns))
        succeeded = CONNECTIONS - len(failures)
        record_metric("connections_succeeded", succeeded)
        self.assertGreaterEqual(succeeded, CONCURRENT_NEEDED, failures)
        if not failures:
            self.assertRouted(before, {backend: CONNECTIONS * CONCURRENT_BYTES})

    async def cycles(self, where: str, port: int, label: str) -> None:
        before = self.received()
        failures = []
        for n in range(CYCLES):
            failed = await self.one_echo(where, port, f"{label}-{n}", CYCLE_BYTES)
            if failed:
                failures.append(failed)
        succeeded = CYCLES - len(failures)
        record_metric("cycles_succeeded", succeeded)
        self.assertGreaterEqual(succeeded, CYCLES_NEEDED, failures)
        if not failures:
            self.assertRouted(before, {"shared-tun1": CYCLES * CYCLE_BYTES})

    async def test_4_1_ten_concurrent_client1(self) -> None:
        """4.1: ten connections at once through client 1's tun1 port, each echoed whole."""
        port = self.ports.client1ToServerTun1ListenPort
        await self.concurrent("client1", port, "shared-tun1", "4.1")

    async def test_4_2_ten_concurrent_server_to_client(self) -> None:
        """4.2: ten connections at once through the server's tun1 port, to client 1."""
        port = self.ports.serverToClientTun1ListenPort
        await self.concurrent("server", port, "client1-tun1", "4.2")

    async def test_4_3_twenty_sequential_cycles_client1(self) -> None:
        """4.3: twenty connect-echo-close cycles through client 1's tun1 port."""
        await self.cycles("client1", self.ports.client1ToServerTun1ListenPort, "4.3")

    async def test_4_4_failover_event(self) -> None:
        """4.4: first data on client 2's port makes it active; the ports settle in time."""
        await self.failover_event(2)

    async def test_4_5_ten_concurrent_client2(self) -> None:
        """4.5: as 4.1 through client 2's tun1 port."""
        port = self.ports.client2ToServerTun1ListenPort
        await self.concurrent("client2", port, "shared-tun1", "4.5")

    async def test_4_6_ten_concurrent_server_to_client2(self) -> None:
        """4.6: as 4.2, carried to client 2."""
        port = self.ports.serverToClientTun1ListenPort
        await self.concurrent("server", port, "client2-tun1", "4.6")

    async def test_4_7_twenty_sequential_cycles_client2(self) -> None:
        """4.7: as 4.3 through client 2's tun1 port."""
        await self.cycles("client2", self.ports.client2ToServerTun1ListenPort, "4.7")
