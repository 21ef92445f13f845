"""The two kinds of chat message the core, the storage and the peers pass around."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Message", "RoomMessage", "accepted_order"]


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


def accepted_order(message: Message) -> tuple[float, int]:
    """The order messages were accepted in: by time, then id. On one process ids alone
    give it; on a cluster a process hands out ids from its own block and learns of the
    others' only when their word arrives, so a message accepted a moment after another
    one elsewhere can have a lower id (stored messages are delivered in this order)."""
    return (message.ts, message.id)


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
