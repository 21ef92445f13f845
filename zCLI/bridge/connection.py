"""What zBifrost needs from one WebSocket connection, and its websockets-asyncio adapter.

zBifrost and its ``Client`` speak to a connection only through ``BridgeConnection``. Two
adapters implement it (``websocket.adapter``): ``TrackedConnection`` here, websockets'
own asyncio connection with a little added, and ``SansIOConnection`` (``sansio.py``), an
asyncio Protocol of ours driving websockets' sans-I/O ``ServerProtocol``. Both frame
through that same ``ServerProtocol`` (``protocol``): the WebSocket rules stay websockets'.

Messages reach zBifrost one of two ways: ``recv()`` while a connection signs in (one
message at a time, awaited), then ``serve_messages(handle, flush)`` for the rest of its
life: ``handle`` (zBifrost's per-message code, shared by both adapters) answers a message
at once, or returns an awaitable that must finish before the next message is handled
(a sign-in, a close); ``flush`` writes the replies framed meanwhile. The asyncio adapter
feeds it from ``recv()`` in a loop; the sans-I/O one calls it from ``data_received``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from websockets.asyncio.server import ServerConnection
from websockets.frames import DATA_OPCODES, Frame
from websockets.http11 import Request
from websockets.protocol import Event
from websockets.server import ServerProtocol

__all__ = ["BridgeConnection", "MessageHandler", "TrackedConnection", "write_data"]

# A message in; None when it was answered at once, else what to await before the next
# message (its result True: the connection is done, stop reading).
MessageHandler = Callable[[str | bytes], Awaitable[bool | None] | None]


class BridgeConnection(Protocol):
    """One WebSocket connection as zBifrost uses it."""

    protocol: ServerProtocol  # websockets' sans-I/O core: state, framing, extensions
    transport: asyncio.Transport
    request: Request | None  # the handshake request: path (``?token=``) and headers

    @property
    def remote_address(self) -> Any: ...

    async def recv(self) -> str | bytes:
        """The next message; ConnectionClosed once the connection is closed."""
        ...

    async def send(self, message: str) -> None:
        """Frame and write one text message, waiting while the socket's buffer is full."""
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """The closing handshake; returns when the TCP connection is closed."""
        ...

    def write_data(self) -> None:
        """Write what ``protocol`` has framed and not yet written, in one call."""
        ...

    async def serve_messages(self, handle: MessageHandler, flush: Callable[[], None]) -> None:
        """Hand every message to ``handle`` in order, calling ``flush`` once no other
        message is waiting; until the connection closes (ConnectionClosed) or a
        handler's awaitable returns True."""
        ...


def write_data(protocol: ServerProtocol, transport: asyncio.Transport) -> bool:
    """Write ``protocol.data_to_send()`` in one ``transport.write``; an empty chunk (the
    protocol's end of stream) half-closes the socket, or closes it when it cannot.
    True when the end of stream was written."""
    chunks = protocol.data_to_send()
    if not chunks:
        return False
    if chunks[-1]:
        transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        return False
    data = b"".join(chunks)  # the end of stream comes last: nothing follows it
    if data:
        transport.write(data)
    if transport.can_write_eof():
        try:
            transport.write_eof()
        except (OSError, RuntimeError):  # closed meanwhile (uvloop raises RuntimeError)
            pass
    else:
        transport.close()
    return True


class TrackedConnection(ServerConnection):
    """websockets' asyncio connection (``websocket.adapter: asyncio``), which adds itself
    to ``tracked`` from its first byte to its last, so the bridge can cut handshakes
    that never finish. It counts the messages it has received (``messages_in``), so the
    reader knows whether another one is waiting."""

    tracked: set[Any]
    messages_in = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.tracked.add(self)

    def process_event(self, event: Event) -> None:
        super().process_event(event)
        if isinstance(event, Frame) and event.fin and event.opcode in DATA_OPCODES:
            self.messages_in += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.tracked.discard(self)
        super().connection_lost(exc)

    def write_data(self) -> None:
        write_data(self.protocol, self.transport)

    async def serve_messages(self, handle: MessageHandler, flush: Callable[[], None]) -> None:
        """``recv()`` rather than ``async for``: no generator per connection, no
        generator step per message. The replies are flushed only when no other message
        has arrived, so those to one read from the socket go out in one system call."""
        read = 0
        while True:
            message = await self.recv()
            read += 1
            try:
                waiting = handle(message)
                if waiting is not None and await waiting:
                    return
            finally:
                if self.messages_in <= read:
                    flush()
