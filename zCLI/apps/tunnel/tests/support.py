"""What zTunnel's own suites share: free ports below 32768, config files, echo backends,
and a server with two clients running in-process on real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from zCLI.apps.tunnel.config import TunnelConfig, load
from zCLI.apps.tunnel.endpoints import TunnelClient, TunnelServer

__all__ = [
    "make_certificates",
    "EchoServer",
    "Ports",
    "Tunnels",
    "free_ports",
    "read_until_closed",
    "wait_for",
    "write_configs",
]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` consecutive ports between 20000 and 32000 that bind now (below the
    ephemeral range, so no outgoing connection takes them meanwhile)."""
    for _ in range(200):
        base = random.randrange(20000, 32000 - count)
        held: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                held.append(sock)
                sock.bind((host, port))
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
        return list(range(base, base + count))
    raise RuntimeError("no free block of ports between 20000 and 32000")


async def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Until ``condition()`` holds (checked every loop turn and every millisecond)."""
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.001)


class EchoServer:
    """A TCP backend that echoes, and that can hold its echo (``paused``) to play a slow
    reader. It records what each connection did, for exact assertions."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0
        self.accepted = 0
        self.eofs = 0
        self.reading = asyncio.Event()
        self.reading.set()

    async def start(self, port: int = 0) -> EchoServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            while True:
                await self.reading.wait()
                data = await reader.read(65536)
                if not data:
                    self.eofs += 1
                    writer.write_eof()
                    await writer.drain()
                    break
                writer.write(data)
                await writer.drain()
            await reader.read()  # until the tunnel closes its side
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        data = await reader.read(1 << 20)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


class Ports:
    """Named ports of one three-process layout."""

    def __init__(self) -> None:
        block = free_ports(8)
        self.ws = block[0]
        self.server_tun1 = block[1]  # server listens, carried to the active client
        self.server_tun2 = block[2]
        self.client1_tun1 = block[3]  # client 1 listens, carried to the server
        self.client2_tun1 = block[4]
        self.client1_tun2 = block[5]
        self.client2_tun2 = block[6]
        self.spare = block[7]


def write_configs(
    folder: Path,
    ports: Ports,
    backends: dict[str, int],
    *,
    scheme: str = "ws",
    token: str | None = None,
    close_secs: float = 1,
    tuning: dict[str, Any] | None = None,
    exchange: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Path]:
    """server.json, client1.json, client2.json. ``backends`` maps "server-tun1",
    "server-tun2" (the server's dials) and "client1-tun1" ... (each client's dials)."""
    paths = {}
    for name in ("server", "client1", "client2"):
        data: dict[str, Any] = {
            "weAreServer": name == "server",
            "standbySocketCloseDurationSecs": close_secs,
            "dataExchange": {"serverUrl": f"{scheme}://127.0.0.1:{ports.ws}", "authToken": token},
            "logging": {"level": "DEBUG"},
        }
        data["dataExchange"].update((exchange or {}).get(name, {}))
        if tuning:
            data["tuning"] = tuning
        if name == "server":
            data["tcpTunnelListens"] = [
                {"tunnelName": "s2c-tun1", "listenPort": ports.server_tun1},
                {"tunnelName": "s2c-tun2", "listenPort": ports.server_tun2},
            ]
            data["tcpTunnelConnects"] = [
                {"tunnelName": f"c2s-tun{n}", "connectToHost": "127.0.0.1", "connectToPort": port}
                for n, port in ((1, backends.get("server-tun1")), (2, backends.get("server-tun2")))
                if port
            ]
        else:
            number = int(name[-1])
            data["clientId"] = number
            listens = (
                (ports.client1_tun1, ports.client1_tun2)
                if number == 1
                else (ports.client2_tun1, ports.client2_tun2)
            )
            data["tcpTunnelListens"] = [
                {"tunnelName": "c2s-tun1", "listenPort": listens[0]},
                {"tunnelName": "c2s-tun2", "listenPort": listens[1]},
            ]
            data["tcpTunnelConnects"] = [
                {"tunnelName": f"s2c-tun{n}", "connectToHost": "127.0.0.1", "connectToPort": port}
                for n, port in (
                    (1, backends.get(f"{name}-tun1")),
                    (2, backends.get(f"{name}-tun2")),
                )
                if port
            ]
        path = folder / f"{name}.json"
        path.write_text(json.dumps(data, indent=2), encoding="utf-8")
        paths[name] = path
    return paths


class _Quiet:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


class Tunnels:
    """A server and its clients, in-process: ``await tunnels.start()``, then use the
    ports; ``stop()`` closes everything."""

    def __init__(self, paths: dict[str, Path]) -> None:
        self.configs: dict[str, TunnelConfig] = {
            "server": load(paths["server"], "server"),
            "client1": load(paths["client1"], "client"),
            "client2": load(paths["client2"], "client"),
        }
        self.server = TunnelServer(self.configs["server"], out=_Quiet())  # type: ignore[arg-type]
        self.clients: dict[int, TunnelClient] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}

    async def start(self, *clients: int) -> None:
        await self.server.start()
        for number in clients:
            await self.start_client(number)

    async def start_client(self, number: int) -> TunnelClient:
        client = TunnelClient(self.configs[f"client{number}"], out=_Quiet())  # type: ignore[arg-type]
        self.clients[number] = client
        self.tasks[f"client{number}"] = asyncio.create_task(client.run())
        await wait_for(lambda: number in self.server.pumps and client.pump is not None)
        await wait_for(lambda: client.pump is not None and client.pump.link.greeted)
        return client

    async def stop_client(self, number: int) -> None:
        task = self.tasks.pop(f"client{number}")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await wait_for(lambda: number not in self.server.pumps)

    async def stop(self) -> None:
        for name in list(self.tasks):
            task = self.tasks.pop(name)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.server.stop()


@contextlib.asynccontextmanager
async def connection(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


def make_certificates(folder: Path) -> dict[str, Path]:
    """A CA and three leaf certificates signed by it (server for 127.0.0.1/localhost,
    client1, client2), plus a stranger signed by another CA. Each ``NAME.pem`` holds the
    certificate and its key (a tlsBundleFilePath); ``ca.pem`` and ``NAME.crt`` hold only
    certificates."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def issue(
        subject: str, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None, ca: bool
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        issuer_name, issuer_key = issuer if issuer is not None else (name(subject), key)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
        return builder.sign(issuer_key, hashes.SHA256()), key

    def pem(cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    ca_cert, ca_key = issue("zTunnel test CA", None, True)
    other_cert, other_key = issue("another CA", None, True)
    paths = {"ca": folder / "ca.pem"}
    paths["ca"].write_bytes(pem(ca_cert))
    for leaf, issuer in (
        ("server", (ca_cert.subject, ca_key)),
        ("client1", (ca_cert.subject, ca_key)),
        ("client2", (ca_cert.subject, ca_key)),
        ("stranger", (other_cert.subject, other_key)),
    ):
        cert, key = issue(leaf, issuer, False)
        paths[leaf] = folder / f"{leaf}.pem"
        paths[leaf].write_bytes(pem(cert) + key_pem(key))
        paths[f"{leaf}.crt"] = folder / f"{leaf}.crt"
        paths[f"{leaf}.crt"].write_bytes(pem(cert))
    return paths
