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

__all__ = [
    "AddUser",
    "AskBot",
    "ChatCore",
    "Close",
    "Delete",
    "Effect",
    "Limits",
    "Message",
    "Change",
    "ID_BLOCK",
    "Reply",
    "ReserveIds",
    "RoomMessage",
    "Send",
    "Store",
    "StoreRoom",
    "StoreRoomMessage",
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


@dataclass(frozen=True)
class Message:
    """A direct (or ``send_all``) message to one recipient."""

    id: int
    sender: str
    recipient: str
    text: str
    ts: float
    all: bool = False

    def event(self, offline: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "from": self.sender, "text": self.text}
        data["ts"] = self.ts
        if self.all:
            data["all"] = True
        if offline:
            data["offline"] = True
        return {"event": "chat.message", "data": data}


@dataclass(frozen=True)
class RoomMessage:
    id: int
    room: str
    sender: str
    text: str
    ts: float

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "room": self.room, "from": self.sender, "text": self.text,
                "ts": self.ts}  # fmt: skip


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
class ReserveIds:
    """Ids up to ``upto`` may be handed out: recorded before any of them is, so a
    restart (even after ``kill -9``) never hands one out twice."""

    upto: int


@dataclass(frozen=True)
class Close:
    conn: Conn
    code: int
    reason: str


# The effects that are storage writes; the adapter finishes them before any send.
Change = Store | Delete | AddUser | StoreRoom | StoreRoomMessage | ReserveIds
Effect = Reply | Send | Change | Close | AskBot
# Ids reserved per storage write. Half a block is the headroom a reservation's commit
# (an fsync) has before messages wait for it: 50,000 ids are 5 s at 10,000 messages a
# second, so a slow disk does not stall the traffic; a restart skips at most a block.
ID_BLOCK = 100_000


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


def _status(message_id: int, status: str) -> dict[str, Any]:
    return {"event": "chat.status", "data": {"id": message_id, "status": status}}


