"""The chat events a client sends, parsed at the edge into small frozen dataclasses.

Nothing past ``parse`` handles raw dicts: a missing, wrong-typed, oversized or unknown
field is refused here with a ``RequestError`` whose sentence names the field.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from zCLI import RequestError

__all__ = [
    "EVENTS",
    "MAX_NAME",
    "MAX_PASSWORD",
    "Ack",
    "Dereg",
    "Event",
    "Keepalive",
    "Online",
    "Reg",
    "Register",
    "RoomCreate",
    "RoomHistory",
    "RoomJoin",
    "RoomLeave",
    "RoomSend",
    "Rooms",
    "Send",
    "SendAll",
    "Users",
    "parse",
]

MAX_NAME = 32
MAX_PASSWORD = 1024
MAX_TEXT_FIELD = 1_000_000  # a hard bound; the configurable limit is the core's max_text
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


@dataclass(frozen=True)
class Event:
    """A chat event; ``name`` is its wire name."""

    name: ClassVar[str] = ""

    def to_json(self) -> dict[str, Any]:
        return {"event": self.name, "data": asdict(self)}


@dataclass(frozen=True)
class Register(Event):
    name: ClassVar[str] = "chat.register"
    username: str
    password: str


@dataclass(frozen=True)
class Users(Event):
    name: ClassVar[str] = "chat.users"


@dataclass(frozen=True)
class Online(Event):
    name: ClassVar[str] = "chat.online"


@dataclass(frozen=True)
class Rooms(Event):
    name: ClassVar[str] = "chat.rooms"


@dataclass(frozen=True)
class Send(Event):
    name: ClassVar[str] = "chat.send"
    to: str
    text: str


@dataclass(frozen=True)
class Ack(Event):
    name: ClassVar[str] = "chat.ack"
    id: int


@dataclass(frozen=True)
class SendAll(Event):
    name: ClassVar[str] = "chat.send_all"
    text: str


@dataclass(frozen=True)
class Dereg(Event):
    name: ClassVar[str] = "chat.dereg"


@dataclass(frozen=True)
class Reg(Event):
    name: ClassVar[str] = "chat.reg"


@dataclass(frozen=True)
class Keepalive(Event):
    name: ClassVar[str] = "chat.keepalive"


@dataclass(frozen=True)
class RoomCreate(Event):
    name: ClassVar[str] = "chat.room.create"
    room: str


@dataclass(frozen=True)
class RoomJoin(Event):
    name: ClassVar[str] = "chat.room.join"
    room: str


@dataclass(frozen=True)
class RoomLeave(Event):
    name: ClassVar[str] = "chat.room.leave"
    room: str


@dataclass(frozen=True)
class RoomSend(Event):
    name: ClassVar[str] = "chat.room.send"
    room: str
    text: str


@dataclass(frozen=True)
class RoomHistory(Event):
    name: ClassVar[str] = "chat.room.history"
    room: str
    limit: int | None = None


EVENTS: dict[str, type[Event]] = {
    cls.name: cls
    for cls in (
        Register,
        Users,
        Online,
        Rooms,
        Send,
        Ack,
        SendAll,
        Dereg,
        Reg,
        Keepalive,
        RoomCreate,
        RoomJoin,
        RoomLeave,
        RoomSend,
        RoomHistory,
    )
}
# Each event's fields, in order, and whether each may be left out (parse runs per frame).
_OPTIONAL: dict[type[Event], dict[str, bool]] = {
    cls: {f.name: f.default is None for f in fields(cls)} for cls in EVENTS.values()
}
# Fields that are names: checked against _NAME and MAX_NAME.
_NAMES = frozenset({"username", "to", "room"})


def _check(event: str, key: str, value: Any, optional: bool) -> Any:
    if value is None and optional:
        return None
    if key in ("id", "limit"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RequestError(f"Field {key!r} must be a positive integer.", "invalid_message")
        if value > 2**53 - 1:
            raise RequestError(f"Field {key!r} is too large.", "too_large")
        return value
    if not isinstance(value, str):
        raise RequestError(f"Field {key!r} must be a string.", "invalid_message")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # JSON lets "\ud800" through; no store or browser can
            raise RequestError(
                f"Field {key!r} must be Unicode text; it holds a lone surrogate.",
                "invalid_message",
            ) from None
    if key in _NAMES:
        if len(value) > MAX_NAME:
            raise RequestError(
                f"Field {key!r} has {len(value)} characters; at most {MAX_NAME} are allowed.",
                "too_large",
            )
        if not _NAME.fullmatch(value):
            raise RequestError(
                f"Field {key!r} must be 1 to {MAX_NAME} letters, digits, '_', '-' or '.'.",
                "invalid_message",
            )
    elif key == "password":
        if len(value) > MAX_PASSWORD:
            raise RequestError(
                f"Field 'password' has {len(value)} characters; at most {MAX_PASSWORD} "
                "are allowed.",
                "too_large",
            )
        if not value:
            raise RequestError("Field 'password' must not be empty.", "invalid_message")
    elif len(value) > MAX_TEXT_FIELD:
        raise RequestError(f"Field {key!r} is too large.", "too_large")
    return value


def parse(event: str, data: Any) -> Event:
    """The event named ``event`` with ``data`` (the frame's ``data``), checked."""
    cls = EVENTS.get(event)
    if cls is None:
        raise RequestError(f"There is no chat event named {event[:64]!r}.", "unknown_event")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RequestError(f"The data of {event} must be an object.", "invalid_message")
    known = _OPTIONAL[cls]
    for key in data:
        if key not in known:
            raise RequestError(f"{event} has no field named {str(key)[:64]!r}.", "invalid_message")
    values: dict[str, Any] = {}
    for key, optional in known.items():
        if key not in data and not optional:
            raise RequestError(f"{event} needs the field {key!r}.", "missing_field")
        values[key] = _check(event, key, data.get(key), optional)
    return cls(**values)
