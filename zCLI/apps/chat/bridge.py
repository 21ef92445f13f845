"""The ``chat_server`` plugin: a thin adapter from zBifrost to ``ChatCore``.

Hooks turn sign-ins and departures into core calls; each ``chat.*`` event is parsed,
fed to the core, and the effects carried out in order: storage writes first (a message
is on disk before anyone hears "stored"), sends after the reply. Only ``zcli chat -s``
loads this plugin (through the zSpark ``plugins`` list).

With a broker (``zcli chat -s --broker redis://...``) several processes sharing one
database serve as one chat: each core tells the others what changed (``Tell`` effects,
sent with ``zBifrost.to_peers``; ``peers.py``) and hears them (``from_peer``). A word
the broker cannot take stores the messages it carried at once, and losing the broker
signs everyone out of this process until it is back (docs/chat.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import logging
import os
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from zCLI import Plugin, RequestError, StorageError

from . import core as c
from . import messages as m
from . import peers as p
from .bots import Bot, EchoBot, bot_from_environment
from .storage import UNAVAILABLE, Saved
from .writer import DEFAULT_POOL, Writer, open_writer, pool_size

__all__ = ["PLUGIN", "ChatServer", "Settings", "UNLINKED"]

UNLINKED = "The chat server cannot reach its other processes; try again later."
PEER = "chat_server"  # the plugin's name on the broker's plugin channel

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
    db_pool: int = DEFAULT_POOL  # connections to PostgreSQL (SQLite has its one thread)

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
        db_pool = pool_size(env.get("ZCHAT_DB_POOL"))
        return cls(env.get("ZCHAT_DB") or None, limits, storage_check, tuple(bots), db_pool)


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
    """One bridge's chat: the core, its storage (through its writer), timers. ``open``
    makes one (the store opened, the core loaded from it).

    Effects are carried out in the order the core produced them, across requests: the
    storage writes of a step are committed before its reply and sends, and a step waits
    behind every earlier step still waiting for the disk (``_waiting``), so a later
    message never overtakes an earlier one. A step with nothing to wait for, the usual
    case, is answered at once, without a future or a task.
    """

    def __init__(self, bridge: Any, settings: Settings, writer: Writer) -> None:
        self.bridge = bridge
        self.settings = settings
        self.bots = {bot.name: bot for bot in settings.bots}
        self.writer = writer
        # other processes share the database when the bridge has a broker
        self.clustered = bool(bridge.broker.shares)
        self.limits = dataclasses.replace(settings.limits, peer_ttl=bridge.config.presence_ttl)
        self.core: c.ChatCore  # set by open, from the storage
        self.available = True  # the storage answers
        self.linked = not self.clustered or bool(bridge.broker.available)  # the broker too
        self.leaving = False  # this process stops: it has told the others
        self._expiry: asyncio.TimerHandle | None = None  # at the core's next deadline
        self._waiting: deque[_Step] = deque()  # steps waiting for the disk, in order
        self._tasks: set[asyncio.Task[None]] = set()
        self._id_waiters: list[asyncio.Future[None]] = []  # requests waiting for a claim
        self._last_tell: asyncio.Future[bool] | None = None  # the newest word to the peers

    @classmethod
    async def open(cls, bridge: Any, settings: Settings) -> ChatServer:
        """The chat of ``bridge``: its store opened (``StorageError`` if it cannot be),
        its core loaded from it."""
        state_dir = Path(bridge.zcli.state_dir)  # the workspace's, not the current folder's
        writer = await open_writer(settings.db, state_dir, settings.db_pool)
        try:
            chat = cls(bridge, settings, writer)
            chat.core = await chat._load()
        except BaseException:
            await writer.close()
            raise
        if chat.clustered:
            bridge.on_peer_message(PEER, chat._from_peer)
        return chat

    async def _load(self) -> c.ChatCore:
        """A core holding what the storage holds (at start, and after an outage, read
        behind every write queued before), with a first block of ids claimed (no other
        process, and no restart, gets them)."""
        bots = frozenset(bot.name for bot in self.settings.bots)
        block = c.CLUSTER_ID_BLOCK if self.clustered else c.ID_BLOCK
        saved: Saved = await self.writer.call(lambda storage: storage.saved(block))
        ids = c.IdBlocks(block, next_id=saved.last - block + 1, last=saved.last)
        core = c.ChatCore(
            self.limits, users=set(saved.users), bots=bots, peers=self.clustered, ids=ids
        )
        core.restore(saved.stored, saved.rooms, saved.room_messages)
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
        later: list[c.Effect] = []
        for effect in effects:
            if isinstance(effect, c.Reply):
                reply = effect.result
            elif isinstance(effect, c.ClaimIds):
                self._claim(effect)  # the core asks ahead: nothing waits for it
            elif isinstance(effect, _CHANGES):
                changes.append(effect)
            else:
                later.append(effect)
        loop = asyncio.get_running_loop()
        if not changes and not self._waiting:
            loop.call_soon(self._io, later)  # after zBifrost has sent the reply
            return reply
        write = self.writer.submit(changes) if changes else None  # else: behind earlier steps
        step = _Step(reply, later, write, loop.create_future())
        self._waiting.append(step)
        if write is not None:
            write.add_done_callback(self._drain)
        elif len(self._waiting) == 1:
            loop.call_soon(self._drain)
        return step.answer

    def _claim(self, claim: c.ClaimIds) -> None:
        """Claim the next block of ids; the core hands them out once it is recorded."""
        core = self.core
        future = self.writer.call(lambda storage: storage.claim_ids(claim.count))

        def claimed(done: asyncio.Future[int]) -> None:
            error = done.exception()
            if error is None:
                last = done.result()
                again = core.ids_claimed(last - claim.count + 1, last)
                if again and core is self.core:
                    self.start(again)
            else:
                core.ids.unclaimed()
                if isinstance(error, StorageError):
                    self.storage_lost()
            waiters, self._id_waiters = self._id_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

        future.add_done_callback(claimed)

    async def after_rooms_read(self, conn: Any, event: m.Event) -> dict[str, Any] | None:
        """``event`` named a room this process has not heard of: another process may
        have made it a moment ago (the broker took its word, which is not yet read
        here). Read that room from the database (one room: a flood of made-up names
        costs an indexed lookup each), then handle ``event`` once more."""
        core = self.core
        room: str = event.room  # type: ignore[attr-defined]  # only room events refuse so
        try:
            members = await self.writer.call(lambda storage: storage.room(room))
        except StorageError:
            self.storage_lost()
            raise StorageError(UNAVAILABLE) from None
        if core is self.core and members is not None:
            core.rooms_read([(room, members)])
        answer = self.start(self.core.received(conn, event, time.time()))
        if isinstance(event, _ROOM_CHANGES):
            return await self.once_told(answer)
        return await answer if isinstance(answer, asyncio.Future) else answer

    async def after_claim(self, conn: Any, event: m.Event) -> dict[str, Any] | None:
        """``event`` once there are ids to hand out: a process that saw a higher id
        from another gave up its block and waits for the next claim (a moment)."""
        loop = asyncio.get_running_loop()
        while self.core.ids.left() == 0:
            if not self.available:
                raise StorageError(UNAVAILABLE)
            count = self.core.ids.wanted()  # None: a claim is on its way already
            if count is not None:
                self.start([c.ClaimIds(count)])
            waiter: asyncio.Future[None] = loop.create_future()
            self._id_waiters.append(waiter)
            await waiter
        return await self.apply(self.core.received(conn, event, time.time()))

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
        # What follows a word to the other processes waits until the broker took it:
        # whoever hears of it from this process (a user online here, a message stored)
        # and acts through another process finds that process told already.
        for index, effect in enumerate(effects):
            if isinstance(effect, c.Tell):
                self._io_now(effects[:index])
                shared = self._tell(effect.event, effect.fallback)
                rest = effects[index + 1 :]
                if shared is None or shared.done():
                    self._io(rest)
                else:
                    shared.add_done_callback(functools.partial(self._resume, rest))
                return
        self._io_now(effects)

    def _resume(self, effects: list[c.Effect], _taken: object) -> None:
        self._io(effects)

    def _io_now(self, effects: list[c.Effect]) -> None:
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
                    case c.Tell(event, fallback):
                        self._tell(event, fallback)  # its failure is handled there
        if self._expiry is None and self.core.pending and self.available:
            self._arm_expiry()

    # --- the other processes ----------------------------------------------------------

    def _tell(
        self, event: p.PeerEvent, fallback: tuple[c.Message, ...]
    ) -> asyncio.Future[bool] | None:
        """``event`` to the other processes; the broker's answer. If it cannot take
        it, the messages it carried are stored at once (never lost) and this process is
        unlinked."""
        if self.leaving:  # it said it has nobody online: nothing more from it
            return None
        delivery = self.bridge.to_peers(PEER, event.to_json())
        shared = delivery.shared
        if shared is None:
            return None
        self._last_tell = shared
        if delivery.failed:
            self._peers_failed(fallback)
            return shared

        def taken(done: asyncio.Future[bool]) -> None:
            if not done.result():
                self._peers_failed(fallback)

        shared.add_done_callback(taken)
        return shared

    async def once_told(self, answer: dict[str, Any] | None | _Answer) -> dict[str, Any] | None:
        """``answer`` (a step's reply), once its words to the peers were taken."""
        reply = await answer if isinstance(answer, asyncio.Future) else answer
        await self.told()
        return reply

    @staticmethod
    async def _next_turn() -> None:
        """After what the loop had scheduled so far: the sends of the steps answered
        (``_drain`` schedules them right after waking their waiter)."""
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[None] = loop.create_future()
        loop.call_soon(turn.set_result, None)
        await turn

    async def told(self) -> None:
        """Until the broker took every word to the peers of the steps started so far
        (their words go out on the loop's next turn at the latest)."""
        await self._next_turn()
        if self._last_tell is not None:
            await asyncio.shield(self._last_tell)

    def _peers_failed(self, fallback: Iterable[c.Message]) -> None:
        if self.available:
            self._spawn(self._settle(self.core.peers_failed(fallback)))
        self.link_lost()

    def _from_peer(self, origin: str, data: dict[str, Any]) -> None:
        """The plugin channel's listener: what the chat in another process said."""
        if not (self.available and self.linked) or self.leaving:
            return  # the core starts over from the database when both are back
        try:
            event = p.parse(data)
        except ValueError as exc:
            log.warning("dropped a word from chat process %s: %s", origin, exc)
            return
        effects = self.core.from_peer(origin, event, time.time())
        if effects:
            self._spawn(self._settle(effects))

    def link_lost(self) -> None:
        """The broker is away: the other processes cannot be told or heard, so this
        one stops serving (plan 002, 7.2): what waits for an ack is stored, then every
        connection is closed 1013; sign-in is refused until ``relink``."""
        if not self.linked:
            return
        self.linked = False
        log.warning("the chat cannot reach its other processes: signing everyone out")
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        effects = self.core.expire(float("inf")) if self.available else []
        self.core.forget_peers()
        self._spawn(self._store_then_close(effects))

    async def _store_then_close(self, effects: list[c.Effect]) -> None:
        await self._settle(effects)  # stored (committed) ...
        await self._next_turn()  # ... and the senders told, before they go
        for conn in list(self.core.conns):
            _client(conn).close_soon(1013, UNLINKED)

    async def relink(self) -> None:
        """The broker is back: start over from the database, ask who is online."""
        await self.recover()
        self.linked = True
        log.warning("the chat reaches its other processes again: serving again")
        await self._settle(self.core.hello())

    def _arm_expiry(self) -> None:
        """One timer at a time, at the oldest unacknowledged message's deadline."""
        deadline = self.core.next_deadline()
        if deadline is not None:
            delay = max(deadline - time.time(), 0.0)
            self._expiry = asyncio.get_running_loop().call_later(delay, self._expired)

    def _expired(self) -> None:
        self._expiry = None
        if not (self.available and self.linked):  # the core starts over on recovery
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
        self.core = await self._load()
        if not self.available:
            self.available = True
            log.warning("the chat storage is back: serving again")

    async def leave(self) -> None:
        """This process stops: tell the others nobody is online here any more (rather
        than leave its users online until the presence TTL)."""
        if self.clustered and self.linked and not self.leaving:
            self.leaving = True
            delivery = self.bridge.to_peers(PEER, p.Presence(()).to_json())
            try:
                await asyncio.wait_for(delivery.wait_shared(), self.limits.peer_ttl / 3)
            except TimeoutError:
                pass

    async def close(self) -> None:
        _CHATS.pop(self.bridge, None)
        await self.writer.close()


_CHANGES = (c.Store, c.Delete, c.AddUser, c.StoreRoom, c.StoreRoomMessage)
_TAKE_IDS = (m.Send, m.SendAll, m.RoomSend)  # the events that hand out message ids
_ROOM_CHANGES = (m.RoomCreate, m.RoomJoin, m.RoomLeave)


def _payload_id(effect: c.Effect) -> int | None:
    return id(effect.payload) if isinstance(effect, c.Send) else None


def _client(conn: object) -> Any:
    """The core names connections by their zBifrost ``Client``."""
    return conn


# Each bridge's chat, opened on first use (a task, so that the first uses at once share
# one opening); a failed opening is tried again by the next use.
_CHATS: WeakKeyDictionary[Any, asyncio.Task[ChatServer]] = WeakKeyDictionary()


def chat_of(bridge: Any) -> ChatServer | None:
    """The bridge's chat if it is open, else None."""
    opening = _CHATS.get(bridge)
    if opening is None or not opening.done() or opening.cancelled() or opening.exception():
        return None
    return opening.result()


async def wait_opened(bridge: Any) -> ChatServer:
    """The bridge's chat, opened now if it is not yet (``StorageError`` if its store
    cannot be opened)."""
    opening = _CHATS.get(bridge)
    if opening is None or (opening.done() and chat_of(bridge) is None):
        opening = asyncio.get_running_loop().create_task(
            ChatServer.open(bridge, Settings.from_env()), name="zChat opening"
        )
        _CHATS[bridge] = opening
    return await asyncio.shield(opening)


async def _closed(bridge: Any) -> None:
    """The bridge stops: its chat, open or still opening, leaves and closes."""
    opening = _CHATS.get(bridge)
    if opening is None:
        return
    if not opening.done():
        opening.cancel()
    try:
        chat = await opening
    except (asyncio.CancelledError, Exception):  # never opened: nothing to close
        _CHATS.pop(bridge, None)
        return
    await chat.leave()
    await chat.close()


async def _signed_in(ctx: Ctx) -> None:
    if ctx.client.identity.authenticated:
        chat = await wait_opened(ctx.bridge)
        if not chat.available:
            raise StorageError(UNAVAILABLE)  # zBifrost turns the connection away, 1013
        if not chat.linked:
            raise StorageError(UNLINKED)
        user = ctx.client.identity.user
        if chat.clustered:  # any process may have stored something for them
            core = chat.core
            try:
                stored = await chat.writer.call(lambda storage: storage.stored_for(user))
            except StorageError:
                chat.storage_lost()
                raise StorageError(UNAVAILABLE) from None
            if core is not chat.core or not (chat.available and chat.linked):
                raise StorageError(UNAVAILABLE if not chat.available else UNLINKED)
            core.mailbox(user, [*stored, *core.stored.get(user, {}).values()])
        effects = chat.core.connected(user, ctx.client, time.time())
        await chat._settle(effects)
        # Its sends (what is stored for the user) are queued before zBifrost reads the
        # connection's first request, so they come before that request's reply.
        await chat._next_turn()


async def _gone(ctx: Ctx) -> None:
    chat = chat_of(ctx.bridge)
    if chat is not None:  # None: the bridge is stopping and the chat has closed
        await chat._settle(chat.core.disconnected(ctx.client))


def _handler(name: str) -> Any:
    def handle(ctx: Ctx, data: Any) -> Any:  # inline in zBifrost's reader when it can be
        chat = chat_of(ctx.bridge)
        if chat is None:  # the chat is still opening (the bridge's first moments)
            return _when_opened(handle, ctx, data)
        event = m.parse(name, data)
        if isinstance(event, _TAKE_IDS) and chat.core.ids.left() == 0:
            return chat.after_claim(ctx.client, event)
        try:
            answer = chat.start(chat.core.received(ctx.client, event, time.time()))
        except RequestError as exc:
            if exc.code != "unknown_room" or not chat.clustered:
                raise
            return chat.after_rooms_read(ctx.client, event)
        if chat.clustered and isinstance(event, _ROOM_CHANGES):
            return chat.once_told(answer)  # the room is the same everywhere when answered
        return answer

    return handle


async def _when_opened(handle: Any, ctx: Ctx, data: Any) -> Any:
    await wait_opened(ctx.bridge)
    answer = handle(ctx, data)
    return await answer if inspect.isawaitable(answer) else answer


async def _register(ctx: Ctx, data: Any) -> dict[str, Any]:
    event = m.parse("chat.register", data)
    assert isinstance(event, m.Register)
    chat = await wait_opened(ctx.bridge)
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
    if chat.clustered:  # every process knows the name before anyone can use it
        await chat.told()
    identity = auth.issue(event.username, "user")
    return {"user": event.username, "token": identity.token}


async def _keepalive_service(bridge: Any) -> None:
    chat = await wait_opened(bridge)
    period = max(chat.core.limits.keepalive / 4, 0.01)
    while True:
        await asyncio.sleep(period)  # a clock, not a synchronisation
        await chat._settle(chat.core.tick(time.time()))


async def _storage_service(bridge: Any) -> None:
    """Probe the storage every ``ZCHAT_STORAGE_CHECK`` seconds: sign everyone out when
    it fails (even with no traffic), serve again once it answers. With other
    processes, look at the broker's link as often: lost, sign everyone out; back,
    start over from the database."""
    try:
        chat = await wait_opened(bridge)
        await chat._settle(chat.core.hello() if chat.linked else [])
        while True:
            await asyncio.sleep(chat.settings.storage_check)  # a clock
            try:
                await chat.writer.probe()
            except StorageError:
                chat.storage_lost()
                continue
            if not chat.available:
                await chat.recover()
                if chat.linked:
                    await chat._settle(chat.core.hello())
            if chat.clustered and chat.linked and not bridge.broker.available:
                chat.link_lost()
            elif not chat.linked and bridge.broker.available:
                await chat.relink()
    finally:
        await _closed(bridge)


async def _peers_service(bridge: Any) -> None:
    """With other processes: tell them who is online here every third of the presence
    TTL, and forget those not heard for a whole TTL (they died)."""
    chat = await wait_opened(bridge)
    if not chat.clustered:
        return
    while True:
        await asyncio.sleep(chat.limits.peer_ttl / 3)  # a clock
        if chat.available and chat.linked:
            await chat._settle(chat.core.heartbeat(time.time()))


EVENTS = {name: _handler(name) for name in m.EVENTS if name != "chat.register"}
EVENTS["chat.register"] = _register

PLUGIN = Plugin(
    "chat_server",
    events=EVENTS,
    hooks={"connect": _signed_in, "sign_in": _signed_in, "sign_out": _gone, "disconnect": _gone},
    services=[_keepalive_service, _storage_service, _peers_service],
    public_events={"chat.register"},
)