@dataclass
class ChatCore:
    """Presence, acknowledgements, the offline store and rooms of one chat server."""

    limits: Limits = field(default_factory=Limits)
    users: set[str] = field(default_factory=set)
    next_id: int = 1
    reserved: int = 0  # the highest id reserved so far (asked of the storage)
    bots: frozenset[str] = frozenset()  # users answered by code: always online

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
        """Load the durable state after a (re)start; ids continue after the highest
        (set ``next_id`` and ``reserved`` from the storage's record as well)."""
        for message in sorted(stored, key=lambda msg: msg.id):
            self.stored.setdefault(message.recipient, {})[message.id] = message
            self.next_id = max(self.next_id, message.id + 1)
        for room, members in rooms:
            self.rooms[room] = set(members)
        for rmsg in sorted(room_messages, key=lambda msg: msg.id):
            self._history(rmsg.room).append(rmsg)
            self.next_id = max(self.next_id, rmsg.id + 1)

    # --- presence --------------------------------------------------------------------

    def online(self) -> list[str]:
        return sorted((self._conns_by_user.keys() - self.deregistered) | self.bots)

    def is_online(self, user: str) -> bool:
        if user in self.bots:
            return True
        return user not in self.deregistered and user in self._conns_by_user

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
        return [AddUser(user)]

    def connected(self, user: str, conn: Conn, now: float) -> list[Effect]:
        """``conn`` signed in as ``user``: deliver what is stored, tell everyone."""
        was_online = self.is_online(user)
        if not was_online and len(self.online()) >= self.limits.max_online:
            return [Close(conn, 1013, FULL)]
        effects: list[Effect] = []
        if user not in self.users:
            self.users.add(user)
            effects.append(AddUser(user))
        self._attach(conn, user, now)
        self.deregistered.discard(user)
        effects += self._deliver_stored(user, [conn])
        if not was_online:
            effects += self._table_update()
        return effects

    def disconnected(self, conn: Conn) -> list[Effect]:
        """``conn`` is gone (closed, signed out); the user may go offline."""
        state = self._detach(conn)
        if state is None:
            return []
        if state.user in self.deregistered or self.is_online(state.user):
            return []
        return self._table_update()

    def tick(self, now: float) -> list[Effect]:
        """Close the connections silent for longer than the keep-alive timeout."""
        limit = self.limits.keepalive
        effects: list[Effect] = []
        for conn, state in list(self.conns.items()):
            if now - state.last_seen > limit:
                effects.append(Close(conn, 1008, f"No keep-alive within {limit:g} seconds."))
                effects += self.disconnected(conn)
        return effects

    def _deliver_stored(self, user: str, conns: list[Conn]) -> list[Effect]:
        stored = self.stored.get(user, {})
        if not stored:
            return []
        effects: list[Effect] = []
        for conn in conns:
            effects.append(Send(conn, {"event": "chat.offline", "data": {"count": len(stored)}}))
            effects += [Send(conn, message.event(offline=True)) for message in stored.values()]
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
        """``effects`` led by a reservation of the next block once less than half a
        block is left, so the adapter can record it before any id past the last
        recorded one goes out, without stopping the steps that stay below it."""
        if self.next_id - 1 + ID_BLOCK // 2 > self.reserved:
            self.reserved = self.next_id - 1 + ID_BLOCK
            effects.insert(0, ReserveIds(self.reserved))
        return effects

    def _user(self, conn: Conn) -> str:
        return self.conns[conn].user

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

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
        return [Store(message)]

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
            effects += [Send(c, message.event()) for c in self.conns_of(message.recipient)]
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
        stored = self.stored.get(user)
        if stored is not None and stored.pop(event.id, None) is not None:
            return [Reply({"acked": True}), Delete((event.id,))]
        return [Reply({"acked": False})]

    def _send_all(self, conn: Conn, event: m.SendAll, now: float) -> list[Effect]:
        user = self._user(conn)
        self._check_sending(user, event.text, now)
        effects: list[Effect] = []
        delivered = stored = 0
        for other in sorted(self.users - {user} - self.bots):
            message = Message(self._new_id(), user, other, event.text, now, all=True)
            if self.is_online(other):
                effects += [Send(c, message.event()) for c in self.conns_of(other)]
                delivered += 1
            elif not self._mailbox_full(other):
                effects += self._store(message)
                stored += 1
        reply = Reply({"ts": now, "delivered": delivered, "stored": stored})
        return [reply, *effects]

    def _dereg(self, conn: Conn, event: m.Dereg, now: float) -> list[Effect]:
        user = self._user(conn)
        was_online = self.is_online(user)
        self.deregistered.add(user)
        effects: list[Effect] = [Reply({"status": "offline"})]
        return effects + (self._table_update() if was_online else [])

    def _reg(self, conn: Conn, event: m.Reg, now: float) -> list[Effect]:
        user = self._user(conn)
        was_online = self.is_online(user)
        self.deregistered.discard(user)
        count = len(self.stored.get(user, ()))
        effects: list[Effect] = [Reply({"status": "online", "pending": count})]
        effects += self._deliver_stored(user, [conn])
        return effects + ([] if was_online else self._table_update())

    # --- rooms -------------------------------------------------------------------------

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
        return [Reply({"room": event.room}), StoreRoom(event.room, (self._user(conn),))]

    def _room_join(self, conn: Conn, event: m.RoomJoin, now: float) -> list[Effect]:
        members = self.rooms.get(event.room)
        if members is None:
            raise RequestError(f"There is no room named {event.room!r}.", "unknown_room")
        members.add(self._user(conn))
        listed = tuple(sorted(members))
        return [Reply({"room": event.room, "members": list(listed)}), StoreRoom(event.room, listed)]

    def _room_leave(self, conn: Conn, event: m.RoomLeave, now: float) -> list[Effect]:
        members = self._member_of(self._user(conn), event.room)
        members.discard(self._user(conn))
        return [Reply({"room": event.room}), StoreRoom(event.room, tuple(sorted(members)))]

    def _room_send(self, conn: Conn, event: m.RoomSend, now: float) -> list[Effect]:
        user = self._user(conn)
        members = self._member_of(user, event.room)
        self._check_sending(user, event.text, now)
        message = RoomMessage(self._new_id(), event.room, user, event.text, now)
        self._history(event.room).append(message)
        payload = {"event": "chat.room.message", "data": message.to_json()}
        effects: list[Effect] = [
            Reply({"id": message.id, "ts": now}),
            StoreRoomMessage(message, self.limits.room_history),
        ]
        for other in sorted(members - {user}):
            if self.is_online(other):
                effects += [Send(c, payload) for c in self.conns_of(other)]
        return effects

    def _room_history(self, conn: Conn, event: m.RoomHistory, now: float) -> list[Effect]:
        self._member_of(self._user(conn), event.room)
        limit = min(event.limit or self.limits.room_history, self.limits.room_history)
        kept = list(self._history(event.room))[-limit:]
        return [Reply({"messages": [message.to_json() for message in kept]})]
