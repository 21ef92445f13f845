"""The ``chat_server`` plugin: a thin adapter from zBifrost to ``ChatCore``.

Hooks turn sign-ins and departures into core calls; each ``chat.*`` event is parsed,
fed to the core, and the effects carried out in order: storage writes first (a message
is on disk before anyone hears "stored"), sends after the reply. Only ``zcli chat -s``
loads this plugin (through the zSpark ``plugins`` list).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from zCLI import Plugin, RequestError, StorageError

from . import core as c
from . import messages as m
from .storage import UNAVAILABLE, SQLiteStorage

__all__ = ["PLUGIN", "ChatServer", "Settings"]

# zCLI.EventContext loads lazily, so mypy sees it as an object; handlers take it untyped.
Ctx = Any


@dataclass(frozen=True)
class Settings:
    """docs/chat.md's settings, from ``ZCHAT_*`` (``zcli chat -s`` sets them from options)."""

    db: str | None
    limits: c.Limits

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        base = c.Limits()

        def num(name: str, default: float) -> float:
            return float(env.get(f"ZCHAT_{name}", default))

        limits = c.Limits(
            ack_timeout=num("ACK_TIMEOUT", base.ack_timeout),
            keepalive=num("KEEPALIVE", base.keepalive),
            max_text=int(num("MAX_TEXT", base.max_text)),
            max_stored=int(num("MAX_STORED", base.max_stored)),
            max_online=int(num("MAX_ONLINE", base.max_online)),
            max_rate=int(num("MAX_RATE", base.max_rate)),
            room_history=int(num("ROOM_HISTORY", base.room_history)),
            max_users=int(num("MAX_USERS", base.max_users)),
        )
        return cls(env.get("ZCHAT_DB") or None, limits)


class ChatServer:
    """One bridge's chat: the core, its storage and its timers."""

    def __init__(self, bridge: Any, settings: Settings) -> None:
        self.bridge = bridge
        self.settings = settings
        state_dir = Path(bridge.zcli.state_dir)  # the workspace's, not the current folder's
        path = Path(settings.db) if settings.db else state_dir / "chat.sqlite3"
        self.storage = SQLiteStorage(path)
        self.core = c.ChatCore(settings.limits, users=set(self.storage.users()))
        self.core.restore(self.storage.stored(), self.storage.rooms(), self.storage.room_messages())
        self.core.next_id = max(self.core.next_id, self.storage.next_id())
        self.timers: dict[int, asyncio.TimerHandle] = {}

    def apply(self, effects: list[c.Effect]) -> dict[str, Any] | None:
        """Carry out ``effects``; returns the reply. Sends run after the reply is queued."""
        reply: dict[str, Any] | None = None
        later: list[c.Effect] = []
        try:
            for effect in effects:
                match effect:
                    case c.Reply(result):
                        reply = result
                    case c.Store(message):
                        self.storage.store(message)
                    case c.Delete(ids):
                        self.storage.delete(ids)
                    case c.AddUser(user):
                        self.storage.add_user(user)
                    case c.StoreRoom(room, members):
                        self.storage.save_room(room, members)
                    case c.StoreRoomMessage(message):
                        self.storage.store_room_message(message, self.core.limits.room_history)
                    case _:
                        later.append(effect)
        except StorageError:
            self.storage_lost()
            raise RequestError(UNAVAILABLE, "storage_error") from None
        asyncio.get_running_loop().call_soon(self._io, later)
        return reply

    def _io(self, effects: list[c.Effect]) -> None:
        loop = asyncio.get_running_loop()
        for effect in effects:
            match effect:
                case c.Send(conn, payload):
                    _client(conn).send(payload)
                case c.StartTimer(message_id, seconds):
                    self.timers[message_id] = loop.call_later(seconds, self._expired, message_id)
                case c.CancelTimer(message_id):
                    handle = self.timers.pop(message_id, None)
                    if handle is not None:
                        handle.cancel()
                case c.Close(conn, code, reason):
                    _client(conn).close_soon(code, reason)

    def _expired(self, message_id: int) -> None:
        self.timers.pop(message_id, None)
        try:
            self.apply(self.core.ack_timeout(message_id, time.time()))
        except RequestError:
            pass  # storage_lost has closed everyone; the message stays with the sender

    def storage_lost(self) -> None:
        for conn in list(self.core.conns):
            _client(conn).close_soon(1013, UNAVAILABLE)


def _client(conn: object) -> Any:
    """The core names connections by their zBifrost ``Client``."""
    return conn


_SERVERS: WeakKeyDictionary[Any, ChatServer] = WeakKeyDictionary()


def chat_of(bridge: Any) -> ChatServer:
    server = _SERVERS.get(bridge)
    if server is None:
        server = _SERVERS[bridge] = ChatServer(bridge, Settings.from_env())
    return server


def _signed_in(ctx: Ctx) -> None:
    if ctx.client.identity.authenticated:
        chat = chat_of(ctx.bridge)
        chat.apply(chat.core.connected(ctx.client.identity.user, ctx.client, time.time()))


def _gone(ctx: Ctx) -> None:
    chat = chat_of(ctx.bridge)
    chat.apply(chat.core.disconnected(ctx.client))


def _handler(name: str) -> Any:
    def handle(ctx: Ctx, data: Any) -> Any:
        chat = chat_of(ctx.bridge)
        event = m.parse(name, data)
        return chat.apply(chat.core.received(ctx.client, event, time.time()))

    return handle


async def _register(ctx: Ctx, data: Any) -> dict[str, Any]:
    event = m.parse("chat.register", data)
    assert isinstance(event, m.Register)
    chat = chat_of(ctx.bridge)
    auth = ctx.bridge.zcli.auth
    if event.username in chat.core.users or auth.users.get(event.username) is not None:
        raise RequestError(f"There is already a user named {event.username!r}.", "user_exists")
    most = chat.core.limits.max_users
    if len(chat.core.users) >= most:
        raise RequestError(
            f"The chat server has {most} accounts, the most allowed; no more can be created.",
            "too_many_users",
        )
    await asyncio.to_thread(auth.add_user, event.username, event.password, "user")
    chat.apply(chat.core.registered(event.username))
    identity = auth.issue(event.username, "user")
    return {"user": event.username, "token": identity.token}


async def _keepalive_service(bridge: Any) -> None:
    chat = chat_of(bridge)
    period = max(chat.core.limits.keepalive / 4, 0.01)
    while True:
        await asyncio.sleep(period)  # a clock, not a synchronisation
        chat.apply(chat.core.tick(time.time()))


EVENTS = {name: _handler(name) for name in m.EVENTS if name != "chat.register"}
EVENTS["chat.register"] = _register

PLUGIN = Plugin(
    "chat_server",
    events=EVENTS,
    hooks={"connect": _signed_in, "sign_in": _signed_in, "sign_out": _gone, "disconnect": _gone},
    services=[_keepalive_service],
    public_events={"chat.register"},
)
