"""Plan 003, suite 4: ping-pong tests (3.1-3.9), black box.

One connection per test sends a 500-byte packet, waits for its whole echo, then waits
10 ms (the plan's load shape), 1000 times in the full profile and 200 in the quick one
(``ZTUNNEL_PROFILE``). An iteration succeeds when its echo is exactly the packet; the
plan asks for 95 % at least. Each round trip is recorded as a latency sample. 3.1-3.4
run with client 1 active, 3.5 fails over to client 2, 3.6-3.9 repeat 3.1-3.4 through
client 2.
"""

from __future__ import annotations

import asyncio

from zCLI.apps.tunnel.tests.plan003 import PROFILE, TUNNEL, TunnelTestCase, payload
from zTestSuite import record_metric, record_samples, requires_network, time_limit

__all__ = ["TUNNEL", "PingPongTest"]

SERIAL = "round-trip latencies are measured: no other suite's load beside it"

PACKET = 500
PAUSE = 0.010  # the plan's 10 ms between an echo and the next packet
SUCCESS_RATE = 0.95


@requires_network
@time_limit(60 + PROFILE.pingpong_iterations * 0.1)
class PingPongTest(TunnelTestCase):
    """Suite 4: many small round trips through each tunnel."""

    async def ping_pong(self, where: str, port: int, backend: str, label: str) -> None:
        iterations = PROFILE.pingpong_iterations
        loop = asyncio.get_running_loop()
        before = self.received()
        conn = await self.connect(where, port, label)
        succeeded = 0
        failures: list[str] = []
        rtts: list[float] = []
        for index in range(iterations):
            data = payload(PACKET, f"{label}-{index}")
            sent = loop.time()
            try:
                got = await conn.echo(data, units=1)
            except AssertionError as failed:
                failures.append(f"iteration {index}: {failed}")
                if "ended" in str(failed):
                    break  # the connection is gone: every later iteration fails too
                continue
            if got == data:
                succeeded += 1
                rtts.append((loop.time() - sent) * 1000)
            else:
                failures.append(f"iteration {index}: the echo differs")
            await asyncio.sleep(PAUSE)  # the plan's load shape, not a synchronisation
        await conn.close()
        rate = succeeded / iterations
        record_metric("iterations", iterations)
        record_metric("success_rate", rate * 100, "%")
        record_samples("round_trip", rtts, "ms")
        self.assertGreaterEqual(
            rate, SUCCESS_RATE, f"{succeeded}/{iterations} echoed; first failures: {failures[:5]}"
        )
        if succeeded == iterations:
            self.assertRouted(before, {backend: PACKET * iterations})

    async def test_3_1_client_to_server_tun1(self) -> None:
        """3.1: 500-byte round trips through client 1's tun1 port, 95 % whole at least."""
        port = self.ports.client1ToServerTun1ListenPort
        await self.ping_pong("client1", port, "shared-tun1", "3.1")

    async def test_3_2_client_to_server_tun2(self) -> None:
        """3.2: the same through client 1's tun2 port."""
        port = self.ports.client1ToServerTun2ListenPort
        await self.ping_pong("client1", port, "shared-tun2", "3.2")

    async def test_3_3_server_to_client_tun1(self) -> None:
        """3.3: the same through the server's tun1 port, carried to client 1."""
        port = self.ports.serverToClientTun1ListenPort
        await self.ping_pong("server", port, "client1-tun1", "3.3")

    async def test_3_4_server_to_client_tun2(self) -> None:
        """3.4: the same through the server's tun2 port, carried to client 1."""
        port = self.ports.serverToClientTun2ListenPort
        await self.ping_pong("server", port, "client1-tun2", "3.4")

    async def test_3_5_failover_event(self) -> None:
        """3.5: first data on client 2's port makes it active; the ports settle in time."""
        await self.failover_event(2)

    async def test_3_6_client_to_server_tun1_client2(self) -> None:
        """3.6: as 3.1 through client 2's tun1 port."""
        port = self.ports.client2ToServerTun1ListenPort
        await self.ping_pong("client2", port, "shared-tun1", "3.6")

    async def test_3_7_client_to_server_tun2_client2(self) -> None:
        """3.7: as 3.2 through client 2's tun2 port."""
        port = self.ports.client2ToServerTun2ListenPort
        await self.ping_pong("client2", port, "shared-tun2", "3.7")

    async def test_3_8_server_to_client_tun1_client2(self) -> None:
        """3.8: as 3.3, carried to client 2."""
        port = self.ports.serverToClientTun1ListenPort
        await self.ping_pong("server", port, "client2-tun1", "3.8")

    async def test_3_9_server_to_client_tun2_client2(self) -> None:
        """3.9: as 3.4, carried to client 2."""
        port = self.ports.serverToClientTun2ListenPort
        await self.ping_pong("server", port, "client2-tun2", "3.9")
