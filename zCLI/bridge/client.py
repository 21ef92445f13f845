"""One WebSocket client of zBifrost: its session, identity and single outbound path.

Everything sent to a client goes through ``send``, which never waits. When nothing is
queued and the socket's write buffer is small, the frame is framed at once and written
when the loop next turns: frames sent while the reader handles one read from the socket
(16 pipelined requests, several events to one client) go out in one system call, not one
each. A broadcast writes each client's frame at once, as ``websockets.broadcast`` does, so
a fan-out to thousands holds no frame and schedules nothing per client. Otherwise it
joins a queue that one writer task drains, waiting for the socket. The queue is bounded
in frames (``queue_size``) and in bytes (``queue_bytes``; frames are ASCII JSON, so
characters are bytes). A client that reads too slowly overflows it and is closed
(1008) with a log line, so it never stalls the others and never holds more than about
``queue_bytes`` plus the socket's buffers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.protocol import State

from .. import strict_json
from ..auth import Identity
from ..session import Session
from .connection import BridgeConnection
from .limits import TokenBucket

__all__ = ["Client", "FastClient"]

log = logging.getLogger("zCLI.zBifrost")
OVERFLOW_REASON = "Outbound queue overflow: the client reads too slowly."
DROP_TIMEOUT = 1.0
WRITE_BUFFER_LIMIT = 64 * 1024  # bytes in the socket's buffer before frames queue
# Framed bytes held for one write before the loop turns: past this they go out at once,
# so a fan-out of a large event to many clients never holds a copy per client.
COALESCE_BYTES = 16 * 1024
_OPEN = State.OPEN  # looked up once: it is checked for every frame


class Client:
    # the bridge's JSON writer; FastClient's in fast mode
    encode: Callable[[Any], str] = staticmethod(strict_json.dumps)
    # Clients whose framed bytes are written when the loop next turns. Each bridge
    # has a subclass with a list of its own (``for_bridge``), so one loop's list never
    # waits on another's callback.
    due: ClassVar[list[Client]] = []
    __slots__ = (
        "ws", "session", "identity", "id", "bucket", "dispatching", "_inputs", "overflowed",
        "_state", "_lock", "_gone", "_finished", "_queue", "_queue_size", "_queue_bytes",
        "queued_bytes", "_writer", "_closer", "_flushing", "_framed", "_next_request",
        "_next_input", "constants",
    )  # fmt: skip

    def __init__(
        self,
        ws: BridgeConnection,
        session: Session | None,
        identity: Identity,
        queue_size: int,
        bucket: TokenBucket,
        queue_bytes: int = 4_194_304,
    ) -> None:
        self.ws = ws
        self.session = session
        self.identity = identity
        self.id = uuid.uuid4().hex
        self.bucket = bucket
        self.dispatching = 0  # dispatches started and not finished
        self.overflowed = False
        # An idle connection holds none of these: each is made when first needed.
        self._inputs: dict[str, asyncio.Future[str | None]] | None = None
        self._state: dict[str, Any] | None = None
        self._lock: asyncio.Lock | None = None
        self._gone: asyncio.Event | None = None
        self._finished = False
        self._queue: asyncio.Queue[str] | None = None
        self._queue_size = queue_size
        self._queue_bytes = queue_bytes
        self.queued_bytes = 0
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._flushing = False  # a flush of the framed bytes is scheduled
        self._framed = 0  # bytes framed for that flush: they count as the socket's buffer
        # the bridge's constant replies where the session is: (its location, key -> reply)
        self.constants: tuple[Any, dict[str, str | None]] | None = None
        self._next_request = 0  # the _requestId of the next request that has none
        self._next_input = 1

    @classmethod
    def for_bridge(cls) -> type[Client]:
        """This class with its own ``due`` list, for one bridge's clients."""
        return type(cls.__name__, (cls,), {"__slots__": (), "due": []})

    @property
    def inputs(self) -> dict[str, asyncio.Future[str | None]]:
        """The prompts waiting for an ``input_response``, by input id."""
        if self._inputs is None:
            self._inputs = {}
        return self._inputs

    @property
    def state(self) -> dict[str, Any]:
        """Plugins keep per-connection state here, by name."""
        if self._state is None:
            self._state = {}
        return self._state

    @property
    def lock(self) -> asyncio.Lock:
        """One dispatch at a time: they share the session."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def request_id(self, given: bool, value: Any) -> Any:
        """The client's ``_requestId`` verbatim, else this connection's next number."""
        if given:
            return value
        number = self._next_request
        self._next_request = number + 1
        return number

    def new_input_id(self) -> str:
        number = self._next_input
        self._next_input = number + 1
        return f"input-{number}"

    def send(self, payload: dict[str, Any]) -> None:
        """Send one JSON message. A payload that is not strict JSON (a plugin returned a
        set, NaN, ...) is our bug: logged, and the client gets an ``internal`` error."""
        try:
            text = self.encode(payload)
        except (TypeError, ValueError):
            log.exception("a reply to client %s could not be encoded as JSON", self.id)
            text = json.dumps(
                {
                    "error": "The reply could not be encoded as JSON.",
                    "code": "internal",
                    "_requestId": payload.get("_requestId"),
                }
            )
        self.send_text(text)

    def send_uncompressed(self, payload: dict[str, Any]) -> None:
        """``send`` without permessage-deflate (RFC 7692 lets any message go
        uncompressed). For ``connection_info``: a connection that then stays idle never
        touches its compressor's memory, about 4 KB of resident memory less each."""
        protocol = self.ws.protocol
        extensions = protocol.extensions
        protocol.extensions = [e for e in extensions if not isinstance(e, PerMessageDeflate)]
        try:
            self.send(payload)  # framed now (or queued: then compressed when written)
        finally:
            protocol.extensions = extensions

    def send_text(
        self, text: str, flush: bool = True, encoded: bytes | None = None, at_once: bool = False
    ) -> None:
        """Send one frame of JSON text (``encoded``: the same as UTF-8, when the caller
        has it). ``flush=False``: the caller calls ``flush()`` before the loop turns (the
        reader, when no other message is waiting). ``at_once``: written now, with any
        frames framed before it, unless a flush is already due (a broadcast: one frame
        for each of many clients, held by none of them)."""
        if self.overflowed:
            return
        ws = self.ws
        framed = self._framed
        if (
            self._writer is None
            and ws.transport.get_write_buffer_size() + framed <= WRITE_BUFFER_LIMIT
        ):
            # Nothing is queued: frame it now, in order, and write with the frames that
            # follow it before the loop turns (a closing connection takes no more).
            protocol = ws.protocol
            if protocol.state is _OPEN:
                protocol.send_text(text.encode() if encoded is None else encoded)
                self._framed = framed = framed + len(text)
                if (at_once and not self._flushing) or framed >= COALESCE_BYTES:
                    self.flush()
                elif flush and not self._flushing:
                    self._flushing = True
                    due = self.due
                    if not due:  # one callback writes every client's frames (a fan-out)
                        asyncio.get_running_loop().call_soon(_flush_due, due)
                    due.append(self)
            return
        queue = self._queue
        if queue is None:
            queue = self._queue = asyncio.Queue(maxsize=self._queue_size)
        if queue.full() or self.queued_bytes + len(text) > self._queue_bytes:
            self._overflow()
            return
        queue.put_nowait(text)
        self.queued_bytes += len(text)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_queued())

    def write_frame(self, frame: bytes) -> bool:
        """Write ``frame``, a whole text frame framed once for many clients (a server's
        frames are not masked, so without an extension they are the same bytes for
        every client), after what was framed before it. False when this client needs
        its own framing (permessage-deflate negotiated), or cannot take it at once (a
        queue, a full buffer, a closing connection): the caller uses ``send_text``."""
        ws = self.ws
        protocol = ws.protocol
        if (
            self._writer is not None
            or protocol.extensions
            or protocol.state is not State.OPEN
            or self.overflowed
        ):
            return False
        transport = ws.transport
        if transport.get_write_buffer_size() + self._framed > WRITE_BUFFER_LIMIT:
            return False
        if self._framed:
            self.flush()  # in order: the frames framed before it go first
        transport.write(frame)
        return True

    @property
    def framed_bytes(self) -> int:
        """Bytes framed for this client and not yet handed to its socket (at most
        about ``COALESCE_BYTES``: larger runs are written at once)."""
        return self._framed

    def flush(self) -> None:
        """Write every frame framed and not yet written, in one system call."""
        if not self._framed:
            return
        self._framed = 0
        self.ws.write_data()  # nothing when websockets wrote them (it writes after each read)

    def _overflow(self) -> None:
        self.overflowed = True
        log.warning(
            "closing client %s (%s): %d frames (%d bytes) queued, limit reached",
            self.id,
            self.identity.user,
            self._queue.qsize() if self._queue is not None else 0,
            self.queued_bytes,
        )
        self.close_soon(1008, OVERFLOW_REASON)

    def close_soon(self, code: int, reason: str) -> None:
        """Start closing without waiting here (once; later calls change nothing)."""
        if self._closer is None:
            self._closer = asyncio.get_running_loop().create_task(self._drop(code, reason))

    async def _drop(self, code: int, reason: str) -> None:
        """Close; a peer that reads nothing never takes the close frame, so give up on
        the closing handshake after a moment and cut the connection."""
        try:
            await asyncio.wait_for(self.ws.close(code, reason), DROP_TIMEOUT)
        except TimeoutError:
            self.ws.transport.abort()

    async def _write_queued(self) -> None:
        """The writer while frames are queued: waits for the socket between frames."""
        queue = self._queue
        assert queue is not None  # send_text made it before starting this writer
        try:
            while not queue.empty():
                text = queue.get_nowait()
                self.queued_bytes -= len(text)
                try:
                    await self.ws.send(text)
                finally:
                    queue.task_done()
        except ConnectionClosed:
            pass
        finally:
            self._writer = None

    @property
    def gone(self) -> asyncio.Event:
        """Set when the connection task has finished."""
        if self._gone is None:
            self._gone = asyncio.Event()
            if self._finished:
                self._gone.set()
        return self._gone

    async def wait_sent(self) -> None:
        """Wait until everything queued so far is written, or the connection is gone."""
        if self._queue is None or self._finished:
            return
        written = asyncio.ensure_future(self._queue.join())
        gone = asyncio.ensure_future(self.gone.wait())
        _done, pending = await asyncio.wait({written, gone}, return_when=asyncio.FIRST_COMPLETED)
        for waiter in pending:
            waiter.cancel()

    def finish(self) -> None:
        """The connection is over: stop writing and answer pending prompts with None."""
        if self._writer is not None:
            self._writer.cancel()
        if self._inputs is not None:
            for future in self._inputs.values():
                if not future.done():
                    future.set_result(None)
            self._inputs.clear()
        self._finished = True
        if self._gone is not None:
            self._gone.set()


def _flush_due(due: list[Client]) -> None:
    """Write the framed bytes of every client in ``due`` (each in one system call)."""
    clients = list(due)
    due.clear()
    for client in clients:
        client._flushing = False
        client.flush()


class FastClient(Client):
    """A client of a bridge in fast mode: its replies are written by orjson, with the
    strict rules kept (``strict_json.fast_dumps``)."""

    __slots__ = ()
    encode = staticmethod(strict_json.fast_dumps)
