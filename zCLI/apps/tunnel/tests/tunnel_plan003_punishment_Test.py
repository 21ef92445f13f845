"""Plan 003, suite 7: maximum punishment tests (6.1-6.6), black box.

Each transfer test opens 100 connections first (they sit idle until their turn), then
runs one transfer on each, 20 at a time: the transfer writes a deterministic stream
unique to its connection while reading the echo back. Sizes run from 100 KB to 250 MB
in the full profile (5 MB in the quick one, ``ZTUNNEL_PROFILE``), drawn as
``100 KB * (max / 100 KB) ** (u ** 3)`` for uniform ``u``, weighted toward small: the
median is about 270 KB and the mean about 12 MB in the full profile (0.7-1.5 GB each way
per test with the default seed), 160 KB and 0.6 MB in the quick one (40-70 MB per
test). The generator is seeded with ``ZTUNNEL_SEED``, so a run repeats. Every echo
must have exactly the size sent; one of 5 MB or less must also have the SHA-256 of what
was sent; the plan asks for 95 of 100.
6.1-6.2 run with client 1 active, 6.3 fails over to client 2, 6.4-6.5 repeat 6.1-6.2
through client 2, 6.6 fails back to client 1.
"""

from __future__ import annotations

import asyncio
import hashlib
import random

from zCLI.apps.tunnel.tests.plan003 import (
    MB,
    PROFILE,
    SEED,
    TUNNEL,
    TestTcpSocket,
    TunnelTestCase,
    pattern_stream,
)
from zTestSuite import record_metric, record_samples, requires_network, time_limit, timeout

__all__ = ["TUNNEL", "PunishmentTest", "transfer_sizes"]

SERIAL = "moves gigabytes through three processes: it needs the machine to itself"

CONCURRENT = 20
CHECKSUM_UP_TO = 5 * MB
SUCCEEDED_NEEDED = 95


def transfer_sizes(label: str, count: int = PROFILE.punishment_transfers) -> list[int]:
    """The plan's random transfer sizes for one test, the same for the same seed."""
    rng = random.Random(f"{SEED}:punishment:{label}")
    low, high = PROFILE.punishment_min_bytes, PROFILE.punishment_max_bytes
    return [int(low * (high / low) ** (rng.random() ** 3)) for _ in range(count)]


def units_for(size: int) -> float:
    """Harness units (2 s each) a transfer of ``size`` bytes may take: 10, plus one per MB."""
    return 10 + size / MB


@requires_network
@time_limit(1800 if PROFILE.name == "full" else 300)
class PunishmentTest(TunnelTestCase):
    """Suite 7: a hundred transfers of random sizes, twenty at a time."""

    async def transfer(self, conn: TestTcpSocket, key: int, size: int) -> str | None:
        """One transfer on an open connection; None when its echo is right, else why."""
        checked = size <= CHECKSUM_UP_TO
        sent_digest, received_digest = hashlib.sha256(), hashlib.sha256()

        async def write() -> None:
            for chunk in pattern_stream(key, size):
                conn.writer.write(chunk)
                if checked:
                    sent_digest.update(chunk)
                await conn.writer.drain()
            self.traffic.sent += size

        async def read() -> int:
            got = 0
            while got < size:
                chunk = await conn.reader.read(min(1 << 20, size - got))
                if not chunk:
                    break
                if checked:
                    received_digest.update(chunk)
                got += len(chunk)
            self.traffic.received += got
            return got

        try:
            _, got = await asyncio.wait_for(
                asyncio.gather(write(), read()), timeout(units_for(size))
            )
        except TimeoutError:
            return f"transfer {key} ({size} B): not done within {timeout(units_for(size)):g}s"
        except OSError as exc:
            return f"transfer {key} ({size} B): {exc!r}"
        if got != size:
            return f"transfer {key}: {got} of {size} bytes came back"
        if checked and received_digest.digest() != sent_digest.digest():
            return f"transfer {key} ({size} B): the SHA-256 of the echo differs"
        return None

    async def punish(self, where: str, port: int, backend: str, label: str) -> None:
        sizes = transfer_sizes(label)
        before = self.received()
        conns = []
        for n in range(len(sizes)):
            conns.append(await self.connect(where, port, f"{label}-{n}"))
        gate = asyncio.Semaphore(CONCURRENT)
        durations: list[float] = []
        loop = asyncio.get_running_loop()

        async def run(n: int) -> str | None:
            async with gate:
                started = loop.time()
                failed = await self.transfer(conns[n], 1000 * n + len(label), sizes[n])
                durations.append(loop.time() - started)
                await conns[n].close()
                return failed

        started = loop.time()
        outcomes = await asyncio.gather(*(run(n) for n in range(len(sizes))))
        elapsed = loop.time() - started
        failures = [failed for failed in outcomes if failed]
        total = sum(sizes)
        succeeded = len(sizes) - len(failures)
        record_metric("transfers", len(sizes))
        record_metric("transfers_succeeded", succeeded)
        record_metric("bytes_each_way", total, "B")
        record_metric("largest_transfer", max(sizes), "B")
        record_metric("throughput", total / MB / max(elapsed, 1e-9), "MB/s")
        record_samples("transfer_duration", durations, "s")
        self.assertGreaterEqual(succeeded, SUCCEEDED_NEEDED, failures[:10])
        if not failures:
            self.assertRouted(before, {backend: total})

    async def test_6_1_client_to_server_tun1(self) -> None:
        """6.1: 100 transfers through client 1's tun1 port, 20 at once: 95 echoed exactly."""
        port = self.ports.client1ToServerTun1ListenPort
        await self.punish("client1", port, "shared-tun1", "6.1")

    async def test_6_2_server_to_client_tun1(self) -> None:
        """6.2: 100 transfers through the server's tun1 port to client 1, 20 at once."""
        port = self.ports.serverToClientTun1ListenPort
        await self.punish("server", port, "client1-tun1", "6.2")

    async def test_6_3_failover_event(self) -> None:
        """6.3: first data on client 2's port makes it active; the ports settle in time."""
        await self.failover_event(2)

    async def test_6_4_client_to_server_tun1_client2(self) -> None:
        """6.4: as 6.1 through client 2's tun1 port."""
        port = self.ports.client2ToServerTun1ListenPort
        await self.punish("client2", port, "shared-tun1", "6.4")

    async def test_6_5_server_to_client_tun1_client2(self) -> None:
        """6.5: as 6.2, carried to client 2."""
        port = self.ports.serverToClientTun1ListenPort
        await self.punish("server", port, "client2-tun1", "6.5")

    async def test_6_6_back_to_client1_failover(self) -> None:
        """6.6: first data on client 1's port makes it active again; the ports settle."""
        await self.failover_event(1)
