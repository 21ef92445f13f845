"""zBifrost's own asyncio Protocol around websockets' sans-I/O ``ServerProtocol``.

``websocket.adapter: sansio`` serves each connection through ``SansIOConnection``: the
WebSocket rules (handshake validation, framing, masks, control frames, the closing
handshake, permessage-deflate) stay websockets' ``ServerProtocol``; this module only
moves bytes and runs timers. Once a connection is open, ``data_received`` feeds the
bytes of one read to the protocol, hands every complete message to zBifrost's handler
at once (no ``recv()``, no assembler queue, no task wake-up per read) and writes all that
the protocol then has to send (pongs, replies, close frames) in one ``transport.write``.

A handler that must wait (a sign-in, a close) returns an awaitable: the connection task
awaits it, and messages that arrive meanwhile wait in order in a backlog; so do those
that arrive before the handler is attached (while the connection signs in through
``recv()``). Reading pauses while the backlog holds ``BACKLOG_HIGH`` messages; for a
turn of the loop after a read of ``TURN_READ_BYTES`` or more (libuv reads a busy socket
up to 32 times in one turn: a flooding peer would hold the loop); and while the socket's
write buffer holds more than ``READ_PAUSE_BYTES``: zBifrost's replies queue (and overflow
into a 1008 close) from ``WRITE_BUFFER_LIMIT`` on, so only websockets' own replies (pongs
to a flood of pings) and single large frames get there.

The connection task (``SansIOServer``'s, running ``zBifrost._serve_connection``) is the
one place that handles a connection's exceptions: one raised by the handler inside
``data_received`` is carried to it and raised there.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from http import HTTPStatus
from typing import Any, cast

from websockets.extensions.base import ServerExtensionFactory
from websockets.extensions.permessage_deflate import enable_server_permessage_deflate
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.utils import get_socket_name

from .client import WRITE_BUFFER_LIMIT
from .connection import MessageHandler, write_data

__all__ = ["BACKLOG_HIGH", "READ_PAUSE_BYTES", "SansIOConnection", "SansIOServer"]

BACKLOG_HIGH = 16  # messages waiting for a handler before reading pauses (websockets' max_queue)
BACKLOG_LOW = 4  # ... and resumes
READ_PAUSE_BYTES = 2 * WRITE_BUFFER_LIMIT  # bytes in the socket's write buffer: reading pauses
WRITE_LIMIT = 2**15  # the transport's high-water mark for send(), as websockets' write_limit
# A read this large pauses reading until the loop has turned: libuv (uvloop) reads a busy
# socket up to 32 times per turn, so a flooding peer would otherwise hold the loop
TURN_READ_BYTES = 2**16

CheckRequest = Callable[[Any, Request], Response | None]
CheckResponse = Callable[[Any, Request, Response], Response | None]
ConnectionHandler = Callable[[Any], Coroutine[Any, Any, None]]


class SansIOServer:
    """The listening socket and its connection tasks; what zBifrost uses of websockets'
    ``Server`` (``sockets``, ``close``, ``wait_closed``, ``handler_tasks``)."""

    def __init__(
        self,
        handler: ConnectionHandler,
        *,
        tracked: set[Any],
        process_request: CheckRequest,
        process_response: CheckResponse,
        server_header: str,
        compression: str,
        open_timeout: float,
        max_size: int,
        ping_interval: float | None,
        ping_timeout: float | None,
        close_timeout: float,
    ) -> None:
        self.handler = handler
        self.tracked = tracked
        self.process_request = process_request
        self.process_response = process_response
        self.server_header = server_header
        self.extensions: Sequence[ServerExtensionFactory] | None = (
            enable_server_permessage_deflate(None) if compression == "deflate" else None
        )
        self.open_timeout = open_timeout
        self.max_size = max_size
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.logger = logging.getLogger("websockets.server")  # as websockets' server logs
        self.handler_tasks: set[asyncio.Task[None]] = set()
        self.loop = asyncio.get_running_loop()
        self._server: asyncio.Server | None = None

    @classmethod
    async def listen(
        cls, handler: ConnectionHandler, host: str, port: int, *, reuse_port: bool, **options: Any
    ) -> SansIOServer:
        server = cls(handler, **options)
        server._server = await server.loop.create_server(
            lambda: SansIOConnection(server), host, port, reuse_port=reuse_port or None
        )
        for sock in server._server.sockets:  # the lines websockets' server logs
            server.logger.info("server listening on %s", get_socket_name(sock))
        return server

    @property
    def sockets(self) -> tuple[Any, ...]:
        return tuple(self._server.sockets) if self._server is not None else ()

    def is_serving(self) -> bool:
        return self._server is not None and self._server.is_serving()

    def close(self, close_connections: bool = False) -> None:
        """Stop listening; the connections are zBifrost's to close (``stop``)."""
        assert not close_connections, "zBifrost closes its connections itself"
        if self._server is not None:
            self.logger.info("server closing")
            self._server.close()

    async def wait_closed(self) -> None:
        """Wait until every connection task has returned."""
        while self.handler_tasks:
            await asyncio.wait(set(self.handler_tasks))
        self.logger.info("server closed")


