"""Plan 003, suite 1: basic echo tests (1.1-1.9), black box.

Tests 1.1-1.4 run with client 1 active, 1.5 is the failover to client 2, and 1.6-1.9
repeat 1.1-1.4 through client 2. Every echo is checked whole, and the bytes each echo
backend received show which client carried the connection. Profiles and targets:
``plan003``'s docstring (``ZTUNNEL_PROFILE``, ``TUNNEL``).
"""

from __future__ import annotations

import asyncio

from zCLI.apps.tunnel.tests.plan003 import TUNNEL, TunnelTestCase
from zTestSuite import requires_network, time_limit

__all__ = ["TUNNEL", "EchoTest"]

SERIAL = "failover timings are measured to the second: no other suite's load beside it"


@requires_network
@time_limit(60)
class EchoTest(TunnelTestCase):
    """Suite 1: one message each way through each tunnel, before and after a failover."""

    async def server_to_client_tun1(self, client: int) -> None:
        before = self.received()
        await self.assertEcho("server", self.ports.serverToClientTun1ListenPort, b"HELLO")
        self.assertRouted(before, {f"client{client}-tun1": 5})

    async def client_to_server_tun1(self, client: int) -> None:
        before = self.received()
        port = self.ports.client_ports(client)[0]
        await self.assertEcho(f"client{client}", port, b"WORLD")
        self.assertRouted(before, {"shared-tun1": 5})

    async def combined_sequential(self, client: int) -> None:
        before = self.received()
        await self.assertEcho("server", self.ports.serverToClientTun1ListenPort, b"SERVER")
        await self.assertEcho(f"client{client}", self.ports.client_ports(client)[0], b"CLIENT")
        self.assertRouted(before, {f"client{client}-tun1": 6, "shared-tun1": 6})

    async def both_tunnels(self, client: int) -> None:
        before = self.received()
        tun1 = await self.connect("server", self.ports.serverToClientTun1ListenPort)
        tun2 = await self.connect("server", self.ports.serverToClientTun2ListenPort)
        await tun1.send(b"TUN1")
        await tun2.send(b"TUN2")
        got1, got2 = await asyncio.gather(tun1.receive_exactly(4), tun2.receive_exactly(4))
        self.assertEqual((got1, got2), (b"TUN1", b"TUN2"))
        await tun1.close()
        await tun2.close()
        self.assertRouted(before, {f"client{client}-tun1": 4, f"client{client}-tun2": 4})

    async def test_1_1_server_to_client_tun1_echo(self) -> None:
        """1.1: "HELLO" through the server's tun1 port comes back whole, via client 1."""
        await self.server_to_client_tun1(1)

    async def test_1_2_client_to_server_tun1_echo(self) -> None:
        """1.2: "WORLD" through client 1's tun1 port comes back whole, via the server."""
        await self.client_to_server_tun1(1)

    async def test_1_3_combined_tun1_sequential(self) -> None:
        """1.3: "SERVER" through the server, then "CLIENT" through client 1, each whole."""
        await self.combined_sequential(1)

    async def test_1_4_both_server_tunnels_simultaneously(self) -> None:
        """1.4: "TUN1" and "TUN2" on both server ports at once, each on its own tunnel."""
        await self.both_tunnels(1)

    async def test_1_5_failover_event(self) -> None:
        """1.5: first data on client 2's port makes it active; the ports settle in time."""
        await self.failover_event(2)

    async def test_1_6_server_to_client_tun1_echo_client2(self) -> None:
        """1.6: as 1.1, now carried to client 2's backend."""
        await self.server_to_client_tun1(2)

    async def test_1_7_client_to_server_tun1_echo_client2(self) -> None:
        """1.7: as 1.2 through client 2's tun1 port."""
        await self.client_to_server_tun1(2)

    async def test_1_8_combined_tun1_sequential_client2(self) -> None:
        """1.8: as 1.3 with client 2."""
        await self.combined_sequential(2)

    async def test_1_9_both_tunnels_simultaneously_client2(self) -> None:
        """1.9: as 1.4 via client 2, plus client 2's tun1 and tun2 ports at the same time."""
        before = self.received()
        ports = self.ports
        conns = [
            await self.connect("server", ports.serverToClientTun1ListenPort),
            await self.connect("server", ports.serverToClientTun2ListenPort),
            await self.connect("client2", ports.client2ToServerTun1ListenPort),
            await self.connect("client2", ports.client2ToServerTun2ListenPort),
        ]
        sent = [b"TUN1", b"TUN2", b"C2S-TUN1", b"C2S-TUN2"]
        for conn, data in zip(conns, sent, strict=True):
            await conn.send(data)
        got = await asyncio.gather(
            *(c.receive_exactly(len(d)) for c, d in zip(conns, sent, strict=True))
        )
        self.assertEqual(got, sent)
        for conn in conns:
            await conn.close()
        self.assertRouted(
            before, {"client2-tun1": 4, "client2-tun2": 4, "shared-tun1": 8, "shared-tun2": 8}
        )
