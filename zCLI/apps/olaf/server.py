"""The asyncio adapter of the OLAF server: sockets, writers, neighbour links, timers.

Everything it decides comes from ``ServerCore``; this module only feeds it frames and
carries out its effects. The handshake accepts any path, any Origin, any subprotocol
(the first one offered is echoed back) or none: a neighbour never gets HTTP 400.
Each connection has one writer task draining a bounded queue; a queue that overflows
closes that connection with 1013 and a log line, so one slow reader never holds up
the others.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.protocol import State
from websockets.typing import Subprotocol

from . import crypto
from .config import ServerConfig
from .core import (
    Close,
    Effect,
    Limits,
    ListChanged,
    Log,
    Neighbour,
    Reconnect,
    Send,
    ServerCore,
)
from .exceptions import ConfigError, CryptoError
from .messages import normalise_address
from .uploads import UploadStore, serve_uploads

__all__ = ["OlafServer", "main"]

log = logging.getLogger("zCLI.apps.olaf")
Socket = ServerConnection | ClientConnection


class _Latest:
    """In a writer's queue: write the connection's latest client_list here."""


LATEST = _Latest()
DIRECT_LIMIT = 64 * 1024  # bytes buffered for a socket beyond which frames queue
Item = str | _Latest | None


def _first_offered(_: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    return offered[0] if offered else None


class OlafServer:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        key = crypto.load_or_create_key(config.key)
        self.identity = crypto.Identity.of(key)
        self.neighbours = [
            Neighbour(address, crypto.load_public_key(path.read_bytes()))
            for address, path in config.neighbours.items()
        ]
        self.core: ServerCore | None = None
        self.ids = itertools.count(1)
        self.queues: dict[int, asyncio.Queue[Item]] = {}
        self.sockets: dict[int, Socket] = {}
        self.wake: dict[str, asyncio.Event] = {}
        self.latest: dict[int, str] = {}  # conn -> the client_list not yet written
        self.busy: set[int] = set()  # writers in the middle of a send
        self.lists_due: asyncio.TimerHandle | None = None

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    # -- effects ------------------------------------------------------------------

    def apply(self, effects: list[Effect]) -> None:
        """Carry out effects in order. A frame for an idle connection (nothing queued,
        its writer not sending, its socket buffer small) is written at once, with
        websockets.broadcast for a run of the same frame (a fan-out); any other
        goes through that connection's bounded queue and its writer."""
        batch: list[Socket] = []
        batch_text = ""
        for effect in effects:
            if isinstance(effect, Send):
                socket = self.sockets.get(effect.conn)
                if socket is None:
                    continue
                if not effect.latest and self._idle(effect.conn, socket):
                    if batch and effect.text is not batch_text:
                        broadcast(batch, batch_text)
                        batch = []
                    batch.append(socket)
                    batch_text = effect.text
                    continue
                if batch:
                    broadcast(batch, batch_text)
                    batch = []
                self._enqueue(effect)
                continue
            if batch:
                broadcast(batch, batch_text)
                batch = []
            if isinstance(effect, Close):
                self._close(effect.conn, effect.code, effect.reason)
            elif isinstance(effect, Reconnect):
                if effect.address in self.wake:
                    self.wake[effect.address].set()
            elif isinstance(effect, Log):
                log.log(effect.level, "%s", effect.text)
            elif isinstance(effect, ListChanged) and self.lists_due is None:
                loop = asyncio.get_running_loop()
                self.lists_due = loop.call_later(self.config.list_delay, self._push_lists)
        if batch:
            broadcast(batch, batch_text)

    def _idle(self, conn: int, socket: Socket) -> bool:
        queue = self.queues[conn]
        if not queue.empty() or conn in self.busy or socket.state is not State.OPEN:
            return False
        return socket.transport.get_write_buffer_size() < DIRECT_LIMIT

    def _enqueue(self, effect: Send) -> None:
        queue = self.queues[effect.conn]
        if effect.latest:
            marked = effect.conn in self.latest
            self.latest[effect.conn] = effect.text
            if marked:
                return  # its marker is already queued: the newer list goes then
        try:
            queue.put_nowait(LATEST if effect.latest else effect.text)
        except asyncio.QueueFull:
            log.warning("#%d: %d frames waiting; closing it (1013)", effect.conn, queue.qsize())
            self._close(effect.conn, 1013, "too many frames waiting")

    def _push_lists(self) -> None:
        """Every change within list_delay makes one client_list per client."""
        self.lists_due = None
        assert self.core is not None
        self.apply(list(self.core.client_list_pushes()))

    def _close(self, conn: int, code: int, reason: str) -> None:
        socket = self.sockets.get(conn)
        if socket is not None:
            asyncio.get_running_loop().create_task(socket.close(code, reason))

    # -- one connection -----------------------------------------------------------

    async def _write(self, conn: int, socket: Socket, queue: asyncio.Queue[Item]) -> None:
        try:
            while (text := await queue.get()) is not None:
                self.busy.add(conn)
                await socket.send(self.latest.pop(conn) if isinstance(text, _Latest) else text)
                self.busy.discard(conn)
        except ConnectionClosed:
            pass  # the reader sees the close and cleans up
        finally:
            self.busy.discard(conn)

    async def _serve_connection(self, socket: Socket, neighbour: str | None = None) -> None:
        """The one place that catches per connection: dropped frames are the core's
        business; a bug here is logged with its traceback and closes with 1011."""
        assert self.core is not None
        conn = next(self.ids)
        queue: asyncio.Queue[Item] = asyncio.Queue(self.config.queue)
        self.queues[conn], self.sockets[conn] = queue, socket
        writer = asyncio.get_running_loop().create_task(self._write(conn, socket, queue))
        try:
            if neighbour is None:
                log.info("#%d: connected from %s", conn, socket.remote_address)
                self.apply(self.core.connected(conn, self._now()))
            else:
                self.apply(self.core.linked(conn, neighbour, self._now()))
            async for frame in socket:
                self.apply(self.core.received(conn, frame, self._now()))
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("#%d: a bug closed this connection", conn)
            await socket.close(1011, "internal error")
        finally:
            del self.queues[conn], self.sockets[conn]
            self.latest.pop(conn, None)
            writer.cancel()
            self.apply(self.core.closed(conn))
            log.info("#%d: disconnected", conn)

    async def _handle(self, socket: ServerConnection) -> None:
        await self._serve_connection(socket)

    # -- neighbours ---------------------------------------------------------------

    async def _keep_linked(self, address: str) -> None:
        """Connect to a neighbour and stay connected, retrying with capped backoff;
        its server_hello on an inbound link retries at once."""
        url = address if "://" in address else f"ws://{address}"
        wake = self.wake[normalise_address(address)]
        delay = 0.5
        while True:
            wake.clear()
            try:
                socket = await connect(
                    url,
                    ping_interval=10,
                    max_size=self.config.max_frame * 4,
                    compression=None,
                    open_timeout=10,
                )
                delay = 0.5
                try:
                    await self._serve_connection(socket, neighbour=address)
                finally:
                    await socket.close(1001, "going away")  # also when we stop
            except (TimeoutError, OSError, WebSocketException) as error:
                log.info(
                    "neighbour %s: not reachable (%s); next try in %.1f s", address, error, delay
                )
            try:
                await asyncio.wait_for(wake.wait(), delay)
            except TimeoutError:
                pass
            delay = min(delay * 2, self.config.retry_max)

    async def run(self) -> None:
        config = self.config
        async with serve(
            self._handle,
            config.host,
            config.port,
            select_subprotocol=_first_offered,
            max_size=config.max_frame * 4,
            compression=None,
            ping_interval=20,
            ping_timeout=20,
        ) as server:
            port = server.sockets[0].getsockname()[1]
            address = config.address or f"{config.host}:{port}"
            self.core = ServerCore(
                self.identity,
                address,
                self.neighbours,
                Limits(
                    max_frame=config.max_frame,
                    max_clients=config.max_clients,
                    rate=config.rate,
                    neighbour_rate=config.neighbour_rate,
                    max_pending=config.max_pending,
                    hello_timeout=config.hello_timeout,
                ),
                data_as_string=config.data_as_string,
            )
            print(
                f"olaf server listening on ws://{config.host}:{port} as {address}; "
                f"fingerprint {self.identity.fingerprint}; "
                f"public key {crypto.public_path(config.key)}",
                flush=True,
            )
            if config.http_port >= 0:
                await self._start_uploads(address)
            async with asyncio.TaskGroup() as links:
                links.create_task(self._expire_pending(config.hello_timeout))
                for neighbour in self.neighbours:
                    self.wake[normalise_address(neighbour.address)] = asyncio.Event()
                    links.create_task(self._keep_linked(neighbour.address))
                await server.serve_forever()

    async def _expire_pending(self, hello_timeout: float) -> None:
        """Close connections that said no hello in time, even when no other connection
        comes to prompt the check: a look every half of the timeout."""
        while True:
            await asyncio.sleep(max(hello_timeout / 2, 0.05))  # a clock, not a synchronisation
            if self.core is not None:
                self.apply(self.core.expire_pending(self._now()))

    async def _start_uploads(self, address: str) -> None:
        config = self.config
        folder = Path(config.upload_dir) if config.upload_dir else None
        if folder is None:
            stem = config.key.name.removesuffix(".pem")
            folder = config.key.with_name(f"{stem}-uploads")
        host = normalise_address(address).rsplit(":", 1)[0]
        store = UploadStore(folder, "", config.max_upload, config.max_upload_total)
        http = await serve_uploads(
            store, config.host, config.http_port, config.max_upload_connections
        )
        port = http.sockets[0].getsockname()[1]
        store.base_url = f"http://{host}:{port}"
        print(f"olaf uploads on http://{config.host}:{port}/api/upload", flush=True)


def main(args: Any) -> int:
    # zcli set up the root handler (stderr); our lines show at INFO whatever its level.
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    logging.getLogger("websockets").setLevel(logging.WARNING)
    try:
        config = ServerConfig.from_args(args)
        server = OlafServer(config)
    except (ConfigError, CryptoError, OSError) as error:
        sys.stderr.write(f"zcli olaf server: error: {error}\n")
        return 2

    async def serve_until_signal() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        try:
            await server.run()
        except asyncio.CancelledError:
            log.info("stopped by a signal")

    try:
        asyncio.run(serve_until_signal())
    except OSError as error:
        sys.stderr.write(f"zcli olaf server: error: {error}\n")
        return 1
    return 0
