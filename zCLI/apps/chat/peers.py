"""What one zChat process tells the others, parsed at the edge into frozen dataclasses.

When several ``zcli chat -s`` processes share one database and one broker, each keeps
its own core; they keep each other's view current with these words, sent through the
bridge's plugin channel (``zBifrost.to_peers``, docs/cluster.md). Each is one JSON
object with a ``kind``; ``parse`` refuses anything else with a ``ValueError`` naming the
problem (the adapter logs it and drops the message, as the broker does for its own).

=============  ================================================================
``online``     ``user`` came online in the sender (its first connection there)
``offline``    ``user`` went offline in the sender (last connection, or dereg)
``presence``   every ``users`` online in the sender (its heartbeat, and its answer
               to ``hello``); a sender not heard for a presence TTL has died
``hello``      the sender has (re)started: answer with ``presence``
``registered`` a new account ``user``
``deliver``    ``messages`` for users the sender believes online here
``acked``      ``user`` acknowledged message ``id`` here
``stored``     ``message`` is committed to the store
``deleted``    ``ids`` of ``user``'s stored messages are deleted (acknowledged)
``room``       ``room`` now has ``members``
``said``       ``message`` was said in its room
=============  ================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from .records import Message, RoomMessage

__all__ = [
    "Acked",
    "Deleted",
    "Deliver",
    "Hello",
    "Offline",
    "Online",
    "PeerEvent",
    "Presence",
    "Registered",
    "RoomChanged",
    "Said",
    "Stored",
    "message_from_json",
    "message_to_json",
    "parse",
]

MAX_NAME = 256  # a user or room name (the chat allows 32; a little slack costs nothing)


def _str(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value or len(value) > MAX_NAME:
        raise ValueError(f"{key} must be a name of 1 to {MAX_NAME} characters.")
    return value


def _int(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if type(value) is not int or value <= 0:
        raise ValueError(f"{key} must be a positive integer.")
    return value


def _names(data: dict[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key)
    if not isinstance(value, list):
        raise ValueError(f"{key} must be a list of names.")
    return tuple(_str({key: v}, key) for v in value)


def _number(data: dict[str, Any], key: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number.")
    return float(value)


def message_to_json(message: Message) -> dict[str, Any]:
    return {"id": message.id, "from": message.sender, "to": message.recipient,
            "text": message.text, "ts": message.ts, "all": message.all}  # fmt: skip


def message_from_json(data: Any) -> Message:
    if not isinstance(data, dict):
        raise ValueError("message must be an object.")
    text = data.get("text")
    if not isinstance(text, str):
        raise ValueError("text must be a string.")
    is_all = data.get("all")
    if not isinstance(is_all, bool):
        raise ValueError("all must be true or false.")
    return Message(_int(data, "id"), _str(data, "from"), _str(data, "to"), text,
                   _number(data, "ts"), is_all)  # fmt: skip


@dataclass(frozen=True)
class PeerEvent:
    kind: ClassVar[str] = ""

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **self._fields()}

    def _fields(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class Online(PeerEvent):
    kind: ClassVar[str] = "online"
    user: str

    def _fields(self) -> dict[str, Any]:
        return {"user": self.user}


@dataclass(frozen=True)
class Offline(Online):
    kind: ClassVar[str] = "offline"


@dataclass(frozen=True)
class Presence(PeerEvent):
    kind: ClassVar[str] = "presence"
    users: tuple[str, ...]

    def _fields(self) -> dict[str, Any]:
        return {"users": list(self.users)}


@dataclass(frozen=True)
class Hello(PeerEvent):
    kind: ClassVar[str] = "hello"


@dataclass(frozen=True)
class Registered(Online):
    kind: ClassVar[str] = "registered"


@dataclass(frozen=True)
class Deliver(PeerEvent):
    kind: ClassVar[str] = "deliver"
    messages: tuple[Message, ...]

    def _fields(self) -> dict[str, Any]:
        return {"messages": [message_to_json(m) for m in self.messages]}


@dataclass(frozen=True)
class Acked(PeerEvent):
    kind: ClassVar[str] = "acked"
    user: str
    id: int

    def _fields(self) -> dict[str, Any]:
        return {"user": self.user, "id": self.id}


@dataclass(frozen=True)
class Stored(PeerEvent):
    kind: ClassVar[str] = "stored"
    message: Message

    def _fields(self) -> dict[str, Any]:
        return {"message": message_to_json(self.message)}


@dataclass(frozen=True)
class Deleted(PeerEvent):
    kind: ClassVar[str] = "deleted"
    user: str
    ids: tuple[int, ...]

    def _fields(self) -> dict[str, Any]:
        return {"user": self.user, "ids": list(self.ids)}


@dataclass(frozen=True)
class RoomChanged(PeerEvent):
    kind: ClassVar[str] = "room"
    room: str
    members: tuple[str, ...]

    def _fields(self) -> dict[str, Any]:
        return {"room": self.room, "members": list(self.members)}


@dataclass(frozen=True)
class Said(PeerEvent):
    kind: ClassVar[str] = "said"
    message: RoomMessage

    def _fields(self) -> dict[str, Any]:
        return {"message": self.message.to_json()}


def _said(data: dict[str, Any]) -> Said:
    body = data.get("message")
    if not isinstance(body, dict) or not isinstance(body.get("text"), str):
        raise ValueError("message must be a room message.")
    return Said(RoomMessage(_int(body, "id"), _str(body, "room"), _str(body, "from"),
                            body["text"], _number(body, "ts")))  # fmt: skip


def _ids(data: dict[str, Any]) -> tuple[int, ...]:
    value = data.get("ids")
    if not isinstance(value, list):
        raise ValueError("ids must be a list of positive integers.")
    return tuple(_int({"ids": v}, "ids") for v in value)


def _messages(data: dict[str, Any]) -> tuple[Message, ...]:
    value = data.get("messages")
    if not isinstance(value, list):
        raise ValueError("messages must be a list.")
    return tuple(message_from_json(v) for v in value)


_PARSERS: dict[str, Callable[[dict[str, Any]], PeerEvent]] = {
    "online": lambda d: Online(_str(d, "user")),
    "offline": lambda d: Offline(_str(d, "user")),
    "presence": lambda d: Presence(_names(d, "users")),
    "hello": lambda d: Hello(),
    "registered": lambda d: Registered(_str(d, "user")),
    "deliver": lambda d: Deliver(_messages(d)),
    "acked": lambda d: Acked(_str(d, "user"), _int(d, "id")),
    "stored": lambda d: Stored(message_from_json(d.get("message"))),
    "deleted": lambda d: Deleted(_str(d, "user"), _ids(d)),
    "room": lambda d: RoomChanged(_str(d, "room"), _names(d, "members")),
    "said": _said,
}


def parse(data: dict[str, Any]) -> PeerEvent:
    """The event ``data`` holds; ValueError (naming the problem) for anything else."""
    kind = data.get("kind")
    parser = _PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise ValueError(f"there is no peer message kind {str(kind)[:40]!r}.")
    return parser(data)
