"""The ``chat_server`` plugin: a thin adapter from zBifrost to ``ChatCore``.

Hooks turn sign-ins and departures into core calls; each ``chat.*`` event is parsed,
fed to the core, and the effects carried out in order: storage writes first (a message
is on disk before anyone hears "stored"), sends after the reply. Only ``zcli chat -s``
loads this plugin (through the zSpark ``plugins`` list).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from zCLI import Plugin, RequestError, StorageError

from . import core as c
from . import messages as m
from .bots import Bot, EchoBot, bot_from_environment
from .storage import UNAVAILABLE, open_storage
from .writer import StorageWriter

__all__ = ["PLUGIN", "ChatServer", "Settings"]

log = logging.getLogger("zCLI.apps.chat")
# zCLI.EventContext loads lazily, so mypy sees it as an object; handlers take it untyped.
Ctx = Any


@dataclass(frozen=True)
class Settings:
    """docs/chat.md's settings, from ``ZCHAT_*`` (``zcli chat -s`` sets them from options)."""

    db: str | None
    limits: c.Limits
    storage_check: float = 1.0  # seconds between probes of the storage
    bots: tuple[Bot, ...] = ()

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
        bots: list[Bot] = []
        if env.get("ZCHAT_ECHO_BOT"):
            bots.append(EchoBot(env["ZCHAT_ECHO_BOT"]))
        openai = bot_from_environment(env)
        if openai is not None:
            bots.append(openai)
        storage_check = num("STORAGE_CHECK", 1.0)
        return cls(env.get("ZCHAT_DB") or None, limits, storage_check, tuple(bots))


_Answer = asyncio.Future[dict[str, Any] | None]


@dataclass
class _Step:
    """A step waiting for the disk: its reply, then its sends, once ``write`` (None:
    nothing of its own) is committed and every earlier step has been answered."""

    reply: dict[str, Any] | None
    later: list[c.Effect]
    write: asyncio.Future[None] | None
    answer: _Answer


