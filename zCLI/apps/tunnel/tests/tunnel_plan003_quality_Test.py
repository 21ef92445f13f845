"""Plan 003, suite 3: data quality tests (2.1-2.9), black box.

Each transfer writes the whole payload (100 MB in the full profile, 8 MB in the quick
one: ``ZTUNNEL_PROFILE``) and waits until the socket has taken all of it before it
reads any echo, so the tunnel must hold the whole payload in flight; then the echo's
SHA-256 must equal the payload's, and the echo backend of the expected client must have
received exactly that many bytes. 2.1-2.4 run with client 1 active, 2.5 fails over to
client 2, 2.6-2.9 repeat 2.1-2.4 through client 2.
"""

from __future__ import annotations

import asyncio
import hashlib

from zCLI.apps.tunnel.tests.plan003 import MB, PROFILE, TUNNEL, TunnelTestCase, payload
from zTestSuite import record_metric, requires_network, time_limit

__all__ = ["TUNNEL", "QualityTest"]

SERIAL = "moves hundreds of megabytes through three processes on a shared machine"

# Harness units (2 s each) allowed to read the echo: 10, plus one per 2 MB.
READ_UNITS = 10 + PROFILE.quality_bytes / (2 * MB)
# Written in pieces, each drained before the next: the same bytes in flight as one
# write, without asyncio copying a 100 MB buffer down after every send.
WRITE_BYTES = 1 << 20


@requires_network
@time_limit(60 + 4 * READ_UNITS)
class QualityTest(TunnelTestCase):
    """Suite 3: one large payload through each tunnel, checked by SHA-256."""

    async def transfer(self, where: str, port: int, backend: str, label: str) -> None:
        size = PROFILE.quality_bytes
        data = payload(size, label)
        want = hashlib.sha256(data).hexdigest()
        before = self.received()
        conn = await self.connect(where, port, label)
        loop = asyncio.get_running_loop()
        started = loop.time()
        view = memoryview(data)  # written fully and drained before any echo is read
        for start in range(0, size, WRITE_BYTES):
            await conn.send(view[start : start + WRITE_BYTES], READ_UNITS)
        written = loop.time()
        del view, data
        digest, got = await conn.receive_hashed(size, READ_UNITS)
        done = loop.time()
        await conn.close()
        record_metric("payload_bytes", size, "B")
        record_metric("write_drained", written - started, "s")
        record_metric("echo_complete", done - started, "s")
        record_metric("throughput", size / MB / max(done - started, 1e-9), "MB/s")
        self.assertEqual(got, size, f"{label}: echoed bytes")
        self.assertEqual(digest, want, f"{label}: SHA-256 of the echo")
        self.assertRouted(before, {backend: size})

    async def test_2_1_server_to_client_tun1(self) -> None:
        """2.1: the payload through the server's tun1 port echoes with the same SHA-256."""
        await self.transfer(
            "server", self.ports.serverToClientTun1ListenPort, "client1-tun1", "2.1"
        )

    async def test_2_2_server_to_client_tun2(self) -> None:
        """2.2: the same through the server's tun2 port."""
        await self.transfer(
            "server", self.ports.serverToClientTun2ListenPort, "client1-tun2", "2.2"
        )

    async def test_2_3_client_to_server_tun1(self) -> None:
        """2.3: the same through client 1's tun1 port."""
        port = self.ports.client1ToServerTun1ListenPort
        await self.transfer("client1", port, "shared-tun1", "2.3")

    async def test_2_4_client_to_server_tun2(self) -> None:
        """2.4: the same through client 1's tun2 port."""
        port = self.ports.client1ToServerTun2ListenPort
        await self.transfer("client1", port, "shared-tun2", "2.4")

    async def test_2_5_failover_event(self) -> None:
        """2.5: first data on client 2's port makes it active; the ports settle in time."""
        await self.failover_event(2)

    async def test_2_6_server_to_client_tun1_client2(self) -> None:
        """2.6: as 2.1, carried to client 2's backend."""
        await self.transfer(
            "server", self.ports.serverToClientTun1ListenPort, "client2-tun1", "2.6"
        )

    async def test_2_7_server_to_client_tun2_client2(self) -> None:
        """2.7: as 2.2, carried to client 2's backend."""
        await self.transfer(
            "server", self.ports.serverToClientTun2ListenPort, "client2-tun2", "2.7"
        )

    async def test_2_8_client_to_server_tun1_client2(self) -> None:
        """2.8: as 2.3 through client 2's tun1 port."""
        port = self.ports.client2ToServerTun1ListenPort
        await self.transfer("client2", port, "shared-tun1", "2.8")

    async def test_2_9_client_to_server_tun2_client2(self) -> None:
        """2.9: as 2.4 through client 2's tun2 port."""
        port = self.ports.client2ToServerTun2ListenPort
        await self.transfer("client2", port, "shared-tun2", "2.9")
