"""The TCP side of a zTunnel stream: one ``StreamConnection`` per accepted or dialled
connection, paced by credit.

Reading follows credit (``pause_reading`` when the stream runs out, ``resume_reading``
on ``Resume``) and the link's backlog; delivered bytes wait in a queue of views of the
WebSocket messages and go to the transport while its buffer is under the high-water
mark, and credit goes back as they leave for the socket.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .core import Budget
    from .effects import Effect
    from .pump import Pump

__all__ = ["CONGESTED", "Endpoint", "StreamConnection", "hard_close"]

log = logging.getLogger("zCLI.apps.tunnel")

CONGESTED = 8 * 1024 * 1024  # frames waiting for the WebSocket before streams pause
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
