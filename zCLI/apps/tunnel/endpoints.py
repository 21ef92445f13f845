"""The server and client processes: WebSocket links, TCP listeners and dials, failover.

Thin adapters around ``core.Link`` (per link) and ``roles.Roles`` (the server's choice
of active client); docs/tunnel.md is the contract.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import sys
from collections.abc import Coroutine
from typing import Any, TextIO

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from .config import ConnectEntry, ListenEntry, TunnelConfig
from .core import Activate, Budget, Effect, HelloReceived, Link, RoleReceived, Welcomed
from .frames import HEADER_SIZE, ProtocolViolation
from .pump import WS_WRITE_LIMIT, Pump
from .roles import Decision, Roles
from .tcp import StreamConnection, hard_close
from .tls import client_context, peer_allowed, pinned_certificates, server_context
from .wsconn import FastClientConnection, FastServerConnection

__all__ = ["TunnelClient", "TunnelServer"]

log = logging.getLogger("zCLI.apps.tunnel")

HELLO_TIMEOUT = 10.0  # seconds a new link has to say HELLO
DIAL_TIMEOUT = 10.0
ROLE_TRANSIT = 0.05  # seconds a demoted client reopens before closeSecs are up


class _Side:
    """What server and client share: listeners that close and reopen, and dials."""

    def __init__(self, config: TunnelConfig, out: TextIO | None = None) -> None:
        self.config = config
        self.out = out or sys.stdout
        tuning = config.tuning
        self.budget = Budget(tuning.memory_cap)
        self.window = tuning.window
        self.connects: dict[str, ConnectEntry] = {entry.tunnel: entry for entry in config.connects}
        self.listeners: list[asyncio.Server] = []
        self.accepted: set[StreamConnection] = set()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.reopen: asyncio.TimerHandle | None = None
        self.max_size = 2 * (tuning.chunk + HEADER_SIZE)  # over chunk+header: 1002 from us

    def new_link(self, server: bool) -> Link:
        tuning = self.config.tuning
        return Link(server=server, window=tuning.window, chunk=tuning.chunk, budget=self.budget)

    def spawn(self, coroutine: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    # ------------------------------------------------------------ listeners

    async def open_listeners(self, *, retry: bool = False) -> None:
        loop = asyncio.get_running_loop()
        for entry in self.config.listens:
            while True:
                try:
                    server = await loop.create_server(
                        lambda entry=entry: self._accepting(entry),  # type: ignore[misc]
                        entry.host,
                        entry.port,
                        reuse_address=True,
                        backlog=256,
                    )
                except OSError as error:
                    if not retry:
                        raise
                    log.warning(
                        "tunnel %s: cannot listen on %s:%d yet (%s)",
                        entry.tunnel,
                        entry.host,
                        entry.port,
                        error,
                    )
                    await asyncio.sleep(0.2)  # a port held by someone else: poll until free
                    continue
                self.listeners.append(server)
                log.info("tunnel %s: listening on %s:%d", entry.tunnel, entry.host, entry.port)
                break

    def _accepting(self, entry: ListenEntry) -> StreamConnection:
        conn = StreamConnection(self, entry.tunnel, accepted=True)  # type: ignore[arg-type]
        conn.on_accept = self.on_accept
        return conn

    def close_listeners(self, close_secs: float, why: str) -> None:
        """Close every listening socket and what it accepted; reopen after close_secs."""
        for server in self.listeners:
            server.close()
        self.listeners.clear()
        accepted = list(self.accepted)
        for conn in accepted:
            conn.abort(why)
        self.accepted.clear()
        log.info(
            "%s: listening sockets and %d accepted connections closed for %gs",
            why,
            len(accepted),
            close_secs,
        )
        if self.reopen is not None:
            self.reopen.cancel()
        self.reopen = asyncio.get_running_loop().call_later(close_secs, self._reopen)

    def _reopen(self) -> None:
        self.reopen = None
        if not self.listeners:
            self.spawn(self.open_listeners(retry=True), "reopen listeners")

    def on_accept(self, conn: StreamConnection) -> None:
        pump = self.pump_for_accept()
        if pump is None:
            log.info(
                "tunnel %s: accepted a connection with no client to carry it: closed", conn.tunnel
            )
            hard_close(conn.transport)
            return
        self.accepted.add(conn)
        pump.add(conn, pump.link.open_stream(conn.tunnel))
        pump.wake()

    def pump_for_accept(self) -> Pump | None:
        raise NotImplementedError

    def forget(self, conn: StreamConnection) -> None:
        self.accepted.discard(conn)

    def first_data(self, conn: StreamConnection) -> None:
        pass

    # ------------------------------------------------------------ dials

    def dial(self, pump: Pump, stream_id: int, tunnel: str) -> None:
        entry = self.connects.get(tunnel)
        if entry is None:
            log.warning(
                "stream %d: the peer asked for tunnel %r, which is not configured here",
                stream_id,
                tunnel,
            )
            pump.link.dial_failed(stream_id, f"no tunnel named {tunnel!r} here")
            pump.wake()
            return
        conn = StreamConnection(self, tunnel, accepted=False)  # type: ignore[arg-type]
        pump.add(conn, stream_id)
        pump.spawn(self._dial(pump, conn, entry), f"dial {tunnel} {stream_id}")

    async def _dial(self, pump: Pump, conn: StreamConnection, entry: ConnectEntry) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(DIAL_TIMEOUT):
                await loop.create_connection(lambda: conn, entry.host, entry.port)
        except (OSError, TimeoutError) as error:
            reason = f"cannot connect to {entry.host}:{entry.port} ({error or 'timed out'})"
            log.info("%s: %s", conn, reason)
            if not conn.gone:
                conn.gone = True
                pump.conns.pop(conn.stream_id, None)
                pump.link.dial_failed(conn.stream_id, reason)
                conn.release()
                pump.wake()
            return
        if not conn.gone:
            pump.link.dial_succeeded(conn.stream_id)
            pump.wake()

    def close_all(self) -> None:
        for server in self.listeners:
            server.close()
        self.listeners.clear()
        if self.reopen is not None:
            self.reopen.cancel()
        for task in list(self.tasks):
            task.cancel()


class TunnelServer(_Side):
    def __init__(self, config: TunnelConfig, out: TextIO | None = None) -> None:
        super().__init__(config, out)
        self.roles = Roles(config.close_secs)
        self.pumps: dict[int, Pump] = {}
        self.pinned = pinned_certificates(config.peer_bundle) if config.mutual_tls else None
        self.ws_server: Any = None

    async def start(self) -> None:
        tuning = self.config.tuning
        self.ws_server = await serve(
            self.handler,
            self.config.host,
            self.config.port,
            ssl=server_context(self.config),
            max_size=self.max_size,
            compression=None,
            ping_interval=tuning.ping_interval,
            ping_timeout=tuning.ping_timeout,
            close_timeout=tuning.ping_timeout or 10,
            write_limit=WS_WRITE_LIMIT,
            max_queue=64,
            create_connection=FastServerConnection,
        )
        await self.open_listeners()
        if not self.config.token and not self.config.mutual_tls:
            log.warning("no authToken and no mutual TLS: any client that connects is accepted")
        self.say(f"zTunnel server listening on {self.config.ws_url}")

    async def run(self) -> None:
        await self.start()
        try:
            await asyncio.Future()  # until cancelled
        finally:
            await self.stop()

    async def stop(self) -> None:
        self.close_all()
        if self.ws_server is not None:
            ws_server, self.ws_server = self.ws_server, None
            ws_server.close()
            await ws_server.wait_closed()

    def pump_for_accept(self) -> Pump | None:
        active = self.roles.active
        return None if active is None else self.pumps.get(active)

    async def handler(self, connection: ServerConnection) -> None:
        assert isinstance(connection, FastServerConnection)  # serve(create_connection=...)
        ws = connection
        name = f"link from {ws.remote_address[0]}:{ws.remote_address[1]}"
        if not peer_allowed(ws.transport.get_extra_info("ssl_object"), self.pinned):
            log.warning("%s: the client's certificate is not pinned: closing with 1008", name)
            await ws.close(1008, "certificate not trusted")
            return
        pump = Pump(ws, self.new_link(server=True), self, name)
        timer = asyncio.get_running_loop().call_later(HELLO_TIMEOUT, self._hello_late, pump)
        try:
            await pump.run()
        finally:
            timer.cancel()
            client_id = pump.client_id
            if client_id is not None and self.pumps.get(client_id) is pump:
                del self.pumps[client_id]
                log.info("client %d disconnected", client_id)
                self.apply(self.roles.disconnect(client_id))

    def _hello_late(self, pump: Pump) -> None:
        if not pump.link.greeted:
            log.warning("%s: no HELLO within %gs: closing", pump.name, HELLO_TIMEOUT)
            self.spawn(pump.ws.close(1002, "no HELLO in time"), "close silent link")

    def link_event(self, pump: Pump, effect: Effect) -> None:
        if isinstance(effect, HelloReceived):
            self._hello(pump, effect)
        elif isinstance(effect, Activate):
            if pump.client_id is not None and self.pumps.get(pump.client_id) is pump:
                log.info("client %d saw first data on its standby port: failover", pump.client_id)
                self.apply(self.roles.activate(pump.client_id))

    def _hello(self, pump: Pump, effect: HelloReceived) -> None:
        hello = effect.hello
        expected = self.config.token
        if expected:
            given = (hello.token or "").encode()
            if not hmac.compare_digest(given, expected.encode()):
                raise ProtocolViolation(f"client {hello.client_id} gave a wrong token", 1008)
        client_id = hello.client_id
        old = self.pumps.get(client_id)
        if old is not None:
            log.info("client %d connected again: the newer link replaces the older", client_id)
            old.close()
            self.spawn(old.ws.close(1000, "replaced by a newer link"), "close replaced link")
        pump.client_id = client_id
        pump.name = f"client {client_id}"
        self.pumps[client_id] = pump
        decision = self.roles.connect(client_id)
        pump.link.send_welcome(bool(decision.welcome_active))
        pump.wake()
        log.info(
            "client %d connected (%s)",
            client_id,
            "active" if decision.welcome_active else "standby",
        )
        self.apply(decision)

    def apply(self, decision: Decision) -> None:
        for client_id, role in decision.roles.items():
            pump = self.pumps.get(client_id)
            if pump is not None:
                pump.link.send_role(role)
                pump.wake()
                log.info("client %d is now %s", client_id, "active" if role.active else "standby")
        if decision.close_listeners:
            self.close_listeners(self.config.close_secs, "failover")


class TunnelClient(_Side):
    def __init__(self, config: TunnelConfig, out: TextIO | None = None) -> None:
        super().__init__(config, out)
        assert config.client_id is not None
        self.client_id = config.client_id
        self.active = False
        self.pump: Pump | None = None
        self.pinned = pinned_certificates(config.peer_bundle)

    def pump_for_accept(self) -> Pump | None:
        pump = self.pump
        return pump if pump is not None and pump.link.greeted and not pump.closed else None

    async def run(self) -> None:
        await self.open_listeners()
        try:
            await self._connect_forever()
        finally:
            self.close_all()

    async def _connect_forever(self) -> None:
        tuning = self.config.tuning
        url = self.config.ws_url
        delay = 0.05
        while True:
            try:
                async with connect(
                    url,
                    ssl=client_context(self.config),
                    max_size=self.max_size,
                    compression=None,
                    ping_interval=tuning.ping_interval,
                    ping_timeout=tuning.ping_timeout,
                    close_timeout=tuning.ping_timeout or 10,
                    write_limit=WS_WRITE_LIMIT,
                    max_queue=64,
                    open_timeout=10,
                    create_connection=FastClientConnection,
                ) as ws:
                    if not peer_allowed(ws.transport.get_extra_info("ssl_object"), self.pinned):
                        log.error("the server's certificate is not pinned: closing")
                        await ws.close(1008, "certificate not trusted")
                    else:
                        await self._run_link(ws)
                        if ws.close_code == 1008:
                            log.error("the server refused this client: %s", ws.close_reason)
                        else:
                            delay = 0.05
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ConnectionClosed) as error:
                log.info("cannot reach %s: %s", url, error or type(error).__name__)
            self.active = False
            await asyncio.sleep(delay)  # backoff before the next attempt, not a sync
            delay = min(delay * 2, tuning.reconnect_max)

    async def _run_link(self, ws: Any) -> None:
        link = self.new_link(server=False)
        link.send_hello(self.client_id, self.config.token)
        pump = Pump(ws, link, self, f"client {self.client_id} link")
        pump.client_id = self.client_id
        self.pump = pump
        pump.wake()
        try:
            await pump.run()
        finally:
            self.pump = None
            self.active = False
            log.info(
                "link to %s closed (%s %s)",
                self.config.ws_url,
                ws.close_code,
                ws.close_reason or "",
            )

    def link_event(self, pump: Pump, effect: Effect) -> None:
        if isinstance(effect, Welcomed):
            self.active = effect.welcome.active
            log.info("client %d is %s", self.client_id, "active" if self.active else "standby")
            self.say(f"zTunnel client {self.client_id} connected to {self.config.ws_url}")
        elif isinstance(effect, RoleReceived):
            role = effect.role
            self.active = role.active
            log.info("client %d is now %s", self.client_id, "active" if role.active else "standby")
            if not role.active and role.close_secs > 0:
                # The server's clock started when it sent the ROLE: reopen a little early
                # so this client is back no later than the server.
                reopen = max(0.0, role.close_secs - ROLE_TRANSIT)
                self.close_listeners(reopen, "failover to the other client")

    def first_data(self, conn: StreamConnection) -> None:
        pump = conn.pump
        if conn.accepted and not self.active and pump is not None:
            self.active = True
            log.info("%s: first data on a standby port: asking to be active", conn)
            pump.link.send_activate()
