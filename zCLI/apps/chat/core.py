"""The chat rules with no I/O: events in, effects out.

``ChatCore`` knows who is online, which messages wait for an acknowledgement, what is
stored for whom, and the rooms. The adapter (``bridge.py``) feeds it connections,
parsed events and timer expiries, and carries out the effects it returns in order:
sends, storage writes, timers and closes. A ``conn`` is any hashable the adapter uses
to name one connection. The core keeps a copy of every stored message, so it can count
a mailbox and replay it without asking the storage; the storage is the durable copy.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from zCLI import RequestError

from . import messages as m
from . import peers as p
from .ids import CLUSTER_ID_BLOCK, ID_BLOCK, IdBlocks
from .records import Message, RoomMessage, accepted_order

__all__ = [
    "AddUser",
    "AskBot",
    "ChatCore",
    "ClaimIds",
    "Close",
    "Delete",
    "Effect",
    "Limits",
    "Message",
    "Change",
    "CLUSTER_ID_BLOCK",
    "ID_BLOCK",
    "IdBlocks",
    "OUT_OF_IDS",
    "Reply",
    "RoomMessage",
    "Send",
    "Store",
    "StoreRoom",
    "StoreRoomMessage",
    "Tell",
]

Conn = Hashable


@dataclass(frozen=True)
class Limits:
    """Every tunable of the chat rules (see docs/chat.md for the settings)."""

    ack_timeout: float = 0.5
    keepalive: float = 30.0
    max_text: int = 4096
    max_stored: int = 1000
    max_online: int = 1000
    max_rate: int = 20
    room_history: int = 100
    max_users: int = 10_000
    peer_ttl: float = 15.0  # a peer process not heard for this long has died


# --- effects ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """The result of the request being handled (sent before the other sends)."""

    result: dict[str, Any]


@dataclass(frozen=True)
class Send:
    conn: Conn
    payload: dict[str, Any]


@dataclass(frozen=True)
class Store:
    message: Message


@dataclass(frozen=True)
class Delete:
    ids: tuple[int, ...]


@dataclass(frozen=True)
class AddUser:
    user: str


@dataclass(frozen=True)
class StoreRoom:
    room: str
    members: tuple[str, ...]


@dataclass(frozen=True)
class StoreRoomMessage:
    message: RoomMessage
    keep: int  # the room keeps its last ``keep`` messages


@dataclass(frozen=True)
class AskBot:
    """Ask the bot ``prompt.recipient`` for an answer; the adapter reports it back with
    ``bot_answered`` or ``bot_failed``."""

    prompt: Message
    sender_conn: Conn


@dataclass(frozen=True)
class ClaimIds:
    """Claim ``count`` more ids from the storage, recorded as used before any of them
    is handed out (so neither a restart, even after ``kill -9``, nor another process
    sharing the database ever hands one out twice); the adapter reports the block with
    ``ids_claimed``."""

    count: int


@dataclass(frozen=True)
class Tell:
    """Tell the chat in the other processes (``peers``) ``event``, after the step's
    writes are committed. If the broker cannot take it, the adapter calls
    ``peers_failed(fallback)``: those messages are stored rather than lost."""

    event: p.PeerEvent
    fallback: tuple[Message, ...] = ()


@dataclass(frozen=True)
class Close:
    conn: Conn
    code: int
    reason: str


# The effects that are storage writes; the adapter finishes them before any send.
Change = Store | Delete | AddUser | StoreRoom | StoreRoomMessage
Effect = Reply | Send | Change | Close | AskBot | ClaimIds | Tell


@dataclass
class _Connection:
    user: str
    last_seen: float


@dataclass
class _Pending:
    message: Message
    sender_conn: Conn | None  # None: a bot's answer, nobody to tell
    deadline: float  # no chat.ack by then: stored


@dataclass
class _Rate:
    second: float = -1.0
    count: int = 0


FULL = "The chat server is full; try again later."
OUT_OF_IDS = "The chat server is waiting for its next block of message ids; try again later."
FORWARDED_KEPT = 10_000  # messages delivered here for another process, awaiting an ack
# send_all's messages per word to the other processes: at most 64 texts of at most
# ZCHAT_MAX_TEXT characters, well under the broker's largest message (queue_bytes)
DELIVER_BATCH = 64


def _status(message_id: int, status: str) -> dict[str, Any]:
    return {"event": "chat.status", "data": {"id": message_id, "status": status}}


@dataclass
class ChatCore:
    """Presence, acknowledgements, the offline store and rooms of one chat server."""

    limits: Limits = field(default_factory=Limits)
    users: set[str] = field(default_factory=set)
    bots: frozenset[str] = frozenset()  # users answered by code: always online
    peers: bool = False  # other processes share the database: tell them what changes
    ids: IdBlocks = field(default_factory=IdBlocks)  # blocks claimed from the storage

    def __post_init__(self) -> None:
        self.users |= self.bots
        self.conns: dict[Conn, _Connection] = {}
        self._conns_by_user: dict[str, dict[Conn, None]] = {}  # an ordered set per user
        self.deregistered: set[str] = set()
        self.pending: dict[int, _Pending] = {}
        self.stored: dict[str, dict[int, Message]] = {}  # per user, by id, in stored order
        self.rooms: dict[str, set[str]] = {}
        self.history: dict[str, deque[RoomMessage]] = {}
        self._rates: dict[str, _Rate] = {}
        # the other processes: who is online in each, when each was last heard
        self.remote: dict[str, set[str]] = {}
        self.remote_seen: dict[str, float] = {}
        self._last_beat = float("-inf")  # when this process last said who is online
        self.forwarded: dict[int, Message] = {}  # delivered here for another process
        self._peer_handlers: dict[type[p.PeerEvent], Callable[[str, Any, float], list[Effect]]] = {
            p.Online: self._peer_online,
            p.Offline: self._peer_offline,
            p.Presence: self._peer_presence,
            p.Hello: self._peer_hello,
            p.Registered: self._peer_registered,
            p.Deliver: self._peer_deliver,
            p.Acked: self._peer_acked,
            p.Stored: self._peer_stored,
            p.Deleted: self._peer_deleted,
            p.RoomChanged: self._peer_room,
            p.Said: self._peer_said,
        }
        self._handlers: dict[type[m.Event], Callable[[Conn, Any, float], list[Effect]]] = {
            m.Users: self._users,
            m.Online: self._online,
            m.Rooms: self._rooms,
            m.Send: self._send,
            m.Ack: self._ack,
            m.SendAll: self._send_all,
            m.Dereg: self._dereg,
            m.Reg: self._reg,
            m.Keepalive: lambda conn, event, now: [Reply({})],
            m.RoomCreate: self._room_create,
            m.RoomJoin: self._room_join,
            m.RoomLeave: self._room_leave,
            m.RoomSend: self._room_send,
            m.RoomHistory: self._room_history,
        }

    # --- restoring what the storage holds ------------------------------------------

    def restore(
        self,
        stored: Iterable[Message],
        rooms: Iterable[tuple[str, Iterable[str]]] = (),
        room_messages: Iterable[RoomMessage] = (),
    ) -> None:
        """Load the durable state after a (re)start (the ids come from a block the
        adapter claims: ``ids``)."""
        for message in sorted(stored, key=accepted_order):
            self.stored.setdefault(message.recipient, {})[message.id] = message
        for room, members in rooms:
            self.rooms[room] = set(members)
        for rmsg in sorted(room_messages, key=lambda msg: msg.id):
            self._history(rmsg.room).append(rmsg)

    # --- presence --------------------------------------------------------------------

    def local_online(self) -> set[str]:
        """The users online through this process's connections."""
        return set(self._conns_by_user.keys() - self.deregistered)

    def online(self) -> list[str]:
        remote: set[str] = set().union(*self.remote.values())
        return sorted(self.local_online() | remote | self.bots)

    def _online_here(self, user: str) -> bool:
        return user not in self.deregistered and user in self._conns_by_user

    def _online_elsewhere(self, user: str) -> bool:
        return any(user in users for users in self.remote.values())

    def is_online(self, user: str) -> bool:
        if user in self.bots:
            return True
        return self._online_here(user) or self._online_elsewhere(user)

    def _changed(self, user: str, was_online: bool, was_here: bool) -> list[Effect]:
        """The table for everyone if ``user``'s online status changed, and the word to
        the other processes if it changed here."""
        effects: list[Effect] = []
        here = self._online_here(user)
        if self.peers and here != was_here:
            effects.append(Tell(p.Online(user) if here else p.Offline(user)))
        if self.is_online(user) != was_online:
            effects += self._table_update()
        return effects

    def conns_of(self, user: str) -> list[Conn]:
        return list(self._conns_by_user.get(user, ()))

    def _attach(self, conn: Conn, user: str, now: float) -> None:
        self._detach(conn)  # a connection that signs in again may change its user
        self.conns[conn] = _Connection(user, now)
        self._conns_by_user.setdefault(user, {})[conn] = None

    def _detach(self, conn: Conn) -> _Connection | None:
        state = self.conns.pop(conn, None)
        if state is not None:
            mine = self._conns_by_user[state.user]
            del mine[conn]
            if not mine:
                del self._conns_by_user[state.user]
        return state

    def table(self) -> list[dict[str, Any]]:
        online = set(self.online())
        return [{"user": user, "online": user in online} for user in sorted(self.users)]

    def _table_update(self) -> list[Effect]:
        payload = {"event": "chat.clients", "data": {"table": self.table()}}
        online = set(self.online())
        return [Send(conn, payload) for conn, c in self.conns.items() if c.user in online]

    def registered(self, user: str) -> list[Effect]:
        """A new account. It joins the table as offline without a ``chat.clients``
        push: the push comes when it signs in, as plan 001 prints one per arrival."""
        if user in self.users:
            return []
        self.users.add(user)
        return [AddUser(user), *self._tell(p.Registered(user))]

    def connected(self, user: str, conn: Conn, now: float) -> list[Effect]:
        """``conn`` signed in as ``user``: deliver what is stored, tell everyone (the
        table goes to everyone online when the user comes online, else to ``conn``)."""
        was_online, was_here = self.is_online(user), self._online_here(user)
        if not was_online and len(self.online()) >= self.limits.max_online:
            return [Close(conn, 1013, FULL)]
        effects: list[Effect] = []
        if user not in self.users:
            effects += self.registered(user)
        self._attach(conn, user, now)
        self.deregistered.discard(user)
        effects += self._deliver_stored(user, [conn])
        effects += self._changed(user, was_online, was_here)
        if self.is_online(user) == was_online:  # online already: the table, for it alone
            effects.append(Send(conn, {"event": "chat.clients", "data": {"table": self.table()}}))
        return self._reserving(effects)

    def disconnected(self, conn: Conn) -> list[Effect]:
        """``conn`` is gone (closed, signed out); the user may go offline."""
        user = self.conns[conn].user if conn in self.conns else None
        if user is None:
            return []
        was_online, was_here = self.is_online(user), self._online_here(user)
        self._detach(conn)
        return self._changed(user, was_online, was_here)

    def tick(self, now: float) -> list[Effect]:
        """Close the connections silent for longer than the keep-alive timeout."""
        limit = self.limits.keepalive
        effects: list[Effect] = []
        for conn, state in list(self.conns.items()):
            if now - state.last_seen > limit:
                effects.append(Close(conn, 1008, f"No keep-alive within {limit:g} seconds."))
                effects += self.disconnected(conn)
        return effects

    # --- the other processes -------------------------------------------------------------

    def heartbeat(self, now: float) -> list[Effect]:
        """Tell the others who is online here (they forget a process that stops saying
        so), and forget the processes not heard for ``peer_ttl``: they died."""
        if not self.peers:
            return []
        before = set(self.online())
        # After a pause of this process (a stalled loop) the others' words wait unread
        # in the broker's socket: judge them on the next beat, once those are read.
        paused = now - self._last_beat > self.limits.peer_ttl / 2
        self._last_beat = now
        for node, seen in list(self.remote_seen.items()):
            if now - seen > self.limits.peer_ttl and not paused:
                del self.remote_seen[node]
                self.remote.pop(node, None)
        effects: list[Effect] = [Tell(p.Presence(tuple(sorted(self.local_online()))))]
        return effects + (self._table_update() if set(self.online()) != before else [])

    def hello(self) -> list[Effect]:
        """This process (re)joins: tell the others who is online here, then ask who is
        online in them. The table goes first: what follows a word waits until the broker
        took it, and a user who signs in meanwhile must not have their ``Online`` arrive
        before the older table that leaves them out."""
        return [*self.heartbeat(float("-inf")), Tell(p.Hello())] if self.peers else []

    def from_peer(self, node: str, event: p.PeerEvent, now: float) -> list[Effect]:
        """What another process (``node``) told this one."""
        self.remote_seen[node] = now
        return self._reserving(self._peer_handlers[type(event)](node, event, now))

    def forget_peers(self) -> list[Effect]:
        """The link to the other processes is gone: what they said no longer holds."""
        before = set(self.online())
        self.remote.clear()
        self.remote_seen.clear()
        self.forwarded.clear()
        return self._table_update() if set(self.online()) != before else []

    def _remote_change(self, node: str, users: set[str]) -> list[Effect]:
        before = set(self.online())
        self.remote[node] = users
        self.users |= users
        return self._table_update() if set(self.online()) != before else []

    def _peer_online(self, node: str, event: p.Online, now: float) -> list[Effect]:
        return self._remote_change(node, self.remote.get(node, set()) | {event.user})

    def _peer_offline(self, node: str, event: p.Offline, now: float) -> list[Effect]:
        return self._remote_change(node, self.remote.get(node, set()) - {event.user})

    def _peer_presence(self, node: str, event: p.Presence, now: float) -> list[Effect]:
        return self._remote_change(node, set(event.users))

    def _peer_hello(self, node: str, event: p.Hello, now: float) -> list[Effect]:
        return [Tell(p.Presence(tuple(sorted(self.local_online()))))]

    def _peer_registered(self, node: str, event: p.Registered, now: float) -> list[Effect]:
        self.users.add(event.user)
        return []

    def _peer_deliver(self, node: str, event: p.Deliver, now: float) -> list[Effect]:
        effects: list[Effect] = []
        for message in event.messages:
            self.observe(message.id)
            if not self._online_here(message.recipient):
                continue  # it went; no ack comes, and the sender's process stores it
            effects += [Send(c, message.event()) for c in self.conns_of(message.recipient)]
            if not message.all:
                self.forwarded[message.id] = message
                if len(self.forwarded) > FORWARDED_KEPT:  # its sender stored it long ago
                    del self.forwarded[next(iter(self.forwarded))]
        return effects

    def _peer_acked(self, node: str, event: p.Acked, now: float) -> list[Effect]:
        pending = self.pending.get(event.id)
        if pending is not None and pending.message.recipient == event.user:
            del self.pending[event.id]
            if pending.sender_conn is None:
                return []
            return [Send(pending.sender_conn, _status(event.id, "delivered"))]
        return self._unstore(event.user, event.id)

    def _peer_stored(self, node: str, event: p.Stored, now: float) -> list[Effect]:
        """A message stored by another process. If its recipient is online here and
        has not had it from here, that process did not know yet (the word that they
        came online crossed the message, or it forgot this process for a moment): it
        goes to them now, as a stored message, rather than at their next sign-in."""
        message = event.message
        self.observe(message.id)
        self.stored.setdefault(message.recipient, {})[message.id] = message
        if message.id in self.forwarded or not self._online_here(message.recipient):
            return []
        return [Send(c, message.event(offline=True)) for c in self.conns_of(message.recipient)]

    def _peer_deleted(self, node: str, event: p.Deleted, now: float) -> list[Effect]:
        stored = self.stored.get(event.user, {})
        for message_id in event.ids:
            stored.pop(message_id, None)
        return []

    def _peer_room(self, node: str, event: p.RoomChanged, now: float) -> list[Effect]:
        self.rooms[event.room] = set(event.members)
        return []

    def _peer_said(self, node: str, event: p.Said, now: float) -> list[Effect]:
        message = event.message
        self.observe(message.id)
        self._history(message.room).append(message)
        payload = {"event": "chat.room.message", "data": message.to_json()}
        effects: list[Effect] = []
        for member in sorted(self.rooms.get(message.room, set()) - {message.sender}):
            if self._online_here(member):
                effects += [Send(c, payload) for c in self.conns_of(member)]
        return effects

    def peers_failed(self, messages: Iterable[Message]) -> list[Effect]:
        """The broker could not take ``messages`` to the other processes: store each
        (its sender hears "stored" for a direct one) rather than lose it."""
        effects: list[Effect] = []
        for message in messages:
            pending = self.pending.pop(message.id, None)
            if pending is not None:
                effects += self._store(message)
                if pending.sender_conn is not None:
                    effects.append(Send(pending.sender_conn, _status(message.id, "stored")))
            elif message.all and not self._mailbox_full(message.recipient):
                effects += self._store(message)
        return self._reserving(effects)

    def mailbox(self, user: str, stored: Iterable[Message]) -> None:
        """What the database holds for ``user``, read as they sign in (any process may
        have stored it)."""
        self.stored[user] = {msg.id: msg for msg in sorted(stored, key=accepted_order)}
        for message_id in self.stored[user]:
            self.observe(message_id)
        if not self.stored[user]:
            del self.stored[user]

    def _deliver_stored(self, user: str, conns: list[Conn]) -> list[Effect]:
        stored = self.stored.get(user, {})
        if not stored:
            return []
        effects: list[Effect] = []
        for conn in conns:
            effects.append(Send(conn, {"event": "chat.offline", "data": {"count": len(stored)}}))
            ordered = sorted(stored.values(), key=accepted_order)  # peers add any id
            effects += [Send(conn, message.event(offline=True)) for message in ordered]
        return effects

    # --- requests --------------------------------------------------------------------

    def received(self, conn: Conn, event: m.Event, now: float) -> list[Effect]:
        """A parsed event from ``conn``; raises ``RequestError`` for a refused one."""
        state = self.conns.get(conn)
        if state is None:
            raise RequestError("Sign in first: send auth or login.", "unauthorized")
        state.last_seen = now
        return self._reserving(self._handlers[type(event)](conn, event, now))

    def _reserving(self, effects: list[Effect]) -> list[Effect]:
        """``effects`` led by a claim of the next block once less than half a block is
        left (or the block was given up), so it is ready before the current one runs out."""
        count = self.ids.wanted()
        if count is not None:
            effects.insert(0, ClaimIds(count))
        return effects

    def ids_claimed(self, first: int, last: int) -> list[Effect]:
        """The storage recorded ``first..last`` as this process's ids; a claim again
        if another process has handed out a higher id meanwhile (``observe``)."""
        self.ids.claimed(first, last)
        return self._reserving([])

    def observe(self, message_id: int) -> None:
        """Another process handed out ``message_id``: ids here must now be greater
        (they increase in the order messages are accepted, in the whole cluster)."""
        self.ids.observe(message_id)

    def _need_ids(self, count: int) -> None:
        if self.ids.left() < count:
            raise RequestError(OUT_OF_IDS, "storage_error")

    def _user(self, conn: Conn) -> str:
        return self.conns[conn].user

    def _new_id(self) -> int:
        """The next id of the claimed blocks (``_need_ids`` checked there is one)."""
        return self.ids.take()

    def _check_sending(self, user: str, text: str, now: float) -> None:
        if user in self.deregistered:
            raise RequestError("You are offline; send chat.reg before sending messages.", "offline")
        if len(text) > self.limits.max_text:
            raise RequestError(
                f"The text has {len(text)} characters; at most {self.limits.max_text} are allowed.",
                "too_large",
            )
        rate = self._rates.setdefault(user, _Rate())
        second = float(int(now))
        if rate.second != second:
            rate.second, rate.count = second, 0
        if rate.count >= self.limits.max_rate:
            raise RequestError(
                f"You sent more than {self.limits.max_rate} messages a second; the message "
                "was not sent.",
                "rate_limited",
            )
        rate.count += 1

    def _mailbox_full(self, user: str) -> bool:
        return len(self.stored.get(user, ())) >= self.limits.max_stored

    def _store(self, message: Message) -> list[Effect]:
        self.stored.setdefault(message.recipient, {})[message.id] = message
        return [Store(message), *self._tell(p.Stored(message))]

    def _unstore(self, user: str, message_id: int) -> list[Effect]:
        """Delete a stored message of ``user`` (acknowledged), here and in the others."""
        stored = self.stored.get(user)
        if stored is None or stored.pop(message_id, None) is None:
            return []
        return [Delete((message_id,)), *self._tell(p.Deleted(user, (message_id,)))]

    def _tell(self, event: p.PeerEvent) -> list[Effect]:
        """``event`` for the other processes, when there are any."""
        return [Tell(event)] if self.peers else []

    def _users(self, conn: Conn, event: m.Users, now: float) -> list[Effect]:
        return [Reply({"users": self.table()})]

    def _online(self, conn: Conn, event: m.Online, now: float) -> list[Effect]:
        return [Reply({"users": self.online()})]

    def _rooms(self, conn: Conn, event: m.Rooms, now: float) -> list[Effect]:
        user = self._user(conn)
        return [Reply({"rooms": sorted(r for r, members in self.rooms.items() if user in members)})]

    def _send(self, conn: Conn, event: m.Send, now: float) -> list[Effect]:
        user = self._user(conn)
        if event.to not in self.users:
            raise RequestError(f"There is no user named {event.to!r}.", "unknown_user")
        online = self.is_online(event.to)
        if not online and self._mailbox_full(event.to):
            raise RequestError(
                f"{event.to} has {self.limits.max_stored} stored messages, the most allowed; "
                "the message was not stored.",
                "mailbox_full",
            )
        self._check_sending(user, event.text, now)
        self._need_ids(1)
        message = Message(self._new_id(), user, event.to, event.text, now)
        if event.to in self.bots:
            return [Reply({"id": message.id, "ts": now}), AskBot(message, conn)]
        return [Reply({"id": message.id, "ts": now}), *self._direct(message, conn)]

    def _direct(self, message: Message, sender_conn: Conn | None) -> list[Effect]:
        """Deliver (and wait for the ack) or store ``message``; tell the sender."""
        effects: list[Effect] = []
        if self.is_online(message.recipient):
            deadline = message.ts + self.limits.ack_timeout
            self.pending[message.id] = _Pending(message, sender_conn, deadline)
            if self._online_here(message.recipient):
                effects += [Send(c, message.event()) for c in self.conns_of(message.recipient)]
            if self._online_elsewhere(message.recipient):
                effects.append(Tell(p.Deliver((message,)), (message,)))
        else:
            effects += self._store(message)
            if sender_conn is not None:
                effects.append(Send(sender_conn, _status(message.id, "stored")))
        return effects

    def bot_answered(
        self, prompt: Message, sender_conn: Conn, text: str, now: float
    ) -> list[Effect]:
        """The bot answered ``prompt``: its sender hears "delivered", then the answer
        (stored if they have gone; a full mailbox drops it, as for any sender)."""
        effects: list[Effect] = []
        if sender_conn in self.conns:
            effects.append(Send(sender_conn, _status(prompt.id, "delivered")))
        if self.ids.left() < 1:
            return self._reserving(effects)  # no id for the answer yet: it is dropped
        answer = Message(self._new_id(), prompt.recipient, prompt.sender, text, now)
        if not self.is_online(answer.recipient) and self._mailbox_full(answer.recipient):
            return self._reserving(effects)
        return self._reserving(effects + self._direct(answer, None))

    def bot_failed(self, prompt: Message, sender_conn: Conn, error: RequestError) -> list[Effect]:
        """The bot could not answer: its sender hears "failed" with the reason."""
        if sender_conn not in self.conns:
            return []
        data = {"id": prompt.id, "status": "failed", "error": error.message, "code": error.code}
        return [Send(sender_conn, {"event": "chat.status", "data": data})]

    def next_deadline(self) -> float | None:
        """When the oldest message still waiting for its ``chat.ack`` times out (the
        adapter calls ``expire`` then); None when none waits."""
        for pending in self.pending.values():  # in the order they were sent
            return pending.deadline
        return None

    def expire(self, now: float) -> list[Effect]:
        """Store each message whose ``chat.ack`` did not come by its deadline, and
        tell its sender ``stored``."""
        effects: list[Effect] = []
        while self.pending:
            message_id, pending = next(iter(self.pending.items()))
            if pending.deadline > now:
                break
            del self.pending[message_id]
            effects += self._store(pending.message)
            if pending.sender_conn is not None:
                effects.append(Send(pending.sender_conn, _status(message_id, "stored")))
        return effects

    def _ack(self, conn: Conn, event: m.Ack, now: float) -> list[Effect]:
        user = self._user(conn)
        pending = self.pending.get(event.id)
        if pending is not None and pending.message.recipient == user:
            del self.pending[event.id]
            effects: list[Effect] = [Reply({"acked": True})]
            if pending.sender_conn is not None:
                effects.append(Send(pending.sender_conn, _status(event.id, "delivered")))
            return effects
        forwarded = self.forwarded.get(event.id)
        if forwarded is not None and forwarded.recipient == user:
            del self.forwarded[event.id]
            # stored meanwhile by its sender's process: deleted here and there; else
            # that process settles it (the sender hears "delivered")
            unstored = self._unstore(user, event.id)
            return [Reply({"acked": True}), *(unstored or [Tell(p.Acked(user, event.id))])]
        unstored = self._unstore(user, event.id)
        return [Reply({"acked": bool(unstored)}), *unstored]

    def _send_all(self, conn: Conn, event: m.SendAll, now: float) -> list[Effect]:
        user = self._user(conn)
        self._check_sending(user, event.text, now)
        others = sorted(self.users - {user} - self.bots)
        self._need_ids(len(others))
        effects: list[Effect] = []
        elsewhere: list[Message] = []
        delivered = stored = 0
        for other in others:
            message = Message(self._new_id(), user, other, event.text, now, all=True)
            if self.is_online(other):
                if self._online_here(other):
                    effects += [Send(c, message.event()) for c in self.conns_of(other)]
                if self._online_elsewhere(other):
                    elsewhere.append(message)
                delivered += 1
            elif not self._mailbox_full(other):
                effects += self._store(message)
                stored += 1
        for start in range(0, len(elsewhere), DELIVER_BATCH):  # each word stays small
            batch = tuple(elsewhere[start : start + DELIVER_BATCH])
            effects.append(Tell(p.Deliver(batch), batch))
        reply = Reply({"ts": now, "delivered": delivered, "stored": stored})
        return [reply, *effects]

    def _dereg(self, conn: Conn, event: m.Dereg, now: float) -> list[Effect]:
        user = self._user(conn)
        was_online, was_here = self.is_online(user), self._online_here(user)
        self.deregistered.add(user)
        effects: list[Effect] = [Reply({"status": "offline"})]
        return effects + self._changed(user, was_online, was_here)

    def _reg(self, conn: Conn, event: m.Reg, now: float) -> list[Effect]:
        user = self._user(conn)
        was_online, was_here = self.is_online(user), self._online_here(user)
        self.deregistered.discard(user)
        count = len(self.stored.get(user, ()))
        effects: list[Effect] = [Reply({"status": "online", "pending": count})]
        effects += self._deliver_stored(user, [conn])
        return effects + self._changed(user, was_online, was_here)

    # --- rooms -------------------------------------------------------------------------

    def rooms_read(self, rooms: Iterable[tuple[str, Iterable[str]]]) -> None:
        """The rooms the storage holds: those this process has not heard of yet (another
        process made one a moment ago, and its word is on the way) join its view."""
        for room, members in rooms:
            self.rooms.setdefault(room, set(members))

    def _history(self, room: str) -> deque[RoomMessage]:
        return self.history.setdefault(room, deque(maxlen=self.limits.room_history))

    def _member_of(self, user: str, room: str) -> set[str]:
        members = self.rooms.get(room)
        if members is None:
            raise RequestError(f"There is no room named {room!r}.", "unknown_room")
        if user not in members:
            raise RequestError(f"You are not a member of room {room!r}.", "not_member")
        return members

    def _room_create(self, conn: Conn, event: m.RoomCreate, now: float) -> list[Effect]:
        if event.room in self.rooms:
            raise RequestError(f"There is already a room named {event.room!r}.", "room_exists")
        self.rooms[event.room] = {self._user(conn)}
        return [Reply({"room": event.room}), *self._save_room(event.room)]

    def _save_room(self, room: str) -> list[Effect]:
        members = tuple(sorted(self.rooms[room]))
        return [StoreRoom(room, members), *self._tell(p.RoomChanged(room, members))]

    def _room_join(self, conn: Conn, event: m.RoomJoin, now: float) -> list[Effect]:
        members = self.rooms.get(event.room)
        if members is None:
            raise RequestError(f"There is no room named {event.room!r}.", "unknown_room")
        members.add(self._user(conn))
        listed = sorted(members)
        return [Reply({"room": event.room, "members": listed}), *self._save_room(event.room)]

    def _room_leave(self, conn: Conn, event: m.RoomLeave, now: float) -> list[Effect]:
        members = self._member_of(self._user(conn), event.room)
        members.discard(self._user(conn))
        return [Reply({"room": event.room}), *self._save_room(event.room)]

    def _room_send(self, conn: Conn, event: m.RoomSend, now: float) -> list[Effect]:
        user = self._user(conn)
        members = self._member_of(user, event.room)
        self._check_sending(user, event.text, now)
        self._need_ids(1)
        message = RoomMessage(self._new_id(), event.room, user, event.text, now)
        self._history(event.room).append(message)
        payload = {"event": "chat.room.message", "data": message.to_json()}
        effects: list[Effect] = [
            Reply({"id": message.id, "ts": now}),
            StoreRoomMessage(message, self.limits.room_history),
        ]
        for other in sorted(members - {user}):
            if self._online_here(other):
                effects += [Send(c, payload) for c in self.conns_of(other)]
        return effects + self._tell(p.Said(message))

    def _room_history(self, conn: Conn, event: m.RoomHistory, now: float) -> list[Effect]:
        self._member_of(self._user(conn), event.room)
        limit = min(event.limit or self.limits.room_history, self.limits.room_history)
        kept = list(self._history(event.room))[-limit:]
        return [Reply({"messages": [message.to_json() for message in kept]})]
