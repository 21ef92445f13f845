"""One WebSocket client of zBifrost: its session, identity and single outbound path.

Everything sent to a client goes through ``send``, which never waits. When nothing is
queued and the socket's write buffer is small, the frame is written at once; otherwise
it joins a queue that one writer task drains, waiting for the socket. The queue is
bounded in frames (``queue_size``) and in bytes (``queue_bytes``; frames are ASCII JSON,
so characters are bytes). A client that reads too slowly overflows it and is closed
(1008) with a log line, so it never stalls the others and never holds more than about
``queue_bytes`` plus the socket's buffers.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import uuid
from typing import Any

from websockets.asyncio.server import ServerConnection, broadcast
from websockets.exceptions import ConnectionClosed

from .. import strict_json
from ..auth import Identity
from ..session import Session
from .limits import TokenBucket

__all__ = ["Client"]

log = logging.getLogger("zCLI.zBifrost")
OVERFLOW_REASON = "Outbound queue overflow: the client reads too slowly."
DROP_TIMEOUT = 1.0
WRITE_BUFFER_LIMIT = 64 * 1024  # bytes in the socket's buffer before frames queue


class Client:
    def __init__(
        self,
        ws: ServerConnection,
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
        self.lock = asyncio.Lock()  # one dispatch at a time: they share the session
        self.dispatching = 0  # dispatches started and not finished
        self.inputs: dict[str, asyncio.Future[str | None]] = {}
        self.overflowed = False
        self.gone = asyncio.Event()  # set when the connection task has finished
        self.state: dict[str, Any] = {}  # plugins keep per-connection state here, by name
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=queue_size)
        self._queue_bytes = queue_bytes
        self.queued_bytes = 0
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._sequence = itertools.count()
        self._input_ids = itertools.count(1)

    def request_id(self, given: bool, value: Any) -> Any:
        """The client's ``_requestId`` verbatim, else this connection's next number."""
        return value if given else next(self._sequence)

    def new_input_id(self) -> str:
        return f"input-{next(self._input_ids)}"

    def send(self, payload: dict[str, Any]) -> None:
        """Send one JSON message. A payload that is not strict JSON (a plugin returned a
        set, NaN, ...) is our bug: logged, and the client gets an ``internal`` error."""
        try:
            text = strict_json.dumps(payload)
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

    def send_text(self, text: str) -> None:
        if self.overflowed:
            return
        if self._writer is None and self.ws.transport.get_write_buffer_size() <= WRITE_BUFFER_LIMIT:
            broadcast([self.ws], text)  # writes now, in order: nothing is queued
            return
        if self._queue.full() or self.queued_bytes + len(text) > self._queue_bytes:
            self._overflow()
            return
        self._queue.put_nowait(text)
        self.queued_bytes += len(text)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_queued())

    def _overflow(self) -> None:
        self.overflowed = True
        log.warning(
            "closing client %s (%s): %d frames (%d bytes) queued, limit reached",
            self.id,
            self.identity.user,
            self._queue.qsize(),
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
        try:
            while not self._queue.empty():
                text = self._queue.get_nowait()
                self.queued_bytes -= len(text)
                try:
                    await self.ws.send(text)
                finally:
                    self._queue.task_done()
        except ConnectionClosed:
            pass
        finally:
            self._writer = None

    async def wait_sent(self) -> None:
        """Wait until everything queued so far is written, or the connection is gone."""
        written = asyncio.ensure_future(self._queue.join())
        gone = asyncio.ensure_future(self.gone.wait())
        _done, pending = await asyncio.wait({written, gone}, return_when=asyncio.FIRST_COMPLETED)
        for waiter in pending:
            waiter.cancel()

    def finish(self) -> None:
        """The connection is over: stop writing and answer pending prompts with None."""
        if self._writer is not None:
            self._writer.cancel()
        for future in self.inputs.values():
            if not future.done():
                future.set_result(None)
        self.inputs.clear()
        self.gone.set()