class ChatServer:
    """One bridge's chat: the core, its storage (through the writer thread), timers.

    Effects are carried out in the order the core produced them, across requests: the
    storage writes of a step are committed before its reply and sends, and a step waits
    behind every earlier step still waiting for the disk (``_waiting``), so a later
    message never overtakes an earlier one. A step with nothing to wait for, the usual
    case, is answered at once, without a future or a task.
    """

    def __init__(self, bridge: Any, settings: Settings) -> None:
        self.bridge = bridge
        self.settings = settings
        state_dir = Path(bridge.zcli.state_dir)  # the workspace's, not the current folder's
        self.storage = open_storage(settings.db, state_dir)
        self.bots = {bot.name: bot for bot in settings.bots}
        self.writer = StorageWriter(self.storage)
        self.core = self._load()
        self.committed = self.core.reserved  # ids up to this one are recorded as used
        self._reservation: asyncio.Future[None] | None = None  # the newest in flight
        self.available = True
        self._expiry: asyncio.TimerHandle | None = None  # at the core's next deadline
        self._waiting: deque[_Step] = deque()  # steps waiting for the disk, in order
        self._tasks: set[asyncio.Task[None]] = set()

    def _load(self) -> c.ChatCore:
        """A core holding what the storage holds (at start, and after an outage)."""
        bots = frozenset(bot.name for bot in self.settings.bots)
        core = c.ChatCore(self.settings.limits, users=set(self.storage.users()), bots=bots)
        core.restore(self.storage.stored(), self.storage.rooms(), self.storage.room_messages())
        core.next_id = max(core.next_id, self.storage.next_id())
        core.reserved = core.next_id - 1
        return core

    async def apply(self, effects: list[c.Effect]) -> dict[str, Any] | None:
        """Carry out ``effects`` and wait until they are; returns the reply."""
        reply = self.start(effects)
        if isinstance(reply, asyncio.Future):
            return await reply
        return reply

    def start(self, effects: list[c.Effect]) -> dict[str, Any] | None | _Answer:
        """Carry out ``effects``: the reply at once when nothing waits for the disk
        (the sends follow it on the loop's next turn), else a future of the reply that
        fails with ``RequestError`` storage_error if the step's write fails. The step
        takes its place in the order now, whether or not the future is awaited."""
        reply: dict[str, Any] | None = None
        changes: list[c.Change] = []
        reserve: c.ReserveIds | None = None
        later: list[c.Effect] = []
        for effect in effects:
            if isinstance(effect, c.Reply):
                reply = effect.result
            elif isinstance(effect, c.ReserveIds):
                reserve = effect
            elif isinstance(effect, _CHANGES):
                changes.append(effect)
            else:
                later.append(effect)
        loop = asyncio.get_running_loop()
        if reserve is not None:  # the core asks ahead: nothing waits for it but ids past it
            self._reserve(reserve)
        unrecorded = self.core.next_id - 1 > self.committed  # an id handed out too early
        if not changes and not self._waiting and not unrecorded:
            loop.call_soon(self._io, later)  # after zBifrost has sent the reply
            return reply
        if changes:
            write: asyncio.Future[None] | None = self.writer.submit(changes)
        else:  # behind earlier steps, or behind the reservation of its ids
            write = self._reservation if unrecorded else None
        step = _Step(reply, later, write, loop.create_future())
        self._waiting.append(step)
        if write is not None:
            write.add_done_callback(self._drain)
        elif len(self._waiting) == 1:
            loop.call_soon(self._drain)
        return step.answer

    def _reserve(self, reserve: c.ReserveIds) -> None:
        """Record ``reserve`` ahead of the step's own writes (the writer keeps order);
        ``committed`` follows once it is on disk."""
        future = self.writer.submit([reserve])
        self._reservation = future

        def recorded(done: asyncio.Future[None]) -> None:
            error = done.exception()
            if error is None:
                self.committed = max(self.committed, reserve.upto)
            elif isinstance(error, StorageError):
                self.storage_lost()

        future.add_done_callback(recorded)

    def _drain(self, _written: object = None) -> None:
        """Answer the waiting steps from the oldest, up to the first whose write is
        not committed yet; each one's sends follow its reply."""
        loop = asyncio.get_running_loop()
        while self._waiting:
            step = self._waiting[0]
            if step.write is not None and not step.write.done():
                return
            self._waiting.popleft()
            error = step.write.exception() if step.write is not None else None
            if step.answer.done():  # its waiter was cancelled: the others still hear
                pass
            elif error is None:
                step.answer.set_result(step.reply)
            elif isinstance(error, StorageError):
                step.answer.set_exception(RequestError(UNAVAILABLE, "storage_error"))
            else:  # a bug, logged by the writer: zBifrost answers "internal"
                step.answer.set_exception(error)
            if error is None:
                loop.call_soon(self._io, step.later)
            elif isinstance(error, StorageError):
                self.storage_lost()  # the sender is never told "stored"

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _io(self, effects: list[c.Effect]) -> None:
        # A run of sends of one payload (a presence table to everyone) is encoded once.
        for payload_id, run in groupby(effects, key=_payload_id):
            if payload_id is not None:
                sends = [effect for effect in run if isinstance(effect, c.Send)]
                if len(sends) == 1:
                    _client(sends[0].conn).send(sends[0].payload)
                else:
                    self.bridge.broadcast(sends[0].payload, to=[send.conn for send in sends])
                continue
            for effect in run:
                match effect:
                    case c.Close(conn, code, reason):
                        _client(conn).close_soon(code, reason)
                    case c.AskBot(prompt, conn):
                        self._spawn(self._ask(prompt, conn))
        if self._expiry is None and self.core.pending and self.available:
            self._arm_expiry()

    def _arm_expiry(self) -> None:
        """One timer at a time, at the oldest unacknowledged message's deadline."""
        deadline = self.core.next_deadline()
        if deadline is not None:
            delay = max(deadline - time.time(), 0.0)
            self._expiry = asyncio.get_running_loop().call_later(delay, self._expired)

    def _expired(self) -> None:
        self._expiry = None
        if not self.available:  # storage_lost: the core starts over on recovery
            return
        effects = self.core.expire(time.time())
        if effects:
            self._spawn(self._settle(effects))
        self._arm_expiry()

    async def _ask(self, prompt: c.Message, conn: Any) -> None:
        """One prompt to a bot; many run at once, each answer goes to its own sender."""
        try:
            text = await self.bots[prompt.recipient].reply(prompt.sender, prompt.text)
        except RequestError as exc:
            effects = self.core.bot_failed(prompt, conn, exc)
        except Exception:
            log.exception("the bot %s failed", prompt.recipient)
            why = RequestError(f"The bot {prompt.recipient} failed with an internal error.",
                               "internal")  # fmt: skip
            effects = self.core.bot_failed(prompt, conn, why)
        else:
            effects = self.core.bot_answered(prompt, conn, text, time.time())
        await self._settle(effects)

    async def _settle(self, effects: list[c.Effect]) -> None:
        """Apply effects no request waits for (a timer's, a hook's)."""
        try:
            await self.apply(effects)
        except RequestError:
            pass  # storage_lost has closed everyone; the sender was never told "stored"

    def storage_lost(self) -> None:
        """Close every connection 1013; sign-in is refused until ``recover``."""
        if self.available:
            log.warning("the chat storage is unavailable: signing everyone out")
        self.available = False
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        for conn in list(self.core.conns):
            _client(conn).close_soon(1013, UNAVAILABLE)

    async def recover(self) -> None:
        """The storage answers again: start over from what it holds."""
        self.core = await asyncio.to_thread(self._load)
        self.committed, self._reservation = self.core.reserved, None
        self.available = True
        log.warning("the chat storage is back: serving again")

    def close(self) -> None:
        self.writer.close()
        _SERVERS.pop(self.bridge, None)


