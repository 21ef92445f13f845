"""The asyncio side of one link: the WebSocket's reader and single writer (``Pump``) and
the TCP connections of its streams (``StreamConnection``).

Both are thin: they hand what happened to ``core.Link`` and carry out its effects.
TCP reading follows credit (``pause_reading`` when a stream runs out, ``resume_reading``
on ``Resume``) and the WebSocket's backlog (every stream of a link pauses while its
writer is behind); credit goes back as the TCP write buffer drains. No task per chunk:
one reader task and one writer task per WebSocket, one task per dial.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from websockets.protocol import OPEN

from .core import (
    Activate,
    Deliver,
    Dial,
    Effect,
    Ended,
    HelloReceived,
    Link,
    Opened,
    Refused,
    Reset,
    Resume,
    RoleReceived,
    Shutdown,
    Throttled,
    Welcomed,
)
from .frames import ProtocolViolation
from .wsconn import Message

if TYPE_CHECKING:
    from .core import Budget
    from .wsconn import FastClientConnection, FastServerConnection

__all__ = ["Endpoint", "Pump", "StreamConnection", "hard_close"]

log = logging.getLogger("zCLI.apps.tunnel")

CONGESTED = 8 * 1024 * 1024  # frames waiting for the WebSocket before streams pause
UNCONGESTED = 2 * 1024 * 1024
WS_WRITE_LIMIT = 1024 * 1024  # the WebSocket's buffer before the writer task waits
WRITE_HIGH = 256 * 1024  # a TCP transport's buffer before we stop handing it bytes
WS_WRITE_LIMIT = 1024 * 1024  # the WebSocket's buffer before the writer task waits
WRITE_HIGH = 256 * 1024  # a TCP transport's buffer before we stop handing it bytes
LINGER_RESET = struct.pack("ii", 1, 0)  # close() sends RST instead of FIN


def hard_close(transport: asyncio.Transport | None) -> None:
    """Abort a TCP connection with a reset, so the user sees ConnectionResetError."""
    if transport is None or transport.is_closing():
        if transport is not None:
            transport.abort()
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        except OSError:
            pass
    transport.abort()


class Endpoint(Protocol):
    """What a pump asks of the server or client that owns it."""

    budget: Budget
    window: int

    def dial(self, pump: Pump, stream_id: int, tunnel: str) -> None: ...
    def link_event(self, pump: Pump, effect: Effect) -> None: ...
    def first_data(self, connection: StreamConnection) -> None: ...
    def forget(self, connection: StreamConnection) -> None: ...


class StreamConnection(asyncio.Protocol):
    """One TCP connection carried by one stream: accepted here, or dialled for the peer."""

    def __init__(self, endpoint: Endpoint, tunnel: str, accepted: bool) -> None:
        self.endpoint = endpoint
        self.tunnel = tunnel
        self.accepted = accepted
        self.pump: Pump | None = None
        self.stream_id = 0
        self.transport: asyncio.Transport | None = None
        # Delivered, not yet handed to the transport: views of the WebSocket messages,
        # written while the transport's buffer is under its high-water mark.
        self.queue: collections.deque[bytes | memoryview] = collections.deque()
        self.queued = 0
        self.write_paused = False
        self.held: memoryview | None = None  # read, waiting for credit
        self.eof_read = False
        self.shutdown_wanted = False
        self.ended = False
        self.gone = False
        self.first = True
        self.throttle_logged = False
        self.reading = True
        self.delivered = 0
        self.reported = 0
        self.on_accept: Callable[[StreamConnection], None] | None = None

    def __repr__(self) -> str:
        return f"tunnel {self.tunnel} stream {self.stream_id}"

    # ------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        high = min(WRITE_HIGH, self.endpoint.window // 4)
        transport.set_write_buffer_limits(high=high, low=high // 4)
        if self.accepted:
            if self.on_accept is not None:
                self.on_accept(self)
            return
        if self.gone and not self.ended:  # reset while dialling
            hard_close(transport)
            return
        self.update_reading()
        self.flush()

    def data_received(self, data: bytes) -> None:
        pump = self.pump
        if pump is None or self.gone:
            return
        if self.first:
            self.first = False
            self.endpoint.first_data(self)
        link = pump.link
        sent = link.send_data(self.stream_id, data)
        if sent < len(data):
            self.held = memoryview(data)[sent:]
            self.update_reading()
        if link.outgoing_bytes > CONGESTED and not pump.congested:
            pump.congest()
        pump.wake()

    def eof_received(self) -> bool:
        self.eof_read = True
        self.update_reading()
        if self.held is None:
            self.send_fin()
        return True  # half-close: keep writing the other way

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        pump = self.pump
        if pump is not None:
            if not self.gone:
                self.gone = True
                reason = f"connection lost: {exc}" if exc else "connection closed"
                log.log(
                    logging.INFO if _expected(exc) else logging.WARNING,
                    "%s: TCP %s",
                    self,
                    reason,
                )
                pump.link.reset(self.stream_id, reason)
                pump.wake()
            pump.conns.pop(self.stream_id, None)
            self.release()
        self.endpoint.forget(self)

    # ------------------------------------------------------------ effects

    def deliver(self, data: bytes | memoryview) -> None:
        self.delivered += len(data)
        self.queue.append(data)
        self.queued += len(data)
        if not self.write_paused:
            self.flush()

    def resume(self) -> None:
        held = self.held
        pump = self.pump
        if held is None or pump is None:
            return
        sent = pump.link.send_data(self.stream_id, held)
        self.held = None if sent == len(held) else held[sent:]
        if self.held is None and self.eof_read:
            self.send_fin()
        self.update_reading()

    def shutdown(self) -> None:
        self.shutdown_wanted = True
        self.flush()

    def end(self) -> None:
        self.ended = True
        self.gone = True  # both FINs are through: nothing to reset
        self.flush()

    def flush(self) -> None:
        """Hand queued bytes to the transport until its buffer is over the high-water
        mark (``pause_writing``); then the FIN or close that waited for them."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        queue = self.queue
        while queue and not self.write_paused:
            data = queue.popleft()
            self.queued -= len(data)
            transport.write(data)
        if not queue:
            if self.ended:
                transport.close()
            elif self.shutdown_wanted and transport.can_write_eof():
                transport.write_eof()
        self.report()

    def reset(self, reason: str) -> None:
        """The stream is gone (peer RST, refused dial, link loss, failover)."""
        if self.gone:
            return
        self.gone = True
        log.info("%s: reset (%s)", self, reason)
        hard_close(self.transport)

    def abort(self, reason: str) -> None:
        """Ours: reset the stream both ways (a failover closes accepted connections)."""
        pump = self.pump
        if pump is not None and not self.gone:
            pump.link.reset(self.stream_id, reason)
            pump.wake()
        self.reset(reason)

    # ------------------------------------------------------------ helpers

    def send_fin(self) -> None:
        pump = self.pump
        if pump is None or self.gone:
            return
        if pump.link.send_fin(self.stream_id):
            self.end()
        pump.wake()

    def report(self) -> None:
        """Credit back what left for the TCP socket."""
        pump = self.pump
        transport = self.transport
        if pump is None or transport is None:
            return
        done = self.delivered - self.queued - transport.get_write_buffer_size() - self.reported
        if done <= 0:
            return
        self.reported += done
        throttled = pump.link.consumed(self.stream_id, done)
        if throttled is not None and not self.throttle_logged:
            self.throttle_logged = True  # one line per stream, not one per episode
            log.warning(
                "%s: throttled, the process holds %d bytes, over the memory cap of %d",
                self,
                throttled.held,
                throttled.cap,
            )
        pump.credit_changed()

    def release(self) -> None:
        """Bytes delivered and never written leave the budget with the connection."""
        pump = self.pump
        left = self.delivered - self.reported
        if pump is not None and left > 0:
            self.reported = self.delivered
            pump.link.consumed(self.stream_id, left)
            pump.credit_changed()

    def update_reading(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        pump = self.pump
        want = self.held is None and not self.eof_read and not (pump is not None and pump.congested)
        if want != self.reading:
            self.reading = want
            if want:
                transport.resume_reading()
            else:
                transport.pause_reading()


def _expected(exc: BaseException | None) -> bool:
    """Broken pipes and resets happen in every failover: INFO, not WARNING."""
    return exc is None or isinstance(
        exc, BrokenPipeError | ConnectionResetError | ConnectionAbortedError
    )


class Pump:
    """One WebSocket's reader loop and its single writer, feeding one ``Link``."""

    def __init__(
        self,
        ws: FastClientConnection | FastServerConnection,
        link: Link,
        endpoint: Endpoint,
        name: str,
    ) -> None:
        self.ws = ws
        self.link = link
        self.endpoint = endpoint
        self.name = name
        self.conns: dict[int, StreamConnection] = {}
        self.client_id: int | None = None
        self.congested = False
        self.closed = False
        self.tasks: set[asyncio.Task[Any]] = set()
        self._wake = asyncio.Event()
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._writing = False  # the writer task is sending: direct sends would reorder
        self.write_limit = WS_WRITE_LIMIT
        link.owner = self
        self._handlers: dict[type, Callable[[Any], None]] = {
            Deliver: self._deliver,
            Dial: self._dial,
            Opened: self._opened,
            Refused: self._refused,
            Resume: self._resume,
            Shutdown: self._shutdown,
            Ended: self._ended,
            Reset: self._reset,
            Throttled: self._throttled,
            HelloReceived: self._link_event,
            Welcomed: self._link_event,
            Activate: self._link_event,
            RoleReceived: self._link_event,
        }

    def wake(self) -> None:
        """Send what the link queued: straight to the socket while the writer task is
        idle and the WebSocket's buffer is under its limit (no task switch on the
        latency path), else through the writer task, which waits for the buffer."""
        link = self.link
        if not link.outgoing:
            return
        if self._writing:
            self._wake.set()
            return
        ws = self.ws
        protocol = ws.protocol
        if protocol.state is not OPEN:
            self._wake.set()
            return
        transport = ws.transport
        limit = self.write_limit
        while link.outgoing and transport.get_write_buffer_size() <= limit:
            protocol.send_binary(link.pop_outgoing())
            ws.send_data()
        if link.outgoing:
            self._wake.set()
        elif self.congested and link.outgoing_bytes < UNCONGESTED:
            self.uncongest()

    def credit_changed(self) -> None:
        self.wake()
        for link in self.endpoint.budget.release():
            owner = link.owner
            if isinstance(owner, Pump):
                owner.wake()

    def congest(self) -> None:
        self.congested = True
        log.debug(
            "%s: WebSocket behind by %d bytes, streams pause", self.name, self.link.outgoing_bytes
        )
        for conn in list(self.conns.values()):
            conn.update_reading()

    def uncongest(self) -> None:
        self.congested = False
        for conn in list(self.conns.values()):
            conn.update_reading()

    def add(self, conn: StreamConnection, stream_id: int) -> None:
        conn.pump = self
        conn.stream_id = stream_id
        self.conns[stream_id] = conn

    async def run(self) -> None:
        """Pump until the WebSocket closes; then every stream of it is reset. The one
        place that catches this link's errors: a violation closes with its code, a bug
        with 1011."""
        writer = asyncio.create_task(self._write(), name=f"{self.name} writer")
        closed = asyncio.ensure_future(self.ws.wait_closed())
        closed.add_done_callback(self._finish)
        try:
            self.ws.attach(self._on_message)
            await self._done
            log.info(
                "%s: WebSocket closed (%s %s)",
                self.name,
                self.ws.close_code,
                self.ws.close_reason or "",
            )
        except ProtocolViolation as violation:
            log.warning(
                "%s: protocol error, closing with %d: %s",
                self.name,
                violation.code,
                violation.message,
            )
            await self.ws.close(violation.code, violation.message[:120])
        except Exception:
            log.exception("%s: internal error, closing with 1011", self.name)
            await self.ws.close(1011, "internal error")
        finally:
            self.ws.attach(None)
            closed.cancel()
            writer.cancel()
            self.close()
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(writer, closed, *self.tasks, return_exceptions=True)

    def _finish(self, _: object = None) -> None:
        if not self._done.done():
            self._done.set_result(None)

    def _on_message(self, message: Message) -> None:
        """One WebSocket message, straight from the connection's ``data_received``."""
        try:
            if not isinstance(message, bytes):
                what = "A text message" if isinstance(message, str) else "A fragmented message"
                raise ProtocolViolation(f"{what}: zTunnel frames are binary messages.")
            for effect in self.link.receive(message):
                self._handlers[type(effect)](effect)
            self.wake()
        except Exception as error:
            self.ws.attach(None)  # nothing more from a link that is closing
            if not self._done.done():
                self._done.set_exception(error)

    async def _write(self) -> None:
        link = self.link
        ws = self.ws
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._writing = True
            try:
                while link.outgoing:
                    await ws.send(link.pop_outgoing())
                    if self.congested and link.outgoing_bytes < UNCONGESTED:
                        self.uncongest()
            finally:
                self._writing = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        ids = self.link.close()
        if ids:
            log.info("%s: link closed, resetting %d streams", self.name, len(ids))
        for conn in list(self.conns.values()):
            conn.reset("the link closed")
            conn.release()
        self.conns.clear()

    def spawn(self, coroutine: Any, name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # ------------------------------------------------------------ effect handlers

    def _deliver(self, effect: Deliver) -> None:
        conn = self.conns.get(effect.stream_id)
        if conn is None:
            self.link.consumed(effect.stream_id, len(effect.data))
            return
        conn.deliver(effect.data)

    def _dial(self, effect: Dial) -> None:
        self.endpoint.dial(self, effect.stream_id, effect.tunnel)

    def _opened(self, effect: Opened) -> None:
        log.debug("%s: stream %d opened", self.name, effect.stream_id)

    def _refused(self, effect: Refused) -> None:
        conn = self.conns.pop(effect.stream_id, None)
        if conn is not None:
            log.info("%s: the peer could not dial (%s)", conn, effect.reason)
            conn.reset(effect.reason)

    def _resume(self, effect: Resume) -> None:
        conn = self.conns.get(effect.stream_id)
        if conn is not None:
            conn.resume()

    def _shutdown(self, effect: Shutdown) -> None:
        conn = self.conns.get(effect.stream_id)
        if conn is not None:
            conn.shutdown()

    def _ended(self, effect: Ended) -> None:
        conn = self.conns.get(effect.stream_id)
        if conn is not None:
            conn.end()

    def _reset(self, effect: Reset) -> None:
        conn = self.conns.get(effect.stream_id)
        if conn is not None:
            conn.reset(f"peer reset: {effect.reason}")

    def _throttled(self, effect: Throttled) -> None:
        log.warning("%s: stream %d throttled by the memory cap", self.name, effect.stream_id)

    def _link_event(self, effect: Effect) -> None:
        self.endpoint.link_event(self, effect)