class SansIOConnection(asyncio.Protocol):
    """One WebSocket connection (``zCLI.bridge.connection.BridgeConnection``)."""

    __slots__ = (
        "server", "protocol", "transport", "request", "_handle", "_flush", "_backlog",
        "_waiting", "_failure", "_wakeup", "_closed", "_lost", "_fragments", "_timer",
        "_ping_timer", "_ping_data", "_paused_writing", "_drain_waiters", "_paused_backlog",
        "_paused_buffer", "_paused_turn", "_reading_paused",
    )  # fmt: skip

    transport: asyncio.Transport

    def __init__(self, server: SansIOServer) -> None:
        self.server = server
        self.protocol = ServerProtocol(
            extensions=server.extensions, max_size=server.max_size, logger=server.logger
        )
        self.request: Request | None = None
        self._handle: MessageHandler | None = None  # attached by serve_messages
        self._flush: Callable[[], None] | None = None
        self._backlog: deque[str | bytes] | None = None  # made when first needed
        self._waiting: Awaitable[bool | None] | None = None  # a handler's, for the task
        self._failure: BaseException | None = None  # a handler's, for the task to raise
        self._wakeup: asyncio.Future[None] | None = None  # the connection task waits here
        self._closed: asyncio.Future[None] | None = None  # done when the socket is closed
        self._lost = False
        self._fragments: list[Frame] | None = None  # a fragmented message so far
        self._timer: asyncio.TimerHandle | None = None  # handshake, then closing deadline
        self._ping_timer: asyncio.TimerHandle | None = None
        self._ping_data: bytes | None = None  # the keepalive ping waiting for its pong
        self._paused_writing = False
        self._drain_waiters: list[asyncio.Future[None]] | None = None
        self._paused_backlog = False
        self._paused_buffer = False
        self._paused_turn = False
        self._reading_paused = False

    # --- BridgeConnection ---------------------------------------------------------------

    @property
    def remote_address(self) -> Any:
        return self.transport.get_extra_info("peername")

    async def recv(self) -> str | bytes:
        while not self._backlog:
            if self._lost:
                raise self.protocol.close_exc
            await self._wait()
        message = self._backlog.popleft()
        self._update_reading()
        return message

    async def send(self, message: str) -> None:
        if self.protocol.state is not State.OPEN:
            await self._wait_closed()
            raise self.protocol.close_exc
        self.protocol.send_text(message.encode())
        self.write_data()
        if self._paused_writing and not self._lost:
            waiter = self.server.loop.create_future()
            if self._drain_waiters is None:
                self._drain_waiters = []
            self._drain_waiters.append(waiter)
            try:
                await waiter
            finally:
                self._drain_waiters.remove(waiter)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(code, reason)
            self.write_data()
        await self._wait_closed()

    def write_data(self) -> None:
        """Write what the protocol has to send, in one call; arm the closing deadline
        when the protocol expects the socket to close; pause reading when the socket's
        write buffer has grown past ``READ_PAUSE_BYTES``."""
        if self._lost:
            return
        protocol, transport = self.protocol, self.transport
        if write_data(protocol, transport) and protocol.state is State.CONNECTING:
            transport.close()  # a refused handshake: the response, then the end
            return
        if self._timer is None and protocol.close_expected():
            self._timer = self.server.loop.call_later(
                self.server.close_timeout, self.transport.abort
            )
        if self._paused_writing and transport.get_write_buffer_size() > READ_PAUSE_BYTES:
            self._paused_buffer = True
            self._update_reading()

    async def serve_messages(self, handle: MessageHandler, flush: Callable[[], None]) -> None:
        self._flush = flush
        while True:
            backlog = self._backlog
            while backlog and self._waiting is None:
                self._waiting = handle(backlog.popleft())
            self._update_reading()
            if self._waiting is None:
                flush()
                if self._lost:
                    raise self.protocol.close_exc
                self._handle = handle
                try:
                    await self._wait()
                finally:
                    self._handle = None
                if self._failure is not None:
                    failure, self._failure = self._failure, None
                    raise failure
            waiting, self._waiting = self._waiting, None
            if waiting is not None and await waiting:
                return

    # --- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        transport.set_write_buffer_limits(WRITE_LIMIT)
        self.server.tracked.add(self)
        self._timer = self.server.loop.call_later(self.server.open_timeout, transport.abort)

    def data_received(self, data: bytes) -> None:
        protocol = self.protocol
        protocol.receive_data(data)
        for event in protocol.events_received():
            if isinstance(event, Frame):
                self._frame(event)
            elif isinstance(event, Request):  # a server's protocol yields no Response
                self._open(event)
        if self._flush is not None:
            self._flush()  # the client's framed replies, and the protocol's own frames
        self.write_data()  # anything else (a pong, a close) when the client had none
        if len(data) >= TURN_READ_BYTES and not self._paused_turn:
            self._paused_turn = True
            self._update_reading()
            self.server.loop.call_soon(self._next_turn)

    def _next_turn(self) -> None:
        self._paused_turn = False
        self._update_reading()

    def eof_received(self) -> None:
        self.protocol.receive_eof()
        self.write_data()
        # returning None closes the socket: after a close frame or a half-close the
        # peer has nothing more to say, and the protocol nothing more to hear

    def connection_lost(self, exc: Exception | None) -> None:
        self.protocol.receive_eof()  # idempotent: the state is CLOSED now
        self._lost = True
        self.server.tracked.discard(self)
        for timer in (self._timer, self._ping_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._ping_timer = None
        self._wake()
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        for waiter in self._drain_waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def pause_writing(self) -> None:
        self._paused_writing = True

    def resume_writing(self) -> None:
        self._paused_writing = False
        for waiter in self._drain_waiters or ():
            if not waiter.done():
                waiter.set_result(None)
        if self._paused_buffer:
            self._paused_buffer = False
            self._update_reading()

    # --- the handshake ------------------------------------------------------------------

    def _open(self, request: Request) -> None:
        """zBifrost's checks, then the response (as websockets' ``ServerConnection.
        handshake`` runs them: process_request, accept, the Server header,
        process_response, 503 once the server stops listening)."""
        server, protocol = self.server, self.protocol
        self.request = request
        response = server.process_request(self, request)
        if response is None:
            response = protocol.accept(request)
        response.headers["Server"] = server.server_header
        refused = server.process_response(self, request, response)
        if refused is not None:
            response = refused
        if response.status_code == HTTPStatus.SWITCHING_PROTOCOLS and not server.is_serving():
            response = protocol.reject(HTTPStatus.SERVICE_UNAVAILABLE, "Server is shutting down.\n")
        protocol.send_response(response)
        if protocol.state is not State.OPEN:
            return  # write_data sends the refusal and closes
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if server.ping_interval is not None:
            self._ping_timer = server.loop.call_later(server.ping_interval, self._ping)
        task = server.loop.create_task(self._serve())
        server.handler_tasks.add(task)
        task.add_done_callback(server.handler_tasks.discard)

    async def _serve(self) -> None:
        """The connection task: zBifrost's handler, then the closing handshake (1000),
        as websockets closes a connection whose handler returned."""
        await self.server.handler(self)
        await self.close()

    # --- frames ---------------------------------------------------------------------------

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if not frame.fin:
                self._fragments = [frame]
                return
            self._message(opcode, frame.data)
        elif opcode is Opcode.CONT:
            fragments = self._fragments
            assert fragments is not None  # the protocol refuses a continuation without a start
            fragments.append(frame)
            if frame.fin:
                self._fragments = None
                self._message(fragments[0].opcode, b"".join(f.data for f in fragments))
        elif opcode is Opcode.PONG:
            if self._ping_data is not None and frame.data == self._ping_data:
                self._pong()
        # a PING is answered and a CLOSE echoed by the protocol itself

    def _message(self, opcode: Opcode, data: Any) -> None:
        message: str | bytes
        if opcode is Opcode.TEXT:
            try:
                message = str(data, "utf-8")
            except UnicodeDecodeError as exc:
                self.protocol.fail(1007, f"{exc.reason} at position {exc.start}")
                return
        else:
            message = bytes(data)
        handle = self._handle
        if handle is None or self._waiting is not None or self._failure is not None:
            if self._backlog is None:
                self._backlog = deque()
            self._backlog.append(message)
            self._update_reading()
            if handle is None:
                self._wake()  # recv() waits for it
            return
        try:
            waiting = handle(message)
        except Exception as exc:  # our bug: the connection task raises it (see the top)
            self._failure = exc
            self._wake()
            return
        if waiting is not None:
            self._waiting = waiting
            self._wake()

    # --- keepalive ------------------------------------------------------------------------

    def _ping(self) -> None:
        self._ping_timer = None
        if self.protocol.state is not State.OPEN:
            return
        self._ping_data = struct.pack("!I", random.getrandbits(32))
        self.protocol.send_ping(self._ping_data)
        self.write_data()
        timeout = self.server.ping_timeout
        if timeout is not None:
            self._ping_timer = self.server.loop.call_later(timeout, self._ping_timed_out)

    def _pong(self) -> None:
        self._ping_data = None
        if self._ping_timer is not None:
            self._ping_timer.cancel()
        interval = self.server.ping_interval
        assert interval is not None  # only keepalive pings are waited for
        self._ping_timer = self.server.loop.call_later(interval, self._ping)

    def _ping_timed_out(self) -> None:
        self._ping_timer = None
        if self.protocol.state is State.OPEN:
            self.protocol.fail(1011, "keepalive ping timeout")
            self.write_data()

    # --- waiting ----------------------------------------------------------------------------

    async def _wait(self) -> None:
        """Until a message, a handler's awaitable or failure, or the socket's close."""
        self._wakeup = self.server.loop.create_future()
        try:
            await self._wakeup
        finally:
            self._wakeup = None

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def _wait_closed(self) -> None:
        if self._lost:
            return
        if self._closed is None:
            self._closed = self.server.loop.create_future()
        await asyncio.shield(self._closed)

    def _update_reading(self) -> None:
        backlog = self._backlog
        waiting = len(backlog) if backlog is not None else 0
        if waiting >= BACKLOG_HIGH:
            self._paused_backlog = True
        elif waiting <= BACKLOG_LOW:
            self._paused_backlog = False
        pause = self._paused_backlog or self._paused_buffer or self._paused_turn
        if pause is not self._reading_paused and not self._lost:
            self._reading_paused = pause
            if pause:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()