_CHANGES = (c.Store, c.Delete, c.AddUser, c.StoreRoom, c.StoreRoomMessage, c.ReserveIds)


def _payload_id(effect: c.Effect) -> int | None:
    return id(effect.payload) if isinstance(effect, c.Send) else None


def _client(conn: object) -> Any:
    """The core names connections by their zBifrost ``Client``."""
    return conn


_SERVERS: WeakKeyDictionary[Any, ChatServer] = WeakKeyDictionary()


def chat_of(bridge: Any) -> ChatServer:
    server = _SERVERS.get(bridge)
    if server is None:
        server = _SERVERS[bridge] = ChatServer(bridge, Settings.from_env())
    return server


async def _signed_in(ctx: Ctx) -> None:
    if ctx.client.identity.authenticated:
        chat = chat_of(ctx.bridge)
        if not chat.available:
            raise StorageError(UNAVAILABLE)  # zBifrost turns the connection away, 1013
        effects = chat.core.connected(ctx.client.identity.user, ctx.client, time.time())
        await chat._settle(effects)


async def _gone(ctx: Ctx) -> None:
    chat = chat_of(ctx.bridge)
    await chat._settle(chat.core.disconnected(ctx.client))


def _handler(name: str) -> Any:
    def handle(ctx: Ctx, data: Any) -> Any:  # inline in zBifrost's reader when it can be
        chat = chat_of(ctx.bridge)
        event = m.parse(name, data)
        return chat.start(chat.core.received(ctx.client, event, time.time()))

    return handle


async def _register(ctx: Ctx, data: Any) -> dict[str, Any]:
    event = m.parse("chat.register", data)
    assert isinstance(event, m.Register)
    chat = chat_of(ctx.bridge)
    if not chat.available:
        raise StorageError(UNAVAILABLE)
    auth = ctx.bridge.zcli.auth
    if event.username in chat.core.users or auth.user_exists(event.username):
        raise RequestError(f"There is already a user named {event.username!r}.", "user_exists")
    most = chat.core.limits.max_users
    if len(chat.core.users) >= most:
        raise RequestError(
            f"The chat server has {most} accounts, the most allowed; no more can be created.",
            "too_many_users",
        )
    try:
        await asyncio.to_thread(auth.add_user, event.username, event.password, "user")
    except StorageError as exc:  # its sentence names the store: logged, not sent
        log.error("the account %r could not be saved: %s", event.username, exc.message)
        raise StorageError(UNAVAILABLE) from None
    await chat.apply(chat.core.registered(event.username))
    identity = auth.issue(event.username, "user")
    return {"user": event.username, "token": identity.token}


async def _keepalive_service(bridge: Any) -> None:
    chat = chat_of(bridge)
    period = max(chat.core.limits.keepalive / 4, 0.01)
    while True:
        await asyncio.sleep(period)  # a clock, not a synchronisation
        await chat._settle(chat.core.tick(time.time()))


async def _storage_service(bridge: Any) -> None:
    """Probe the storage every ``ZCHAT_STORAGE_CHECK`` seconds: sign everyone out when
    it fails (even with no traffic), serve again once it answers."""
    chat = chat_of(bridge)
    try:
        while True:
            await asyncio.sleep(chat.settings.storage_check)  # a clock
            try:
                await chat.writer.probe()
            except StorageError:
                chat.storage_lost()
                continue
            if not chat.available:
                await chat.recover()
    finally:
        chat.close()


EVENTS = {name: _handler(name) for name in m.EVENTS if name != "chat.register"}
EVENTS["chat.register"] = _register

PLUGIN = Plugin(
    "chat_server",
    events=EVENTS,
    hooks={"connect": _signed_in, "sign_in": _signed_in, "sign_out": _gone, "disconnect": _gone},
    services=[_keepalive_service, _storage_service],
    public_events={"chat.register"},
)
