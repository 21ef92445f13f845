"""The bookkeeping of one zTunnel link: its streams, their states and credit windows.

No sockets, no asyncio, no clock. The adapter feeds a ``Link`` what happened (a
WebSocket message arrived, a TCP connection was accepted, read, dialled, drained) and
gets back effects to carry out; frames to send pile up in ``Link.outgoing`` in the
order they must go out, for the one writer of that WebSocket. Model: h2's
``connection.py`` with its ``windows.py``; the frames are docs/tunnel.md's.

Credit: a side sends DATA on a stream only while it holds credit. The receiver
counts what it delivered and returns CREDIT as the adapter reports the bytes written
to TCP (``consumed``), in batches of a quarter window. A process-wide ``Budget``
caps what all links together hold undelivered; a stream whose credit would push the
process over it waits (``Throttled``) until the total drops back.
"""

from __future__ import annotations

import collections
import enum

from zCLI import StateError

from .effects import (
    Activate,
    Deliver,
    Dial,
    Effect,
    Ended,
    HelloReceived,
    Opened,
    Refused,
    Reset,
    Resume,
    RoleReceived,
    Shutdown,
    Throttled,
    Welcomed,
)
from .frames import (
    LINK,
    Frame,
    FrameType,
    Hello,
    ProtocolViolation,
    Role,
    Welcome,
    encode,
    encode_number,
    encode_open,
    parse,
    parse_number,
    parse_open,
    parse_text,
)

__all__ = [
    "Activate",
    "Budget",
    "Deliver",
    "Dial",
    "Effect",
    "Ended",
    "HelloReceived",
    "Link",
    "Opened",
    "Refused",
    "Reset",
    "Resume",
    "RoleReceived",
    "Shutdown",
    "StreamState",
    "Throttled",
    "Welcomed",
]


# ---------------------------------------------------------------- streams


class StreamState(enum.Enum):
    OPENING = "opening"  # we sent OPEN, the peer is dialling
    DIALING = "dialing"  # the peer sent OPEN, we are dialling
    OPEN = "open"


class Event(enum.Enum):
    OPEN_OK = "OPEN_OK received"
    DIALED = "dial succeeded"


# Every state change of a stream. A stream leaves the table (is forgotten) when both
# FINs are through, at RST, or when its open fails.
TRANSITIONS: dict[tuple[StreamState, Event], StreamState] = {
    (StreamState.OPENING, Event.OPEN_OK): StreamState.OPEN,
    (StreamState.DIALING, Event.DIALED): StreamState.OPEN,
}


class Stream:
    __slots__ = (
        "id",
        "tunnel",
        "state",
        "send_credit",
        "recv_window",
        "recv_available",
        "unreturned",
        "fin_sent",
        "fin_received",
        "throttled",
    )

    def __init__(
        self, stream_id: int, tunnel: str, state: StreamState, send_credit: int, window: int
    ):
        self.id = stream_id
        self.tunnel = tunnel
        self.state = state
        self.send_credit = send_credit  # bytes we may still send
        self.recv_window = window  # what we advertised
        self.recv_available = window  # bytes the peer may still send
        self.unreturned = 0  # written to TCP, credit not yet returned
        self.fin_sent = False
        self.fin_received = False
        self.throttled = False

    def step(self, event: Event) -> None:
        try:
            self.state = TRANSITIONS[(self.state, event)]
        except KeyError:
            raise StateError(
                f"Stream {self.id} in state {self.state.value} cannot take {event.value}."
            ) from None


