"""WebSocket connections that hand each binary message straight to the pump.

websockets' asyncio connections queue messages for ``recv()``, which costs a task
switch per message. These subclasses (``create_connection=`` of ``serve`` and
``connect``) call the attached sink from ``data_received`` instead; messages that
arrive before a sink is attached wait in order and are handed over on ``attach``.
Everything else (handshake, pings, close) stays websockets' own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.server import ServerConnection
from websockets.frames import Frame, Opcode

__all__ = ["FastClientConnection", "FastServerConnection", "Message", "Sink"]

Message = bytes | str | None  # a binary message, a text message, or a fragment (None)
Sink = Callable[[Message], None]


class _DirectMessages:
    """Mixin: binary messages go to the attached sink as they are parsed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._sink: Sink | None = None
        self._attached = False
        self._early: list[Message] = []
        super().__init__(*args, **kwargs)

    def attach(self, sink: Sink | None) -> None:
        """From now on hand messages to ``sink`` (None: drop them), early ones first."""
        self._attached = True
        self._sink = sink
        early, self._early = self._early, []
        for message in early:
            if self._sink is None:
                break
            self._sink(message)

    def process_event(self, event: Any) -> None:
        if isinstance(event, Frame) and event.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            message: Message
            if not event.fin or event.opcode is Opcode.CONT:
                message = None
            elif event.opcode is Opcode.TEXT:
                message = bytes(event.data).decode("utf-8", "replace")
            else:
                message = event.data if isinstance(event.data, bytes) else bytes(event.data)
            if not self._attached:
                self._early.append(message)
            elif self._sink is not None:
                self._sink(message)
            return
        super().process_event(event)  # type: ignore[misc]


class FastServerConnection(_DirectMessages, ServerConnection):
    pass


class FastClientConnection(_DirectMessages, ClientConnection):
    pass
