"""The WebSocket side of one link (``Pump``): messages in, frames out, effects carried
out on the link's TCP connections (``tcp.StreamConnection``).

Thin: it hands each message to ``core.Link`` and dispatches the effects by type. No task
per chunk: messages arrive in the connection's ``data_received`` (``wsconn``), frames
go straight to the socket while it keeps up, and one writer task per WebSocket takes
over when its buffer is full; one task per dial. Every stream of a link pauses reading
while the link is more than 8 MiB behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

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
from .tcp import Endpoint, StreamConnection
from .wsconn import Message

if TYPE_CHECKING:
    from .wsconn import FastClientConnection, FastServerConnection

__all__ = ["WS_WRITE_LIMIT", "Pump"]

log = logging.getLogger("zCLI.apps.tunnel")

UNCONGESTED = 2 * 1024 * 1024  # the backlog under which paused streams read again
WS_WRITE_LIMIT = 1024 * 1024  # the WebSocket's buffer before the writer task waits


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
