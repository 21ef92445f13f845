"""The socket as zServer's handler threads read it, and a log that cannot be flooded.

A handler thread is a scarce thing (``max_connections`` of them), so no read may wait
without bound: ``DeadlineReader`` gives every request two clocks. Before the first byte
a connection may be silent for ``idle_timeout``; from the first byte the request line,
headers and body must all arrive within ``header_timeout`` in total (a client that
trickles a byte a second is cut at the deadline all the same), and no gap inside a
request may exceed ``idle_timeout`` either. ``HeadReader`` bounds the bytes of the
request line and headers together and tells a finished head from a client that
hung up half-way.

``LogThrottle`` counts events (refused connections, failed ``accept()`` calls) and
lets one log line through per second carrying the count, so an attack shows in the
log without becoming one. ``is_client_fault`` tells the socket errors a client causes
(logged as one debug line) from ours (logged with a traceback), and ``linger`` closes
a connection gently when a refusal went out before its request was read.
"""

from __future__ import annotations

import errno
import io
import socket
import threading
import time

from .bridge.limits import LogThrottle as PureLogThrottle
from .http_messages import HttpError

__all__ = [
    "DeadlineReader",
    "HeadReader",
    "LogThrottle",
    "ReadTimeout",
    "is_client_fault",
    "linger",
]

# Socket errors a client (or the network between) causes; anything else is ours.
CLIENT_ERRNOS = frozenset(
    (
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EPIPE,
        errno.ETIMEDOUT,
        errno.ENOTCONN,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.EHOSTDOWN,
    )
)


def is_client_fault(exc: OSError) -> bool:
    """A reset, broken pipe, timeout or unreachable peer: logged without a traceback."""
    return isinstance(exc, ConnectionError | TimeoutError) or exc.errno in CLIENT_ERRNOS


class ReadTimeout(Exception):
    """A read ran out of time. ``started``: bytes of a request had arrived (answer 408);
    otherwise the connection was idle and is closed without a word."""

    def __init__(self, started: bool, sentence: str) -> None:
        super().__init__(sentence)
        self.started = started
        self.sentence = sentence


class DeadlineReader(io.RawIOBase):
    """A socket's bytes under ``idle`` (per wait) and ``total`` (per request) clocks."""

    def __init__(self, sock: socket.socket, idle: float, total: float) -> None:
        super().__init__()
        self._sock = sock
        self.idle = idle
        self.total = total
        self._deadline: float | None = None

    def readable(self) -> bool:
        return True

    def _late(self) -> ReadTimeout:
        return ReadTimeout(True, f"The request did not arrive within {self.total:g} seconds.")

    # io declares any writable buffer; the BufferedReader above only passes memoryviews
    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        started = self._deadline is not None
        wait = self.idle
        if self._deadline is not None:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise self._late()
            wait = min(wait, left)
        self._sock.settimeout(wait)
        try:
            count = self._sock.recv_into(buffer)
        except TimeoutError:
            if not started:
                raise ReadTimeout(False, f"Nothing arrived for {self.idle:g} seconds.") from None
            if wait < self.idle:
                raise self._late() from None
            raise ReadTimeout(
                True, f"No byte of the request arrived for {self.idle:g} seconds."
            ) from None
        if count and self._deadline is None:
            self._deadline = time.monotonic() + self.total
        return count


class HeadReader:
    """What ``http.client.parse_headers`` reads through: the head's bytes are counted
    against ``budget`` (over it: 431), and a line cut short by the end of the stream
    means the client hung up mid-request, which is not a request to answer."""

    def __init__(self, rfile: io.BufferedIOBase, budget: int, limit: int) -> None:
        self._rfile = rfile
        self._left = budget
        self._limit = limit  # http_server.max_header_bytes, for the message

    def readline(self, size: int = -1) -> bytes:
        limit = self._left + 1 if size < 0 else min(size, self._left + 1)
        line = self._rfile.readline(limit)
        self._left -= len(line)
        if self._left < 0:
            raise HttpError(431, message=f"The request head is larger than {self._limit} bytes.")
        if not line.endswith(b"\n"):
            raise ConnectionAbortedError("the client closed the connection mid-request")
        return line


class LogThrottle:
    """The bridge's pure ``LogThrottle``, shared by zServer's threads: a lock around it
    and the monotonic clock."""

    def __init__(self, interval: float = 1.0) -> None:
        self._lock = threading.Lock()
        self._throttle = PureLogThrottle(interval)

    def count(self) -> int:
        """Record one event; how many events to report now (this one included), or 0."""
        with self._lock:
            return self._throttle.hit(time.monotonic())

    def pending(self) -> int:
        """The events not reported yet (at shutdown), and start counting afresh."""
        with self._lock:
            return self._throttle.flush()


def linger(sock: socket.socket, seconds: float) -> None:
    """Before closing a connection whose request was not read to the end.

    Closing a socket with unread input makes the kernel send a reset, which can destroy
    the reply still in flight (a 413 sent before the body it refuses). So: send FIN,
    then read and drop what the client still sends, until it closes or ``seconds`` pass.
    """
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if not sock.recv(65536):
                break
    except OSError:  # reset, or the time ran out: either way the reply had its chance
        pass