class Budget:
    """What every link of the process holds undelivered, against one cap."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.held = 0
        self.waiting: set[Link] = set()  # links with throttled streams

    @property
    def over(self) -> bool:
        return self.held > self.cap

    def release(self) -> list[Link]:
        """The links that queued held-back CREDIT now that the total is under the cap."""
        if self.over or not self.waiting:
            return []
        links = list(self.waiting)
        self.waiting.clear()
        for link in links:
            link.flush_throttled()
        return links


# ---------------------------------------------------------------- the link


class Link:
    """One WebSocket's streams. ``server`` says which side we are (server streams have
    even ids, client streams odd ones)."""

    def __init__(
        self,
        *,
        server: bool,
        window: int,
        chunk: int,
        budget: Budget | None = None,
        peer_window: int | None = None,
    ) -> None:
        self.server = server
        self.window = window
        self.chunk = chunk
        self.peer_window = window if peer_window is None else peer_window
        self.budget = budget if budget is not None else Budget(1 << 62)
        self.streams: dict[int, Stream] = {}
        self.outgoing: collections.deque[bytes] = collections.deque()
        self.outgoing_bytes = 0
        self.greeted = False  # HELLO (server) or WELCOME (client) received
        self.owner: object = None  # the adapter's handle for this link; unused here
        self._next_id = 2 if server else 1
        self._last_peer_id = 0
        self._return_at = max(1, window // 4)
        self._handlers = {
            FrameType.OPEN: self._on_open,
            FrameType.OPEN_OK: self._on_open_ok,
            FrameType.OPEN_FAILED: self._on_open_failed,
            FrameType.DATA: self._on_data,
            FrameType.CREDIT: self._on_credit,
            FrameType.FIN: self._on_fin,
            FrameType.RST: self._on_rst,
            FrameType.HELLO: self._on_hello,
            FrameType.WELCOME: self._on_welcome,
            FrameType.ACTIVATE: self._on_activate,
            FrameType.ROLE: self._on_role,
        }

    # ------------------------------------------------------------ output

    def _queue(self, frame: bytes) -> None:
        self.outgoing.append(frame)
        self.outgoing_bytes += len(frame)

    def pop_outgoing(self) -> bytes:
        """The next frame for the writer, in order."""
        frame = self.outgoing.popleft()
        self.outgoing_bytes -= len(frame)
        return frame

    # ------------------------------------------------------------ link control (ours)

    def send_hello(self, client_id: int, token: str | None) -> None:
        self._queue(encode(FrameType.HELLO, LINK, Hello(client_id, token, self.window).to_json()))

    def send_welcome(self, active: bool) -> None:
        self._queue(encode(FrameType.WELCOME, LINK, Welcome(active, self.window).to_json()))

    def send_activate(self) -> None:
        self._queue(encode(FrameType.ACTIVATE, LINK))

    def send_role(self, role: Role) -> None:
        self._queue(encode(FrameType.ROLE, LINK, role.to_json()))

    # ------------------------------------------------------------ streams (ours)

    def open_stream(self, tunnel: str) -> int:
        """A new stream for a connection we accepted; DATA may follow at once."""
        stream_id = self._next_id
        self._next_id += 2
        self.streams[stream_id] = Stream(
            stream_id, tunnel, StreamState.OPENING, self.peer_window, self.window
        )
        self._queue(encode(FrameType.OPEN, stream_id, encode_open(self.window, tunnel)))
        return stream_id

    def dial_succeeded(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:  # reset while dialling
            return
        stream.step(Event.DIALED)
        self._queue(encode(FrameType.OPEN_OK, stream_id, encode_number(stream.recv_window)))

    def dial_failed(self, stream_id: int, reason: str) -> None:
        if self.streams.pop(stream_id, None) is not None:
            self._queue(encode(FrameType.OPEN_FAILED, stream_id, reason.encode()))

    def credit(self, stream_id: int) -> int:
        """Bytes we may send on the stream now (0 for a gone stream)."""
        stream = self.streams.get(stream_id)
        if stream is None or stream.fin_sent:
            return 0
        return stream.send_credit

    def send_data(self, stream_id: int, data: bytes | memoryview) -> int:
        """Queue DATA frames for as much of ``data`` as the credit allows; the count
        queued. The adapter keeps the rest and stops reading until ``Resume``."""
        stream = self.streams.get(stream_id)
        if stream is None:
            return 0
        if stream.fin_sent:
            raise StateError(f"Stream {stream_id} has sent FIN and cannot send data.")
        size = min(len(data), stream.send_credit)
        if size == 0:
            return 0
        stream.send_credit -= size
        chunk = self.chunk
        if size <= chunk:
            self._queue(
                encode(FrameType.DATA, stream_id, data[:size] if size < len(data) else data)
            )
            return size
        view = memoryview(data)
        for start in range(0, size, chunk):
            self._queue(encode(FrameType.DATA, stream_id, view[start : min(start + chunk, size)]))
        return size

    def send_fin(self, stream_id: int) -> bool:
        """Our TCP side reached EOF; True when that ends the stream (both FINs)."""
        stream = self.streams.get(stream_id)
        if stream is None or stream.fin_sent:
            return False
        stream.fin_sent = True
        self._queue(encode(FrameType.FIN, stream_id))
        if stream.fin_received:
            self._forget(stream)
            return True
        return False

    def reset(self, stream_id: int, reason: str) -> None:
        """Our TCP side failed or was aborted: the stream is gone both ways."""
        stream = self.streams.get(stream_id)
        if stream is not None:
            self._forget(stream)
            self._queue(encode(FrameType.RST, stream_id, reason.encode()))

    def consumed(self, stream_id: int, size: int) -> Throttled | None:
        """``size`` delivered bytes left the process (written to TCP, or dropped with a
        gone connection); returns CREDIT to the peer in batches."""
        budget = self.budget
        budget.held -= size
        stream = self.streams.get(stream_id)
        if stream is None or stream.fin_received:
            return None
        stream.unreturned += size
        if stream.unreturned < self._return_at and stream.recv_available > 0:
            return None
        if budget.over:
            if stream.throttled:
                return None
            stream.throttled = True
            budget.waiting.add(self)
            return Throttled(stream_id, budget.held, budget.cap)
        self._return_credit(stream)
        return None

    def flush_throttled(self) -> None:
        for stream in self.streams.values():
            if stream.throttled:
                stream.throttled = False
                if stream.unreturned:
                    self._return_credit(stream)

    def _return_credit(self, stream: Stream) -> None:
        amount = stream.unreturned
        stream.unreturned = 0
        stream.recv_available += amount
        self._queue(encode(FrameType.CREDIT, stream.id, encode_number(amount)))

    def close(self) -> list[int]:
        """The WebSocket is gone: every stream with it. Their ids, for the adapter."""
        ids = list(self.streams)
        for stream in list(self.streams.values()):
            self._forget(stream)
        self.outgoing.clear()
        self.outgoing_bytes = 0
        return ids

    def _forget(self, stream: Stream) -> None:
        del self.streams[stream.id]
        stream.throttled = False

    # ------------------------------------------------------------ frames (theirs)

    def receive(self, message: bytes | memoryview) -> list[Effect]:
        """What one WebSocket message means; ProtocolViolation closes the link."""
        frame = parse(message, self.chunk)
        if frame.stream_id == LINK:
            if frame.type < FrameType.HELLO:
                raise ProtocolViolation(f"A {frame.type.name} frame cannot use stream 0.")
        else:
            if frame.type >= FrameType.HELLO:
                raise ProtocolViolation(
                    f"A {frame.type.name} frame must use stream 0, not {frame.stream_id}."
                )
            if not self.greeted:
                expected = "HELLO" if self.server else "WELCOME"
                raise ProtocolViolation(
                    f"A {frame.type.name} frame came before the {expected} frame."
                )
        return self._handlers[frame.type](frame)

    def _unknown(self, frame: Frame) -> list[Effect]:
        """A frame for a stream we do not have: RST, so the peer forgets it too."""
        self._queue(encode(FrameType.RST, frame.stream_id, b"unknown stream"))
        return []

    def _on_open(self, frame: Frame) -> list[Effect]:
        stream_id = frame.stream_id
        theirs = 1 if self.server else 0
        if stream_id % 2 != theirs:
            raise ProtocolViolation(
                f"OPEN for stream {stream_id}: the {'client' if self.server else 'server'} "
                f"opens {'odd' if self.server else 'even'} ids."
            )
        if stream_id <= self._last_peer_id:
            raise ProtocolViolation(f"OPEN for stream {stream_id} reuses an id.")
        window, tunnel = parse_open(frame)
        if window == 0:
            raise ProtocolViolation(f"OPEN for stream {stream_id} advertises a window of 0.")
        self._last_peer_id = stream_id
        self.streams[stream_id] = Stream(
            stream_id, tunnel, StreamState.DIALING, window, self.window
        )
        return [Dial(stream_id, tunnel)]

    def _ours(self, frame: Frame) -> Stream | None:
        return self.streams.get(frame.stream_id)

    def _on_open_ok(self, frame: Frame) -> list[Effect]:
        window = parse_number(frame)
        stream = self._ours(frame)
        if stream is None:
            return self._unknown(frame)
        if stream.state is not StreamState.OPENING:
            raise ProtocolViolation(
                f"OPEN_OK for stream {stream.id}, which is {stream.state.value}, not opening."
            )
        stream.step(Event.OPEN_OK)
        before = stream.send_credit
        stream.send_credit += window - self.peer_window
        effects: list[Effect] = [Opened(stream.id)]
        if before <= 0 < stream.send_credit:
            effects.append(Resume(stream.id))
        return effects

    def _on_open_failed(self, frame: Frame) -> list[Effect]:
        reason = parse_text(frame)
        stream = self._ours(frame)
        if stream is None:
            return []
        if stream.state is not StreamState.OPENING:
            raise ProtocolViolation(
                f"OPEN_FAILED for stream {stream.id}, which is {stream.state.value}, not opening."
            )
        self._forget(stream)
        return [Refused(stream.id, reason)]

    def _on_data(self, frame: Frame) -> list[Effect]:
        size = len(frame.payload)
        if size == 0:
            raise ProtocolViolation(f"DATA for stream {frame.stream_id} is empty.")
        stream = self.streams.get(frame.stream_id)
        if stream is None:
            return self._unknown(frame)
        if stream.fin_received:
            raise ProtocolViolation(f"DATA for stream {stream.id} came after its FIN.")
        if size > stream.recv_available:
            raise ProtocolViolation(
                f"DATA of {size} bytes for stream {stream.id} exceeds its credit of "
                f"{stream.recv_available} bytes."
            )
        stream.recv_available -= size
        self.budget.held += size
        return [Deliver(stream.id, frame.payload)]

    def _on_credit(self, frame: Frame) -> list[Effect]:
        increment = parse_number(frame)
        stream = self.streams.get(frame.stream_id)
        if stream is None:  # finished or reset on our side: late credit means nothing
            return []
        before = stream.send_credit
        stream.send_credit += increment
        if before <= 0 < stream.send_credit and not stream.fin_sent:
            return [Resume(stream.id)]
        return []

    def _on_fin(self, frame: Frame) -> list[Effect]:
        if len(frame.payload):
            raise ProtocolViolation(f"FIN for stream {frame.stream_id} carries a payload.")
        stream = self.streams.get(frame.stream_id)
        if stream is None:
            return self._unknown(frame)
        if stream.fin_received:
            raise ProtocolViolation(f"A second FIN for stream {stream.id}.")
        stream.fin_received = True
        if stream.fin_sent:
            self._forget(stream)
            return [Shutdown(stream.id), Ended(stream.id)]
        return [Shutdown(stream.id)]

    def _on_rst(self, frame: Frame) -> list[Effect]:
        reason = parse_text(frame)
        stream = self.streams.get(frame.stream_id)
        if stream is None:  # never answer RST with RST
            return []
        self._forget(stream)
        return [Reset(stream.id, reason)]

    def _on_hello(self, frame: Frame) -> list[Effect]:
        if not self.server:
            raise ProtocolViolation("A client does not take HELLO frames.")
        if self.greeted:
            raise ProtocolViolation("A second HELLO frame.")
        hello = Hello.parse(frame)
        self.greeted = True
        if hello.window is not None:
            self.peer_window = hello.window
        return [HelloReceived(hello)]

    def _on_welcome(self, frame: Frame) -> list[Effect]:
        if self.server:
            raise ProtocolViolation("The server does not take WELCOME frames.")
        if self.greeted:
            raise ProtocolViolation("A second WELCOME frame.")
        welcome = Welcome.parse(frame)
        self.greeted = True
        if welcome.window is not None:
            self.peer_window = welcome.window
        return [Welcomed(welcome)]

    def _on_activate(self, frame: Frame) -> list[Effect]:
        if not self.server:
            raise ProtocolViolation("A client does not take ACTIVATE frames.")
        if not self.greeted:
            raise ProtocolViolation("An ACTIVATE frame came before the HELLO frame.")
        if len(frame.payload):
            raise ProtocolViolation("The ACTIVATE frame carries a payload.")
        return [Activate()]

    def _on_role(self, frame: Frame) -> list[Effect]:
        if self.server:
            raise ProtocolViolation("The server does not take ROLE frames.")
        if not self.greeted:
            raise ProtocolViolation("A ROLE frame came before the WELCOME frame.")
        return [RoleReceived(Role.parse(frame))]
